"""``nfd-worker``: discover this node's features and publish its labels."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from nfd import __version__
from nfd.cli.common import (
    add_discovery_options,
    host_from_args,
    load_worker_config,
    node_name,
    setup_logging,
)
from nfd.worker.config import ConfigError
from nfd.worker.discovery import run_discovery

log = logging.getLogger("nfd-worker")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nfd-worker", description="NFD worker")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_discovery_options(parser)
    parser.add_argument("--oneshot", action="store_true", help="discover and publish once, exit")
    parser.add_argument(
        "--no-publish", action="store_true", help="print the labels instead of publishing"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        config = load_worker_config(args)
    except ConfigError as err:
        log.error("%s", err)
        return 2
    if args.no_publish or config.core.no_publish:
        result = run_discovery(host_from_args(args), config, node_name())
        sys.stdout.write(json.dumps(result.labels, sort_keys=True) + "\n")
        return 0
    log.error("publishing to a master is not implemented yet; use --no-publish")
    return 2


def console_main() -> None:
    sys.exit(main())
