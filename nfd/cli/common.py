"""Options shared by the worker and ``nfd export``: where the host is, which config."""

from __future__ import annotations

import argparse
import os

from nfd.cli.flags import Flag, Options, add_to_argparse
from nfd.hostfs import HostFS
from nfd.log import DEBUG, INFO, get_logger
from nfd.log import setup as setup_log
from nfd.worker.config import DEFAULT_CONFIG_PATH, ConfigError, WorkerConfig, load_config

log = get_logger(__name__)

DISCOVERY_FLAGS = (
    Flag(
        "--host-prefix",
        default="/",
        env="NFD_HOST_PREFIX",
        help="prefix of the host's sys, proc, etc, boot, usr, lib (env NFD_HOST_PREFIX; "
        "'/host-' in the DaemonSet, a fixture directory in tests)",
    ),
    Flag(
        "--config",
        help=f"nfd-worker.conf (default {DEFAULT_CONFIG_PATH}; a missing default file "
        "means defaults, a missing named file is an error)",
    ),
    Flag("--label-sources", help="comma-separated: names, all, -name"),
    Flag("--feature-sources", help="comma-separated: names, all, -name"),
    Flag("--label-whitelist", help="RE2 regexp on the label name part"),
    Flag("--features-dir", help="local source feature files directory"),
    Flag("--hooks-dir", help="local source hook scripts directory"),
    Flag("--rules-dir", help="custom source rule files directory"),
    Flag("-v", "--verbose", kind="count", help="more logging (-v: debug)"),
)


def setup_logging(verbosity: int = 0) -> None:
    # Deferred: a run that logs nothing never imports the logging module.
    setup_log(DEBUG if verbosity > 0 else INFO)


def add_discovery_options(parser: argparse.ArgumentParser) -> None:
    add_to_argparse(parser, DISCOVERY_FLAGS)


def node_name() -> str:
    # os.uname() is the hostname without importing socket (start-up cost).
    return os.environ.get("NODE_NAME") or os.uname().nodename


def load_worker_config(args: Options) -> WorkerConfig:
    """Config file, then command-line overrides; ConfigError on anything bad."""
    if args.config:
        config = load_config(args.config, must_exist=True)
    else:
        config = load_config(DEFAULT_CONFIG_PATH)
    apply_overrides(config, args)
    for warning in config.warnings:
        log.warning(warning)
    return config


def apply_overrides(config: WorkerConfig, args: Options) -> None:
    from nfd.regex import RegexError, compile_re2

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


def host_from_args(args: Options) -> HostFS:
    return HostFS(args.host_prefix)
