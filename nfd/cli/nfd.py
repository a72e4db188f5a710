"""``nfd``: the user's command (export, dryrun, validate)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from nfd import __version__
from nfd.cli.common import setup_logging
from nfd.worker.config import ConfigError

# Each subcommand's module, which has add_parser(subparsers). Only the module of
# the command being run is imported (``nfd export`` needs no YAML or rule CLI);
# help and unknown commands load them all.
SUBCOMMANDS = {
    "export": "nfd.cli.export",
    "dryrun": "nfd.cli.rules",
    "validate": "nfd.cli.rules",
    "docs": "nfd.cli.docs",
}

log = logging.getLogger("nfd")


def _modules_for(argv: list[str] | None) -> list[str]:
    args = sys.argv[1:] if argv is None else argv
    command = next((a for a in args if not a.startswith("-")), None)
    if command in SUBCOMMANDS:
        return [SUBCOMMANDS[command]]
    return list(dict.fromkeys(SUBCOMMANDS.values()))


def build_parser(prog: str = "nfd", argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Node Feature Discovery tools")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in _modules_for(argv):
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None, prog: str = "nfd") -> int:
    args = build_parser(prog, argv).parse_args(argv)
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
