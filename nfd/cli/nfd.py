"""``nfd``: the user's command (export, dryrun, validate, nodes, explain)."""

from __future__ import annotations

import argparse
import logging
import sys

from nfd import __version__
from nfd.cli import docs, explain, export, nodes, rules
from nfd.cli.common import setup_logging
from nfd.cli.flags import FlagParser
from nfd.worker.config import ConfigError

log = logging.getLogger("nfd")


def build_parser(prog: str = "nfd") -> argparse.ArgumentParser:
    parser = FlagParser(prog=prog, description="Node Feature Discovery tools")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    # Each module adds its subcommands (dryrun and validate are both in rules).
    for module in (export, rules, nodes, explain, docs):
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None, prog: str = "nfd") -> int:
    args = build_parser(prog).parse_args(argv)
    setup_logging(getattr(args, "verbose", 0))
    try:
        return int(args.func(args))
    except ConfigError as err:
        log.error("%s", err)
        return 2


def kubectl_main() -> None:
    """``kubectl nfd ...``: the same subcommands under kubectl's plugin naming."""
    sys.exit(main(prog="kubectl nfd"))


def console_main() -> None:
    sys.exit(main())
