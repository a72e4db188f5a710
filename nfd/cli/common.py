"""Options shared by the worker and ``nfd export``: where the host is, which config."""

from __future__ import annotations

import argparse
import logging
import os
import socket

from nfd.cli.flags import FlagParser
from nfd.hostfs import HostFS
from nfd.regex import RegexError, compile_re2
from nfd.worker.config import DEFAULT_CONFIG_PATH, ConfigError, WorkerConfig, load_config

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def add_discovery_options(parser: FlagParser) -> None:
    """Where the host is and which config: the worker's and ``nfd export``'s options."""
    parser.add_argument(
        "--host-prefix",
        # Read when the parser is built: a test or the DaemonSet may set it.
        default=os.environ.get("NFD_HOST_PREFIX", "/"),
        help="prefix of the host's sys, proc, etc, boot, usr, lib (env NFD_HOST_PREFIX; "
        "'/host-' in the DaemonSet, a fixture directory in tests)",
    )
    parser.add_argument(
        "--config",
        help=f"nfd-worker.conf (default {DEFAULT_CONFIG_PATH}; a missing default file "
        "means defaults, a missing named file is an error)",
    )
    parser.add_argument("--label-sources", help="comma-separated: names, all, -name")
    parser.add_argument("--feature-sources", help="comma-separated: names, all, -name")
    parser.add_argument("--label-whitelist", help="RE2 regexp on the label name part")
    parser.add_argument("--features-dir", help="local source feature files directory")
    parser.add_argument("--hooks-dir", help="local source hook scripts directory")
    parser.add_argument("--rules-dir", help="custom source rule files directory")
    parser.add_verbosity()


def setup_logging(verbosity: int = 0) -> None:
    """Configure logging once, at a command's start: INFO, or DEBUG with -v."""
    logging.basicConfig(level=logging.DEBUG if verbosity > 0 else logging.INFO, format=LOG_FORMAT)


def node_name() -> str:
    return os.environ.get("NODE_NAME") or socket.gethostname()


def load_worker_config(args: argparse.Namespace) -> WorkerConfig:
    """Config file, then command-line overrides; ConfigError on anything bad."""
    if args.config:
        config = load_config(args.config, must_exist=True)
    else:
        config = load_config(DEFAULT_CONFIG_PATH)
    apply_overrides(config, args)
    for warning in config.warnings:
        log.warning(warning)
    return config


def apply_overrides(config: WorkerConfig, args: argparse.Namespace) -> None:
    if getattr(args, "label_sources", None) is not None:
        config.core.label_sources = args.label_sources.split(",")
    if getattr(args, "feature_sources", None) is not None:
        config.core.feature_sources = args.feature_sources.split(",")
    if getattr(args, "label_whitelist", None) is not None:
        try:
            compile_re2(args.label_whitelist)
        except RegexError as err:
            raise ConfigError(f"--label-whitelist: {err}") from None
        config.core.label_whitelist = args.label_whitelist
    if getattr(args, "features_dir", None):
        config.source_config("local")["featuresDir"] = args.features_dir
    if getattr(args, "hooks_dir", None):
        config.source_config("local")["hooksDir"] = args.hooks_dir
    if getattr(args, "rules_dir", None):
        config.source_config("custom")["rulesDir"] = args.rules_dir


def host_from_args(args: argparse.Namespace) -> HostFS:
    return HostFS(args.host_prefix)
