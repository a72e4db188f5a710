"""``nfd dryrun`` and ``nfd validate``: try NodeFeatureRules without a cluster.

``nfd dryrun --rule RULES.yaml --features NODEFEATURE.yaml`` evaluates every
rule of the file, in order and chained through ``rule.matched`` as the master
does, and prints ``{"labels", "annotations", "taints", "extendedResources"}``:
through a pipe or with ``-o json`` as JSON with keys as the rules wrote them, on a
terminal as a table of each part, with ``-o yaml`` as YAML. Without ``--features``
it discovers this node (``--host-prefix`` and the other discovery options) first. It exits 1
when a rule fails with an error (the output of the other rules is still
printed), 2 when an input cannot be read.

``nfd dryrun ... --why LABEL`` explains one label instead: the rule that sets it,
or for every rule that names it the first feature or matchExpression this node's
features fail (``nfd.rules.explain``).

``nfd validate RULES.yaml...`` reports every problem with file, rule and
field; it exits 0 only when every file is valid. ``--worker`` checks custom.d
files (worker shorthands and the legacy ``matchOn`` format allowed).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

import yaml

from nfd import kubeyaml
from nfd.cli import output
from nfd.features import FeatureFormatError, Features
from nfd.rules import (
    MAX_RULE_TEXT_BYTES,
    RuleError,
    execute_rules,
    load_rules,
    validate_rules,
)


class InputError(ValueError):
    """An input file that cannot be used."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from nfd.cli.common import add_discovery_options

    dryrun = subparsers.add_parser(
        "dryrun", help="evaluate NodeFeatureRules against a NodeFeature or this node"
    )
    dryrun.add_argument("--rule", "-f", required=True, help="NodeFeatureRule YAML/JSON file")
    dryrun.add_argument(
        "--features",
        "-n",
        help="NodeFeature object or bare features (JSON/YAML); default: discover this node",
    )
    output.add_output_option(dryrun, "table")
    dryrun.add_argument(
        "--why",
        action="append",
        default=[],
        metavar="LABEL",
        help="explain LABEL instead: the rule that sets it, or for each rule that could, "
        "the first thing that failed (repeatable)",
    )
    add_discovery_options(dryrun)
    dryrun.set_defaults(func=run_dryrun)

    validate = subparsers.add_parser("validate", help="check NodeFeatureRule files")
    validate.add_argument("files", nargs="+", metavar="RULE.yaml")
    validate.add_argument(
        "--worker",
        action="store_true",
        help="files are custom.d rule files: also accept the worker shorthands and legacy matchOn",
    )
    validate.add_argument("-v", "--verbose", action="count", default=0)
    validate.set_defaults(func=run_validate)


def _read(path: str, limit: int | None = None) -> str:
    """The file's text; with ``limit``, refused unread past ``limit`` bytes."""
    try:
        with open(path, "rb") as f:
            data = f.read() if limit is None else f.read(limit + 1)
    except OSError as err:
        raise InputError(f"{path}: cannot read: {err.strerror}") from None
    if limit is not None and len(data) > limit:
        raise InputError(
            f"{path}: rule file larger than the {limit}-byte limit (MAX_RULE_TEXT_BYTES)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text: {err}") from None
    # Universal newlines, as a file opened in text mode reads.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def merge_nodefeature(into: Features, other: Features) -> None:
    """Combine NodeFeature objects the way the master does."""
    for name, flags in other.flags.items():
        into.flags.setdefault(name, set()).update(flags)
    for name, attrs in other.attributes.items():
        into.attributes.setdefault(name, {}).update(attrs)
    for name, insts in other.instances.items():
        into.instances.setdefault(name, []).extend(dict(i) for i in insts)


def parse_features_document(text: str, origin: str) -> Features:
    """A NodeFeature object (or several), or a bare features object."""
    try:
        # Kubernetes' YAML (sigs.k8s.io/yaml), as upstream's kubectl-nfd reads it.
        docs = [d for d in kubeyaml.load_all(text) if d is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{origin}:{mark.line + 1}" if mark is not None else origin
        raise InputError(f"{where}: invalid YAML/JSON: {getattr(err, 'problem', err)}") from None
    features = Features()
    for doc in docs:
        if isinstance(doc, Mapping) and ("spec" in doc or doc.get("kind") == "NodeFeature"):
            spec = doc.get("spec") or {}
            if not isinstance(spec, Mapping):
                raise InputError(f"{origin}: spec: expected a mapping")
            doc = spec.get("features")
        try:
            merge_nodefeature(features, Features.from_dict(doc))
        except FeatureFormatError as err:
            raise InputError(f"{origin}: {err}") from None
    return features


def _discover(args: argparse.Namespace) -> Features:
    from nfd.cli.common import host_from_args, load_worker_config, node_name
    from nfd.worker.discovery import discover_features

    config = load_worker_config(args)
    return discover_features(host_from_args(args), config, node_name())


def _json(document: Any) -> str:
    # Keys in the rules' order, as dryrun always printed them.
    return json.dumps(document, indent=2) + "\n"


def run_dryrun(args: argparse.Namespace) -> int:
    try:
        rules = load_rules(_read(args.rule, MAX_RULE_TEXT_BYTES), args.rule)
        if args.features:
            features = parse_features_document(_read(args.features), args.features)
        else:
            features = _discover(args)
    except (InputError, RuleError) as err:
        print(f"nfd dryrun: {err}", file=sys.stderr)
        return 2
    if args.why:
        from nfd.rules.explain import explain_label, render

        sys.stdout.write("".join(render(explain_label(rules, features, w)) for w in args.why))
        return 0
    result = execute_rules(rules, features)
    fmt = output.choose_format(args.output, output.stream_is_tty(sys.stdout), "table")
    sys.stdout.write(output.render(result.to_dict(), fmt, _json, output.rule_output_table))
    for error in result.errors:
        print(f"nfd dryrun: error: {error}", file=sys.stderr)
    return 1 if result.errors else 0


def run_validate(args: argparse.Namespace) -> int:
    problems_total = 0
    for path in args.files:
        try:
            problems = validate_rules(_read(path, MAX_RULE_TEXT_BYTES), path, worker=args.worker)
        except InputError as err:
            problems = [str(err)]
        for problem in problems:
            print(problem)
        problems_total += len(problems)
        if not problems:
            print(f"{path}: ok", file=sys.stderr)
    if problems_total:
        print(f"nfd validate: {problems_total} problem(s) found", file=sys.stderr)
        return 1
    return 0
