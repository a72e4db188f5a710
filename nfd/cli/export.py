"""``nfd export features|labels``: discover this node and print what it found.

On a terminal labels print as a NAME/VALUE table and features as YAML; through a
pipe, to ``--path`` or with ``-o json`` both print the indented, key-sorted JSON
scripts parse (tests/golden pins it byte for byte).
"""

from __future__ import annotations

import argparse
import json
import sys

from nfd.cli import output
from nfd.cli.common import add_discovery_options, host_from_args, load_worker_config, node_name
from nfd.worker.discovery import run_discovery

# What a terminal gets without -o.
HUMAN = {"labels": "table", "features": "yaml"}


def json_text(document: object) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser("export", help="discover this node and print its features")
    what = export.add_subparsers(dest="what", required=True)
    for name, help_text in (
        ("features", "raw features, upstream's NodeFeature spec.features shape"),
        ("labels", "the labels the worker would publish"),
    ):
        sub = what.add_parser(name, help=help_text)
        add_discovery_options(sub)
        sub.add_argument("--path", "-p", help="write the JSON to this file instead of stdout")
        output.add_output_option(sub, HUMAN[name])
        sub.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_worker_config(args)
    result = run_discovery(host_from_args(args), config, node_name())
    document = result.features.to_dict() if args.what == "features" else result.labels
    if args.path:
        fmt = args.output or "json"
    else:
        fmt = output.choose_format(args.output, output.stream_is_tty(sys.stdout), HUMAN[args.what])
    table = output.labels_table if args.what == "labels" else output.features_table
    text = output.render(document, fmt, json_text, table)
    if args.path:
        with open(args.path, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0
