"""``nfd export features|labels``: discover this node and print JSON."""

from __future__ import annotations

import argparse
import json
import sys

from nfd.cli.common import add_discovery_options, host_from_args, load_worker_config, node_name
from nfd.worker.discovery import run_discovery


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser("export", help="discover this node and print JSON")
    what = export.add_subparsers(dest="what", required=True)
    for name, help_text in (
        ("features", "raw features, upstream's NodeFeature spec.features shape"),
        ("labels", "the labels the worker would publish"),
    ):
        sub = what.add_parser(name, help=help_text)
        add_discovery_options(sub)
        sub.add_argument("--path", "-p", help="write the JSON to this file instead of stdout")
        sub.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_worker_config(args)
    result = run_discovery(host_from_args(args), config, node_name())
    document = result.features.to_dict() if args.what == "features" else result.labels
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if args.path:
        with open(args.path, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0
