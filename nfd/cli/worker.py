"""``nfd-worker``: discover this node's features and publish its labels.

Modes:

- ``--oneshot --no-publish``: print the labels once as one JSON object (sorted
  keys) and exit.
- ``--oneshot``: publish once to ``--server`` and exit; 0 on success, 1 when the
  master could not be reached or refused the labels.
- ``--no-publish``: run, and print every new label set as one JSON object per
  line, so the worker's reactions to events can be watched without a cluster.
- default: run and keep the master up to date over one long-lived stream.

Flags follow upstream v0.14–v0.16 (the gRPC era).
"""

from __future__ import annotations

import logging
import sys

from nfd import __version__
from nfd.cli.common import (
    DISCOVERY_FLAGS,
    apply_overrides,
    host_from_args,
    load_worker_config,
    node_name,
    setup_logging,
)
from nfd.cli.flags import Flag, main_parse, parse
from nfd.log import load as load_logging
from nfd.worker.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    WorkerConfig,
    build_config,
    parse_config_text,
)
from nfd.worker.discovery import DiscoveryResult, run_discovery

try:  # the C string escaper json.dumps itself uses
    from _json import encode_basestring_ascii as _encode_basestring_ascii
except ImportError:  # a Python without the C accelerator
    from json.encoder import py_encode_basestring_ascii as _encode_basestring_ascii

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import IO, Any

from nfd.cli.flags import Options

# Upstream's -metrics default; kept here so parsing flags doesn't load prometheus_client.
DEFAULT_METRICS_PORT = 8081

log = logging.getLogger("nfd-worker")

DEFAULT_SERVER = "nfd-master:8080"
# Upstream's worker waited up to 60 s for the master before giving up.
ONESHOT_PUBLISH_TIMEOUT = 60.0

WORKER_FLAGS = (
    *DISCOVERY_FLAGS,
    Flag(
        "--options",
        default="",
        help="config options in the config file's format (YAML or JSON), overlaid on the file",
    ),
    Flag("--oneshot", kind="bool", help="discover and publish once, exit"),
    Flag(
        "--no-publish",
        kind="bool",
        help="do not publish; print the labels (each new label set as one JSON line)",
    ),
    Flag("--server", default=DEFAULT_SERVER, help=f"nfd-master address (default {DEFAULT_SERVER})"),
    Flag("--ca-file", default="", help="root certificate to verify the master"),
    Flag("--cert-file", default="", help="client certificate for mTLS"),
    Flag("--key-file", default="", help="private key of --cert-file"),
    Flag(
        "--server-name-override",
        default="",
        help="name expected in the master's certificate (default: host part of --server)",
    ),
    Flag(
        "--metrics",
        kind="int",
        default=DEFAULT_METRICS_PORT,
        help=f"port for /metrics and /healthz (default {DEFAULT_METRICS_PORT}; 0 disables)",
    ),
)


def parse_args(argv: Sequence[str]) -> SimpleNamespace:
    """The worker's options (UsageError on a bad command line); ``main`` exits instead."""
    return parse(WORKER_FLAGS, argv)


def labels_json(labels: dict[str, str]) -> str:
    """``json.dumps(labels, sort_keys=True)``, without importing json (and with it re)."""
    quote = _encode_basestring_ascii
    return "{" + ", ".join(f"{quote(k)}: {quote(v)}" for k, v in sorted(labels.items())) + "}"


def _deep_merge(base: Any, overlay: Any) -> Any:
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for key, value in overlay.items():
            out[key] = _deep_merge(base.get(key), value)
        return out
    return overlay


def config_path(args: Options) -> str:
    return str(args.config or DEFAULT_CONFIG_PATH)


def load_config_with_options(args: Options) -> WorkerConfig:
    """Defaults < config file < ``--options`` < flags; ConfigError on anything bad."""
    if not args.options:
        return load_worker_config(args)
    import yaml  # only with --options: a plain start skips its import cost

    try:
        overlay = yaml.safe_load(args.options)
    except yaml.YAMLError as err:
        raise ConfigError(f"--options: invalid YAML: {err}") from None
    if overlay is not None and not isinstance(overlay, dict):
        raise ConfigError("--options: expected a mapping such as '{core: {sleepInterval: 10s}}'")
    path = config_path(args)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        if args.config:
            raise ConfigError(f"{path}: no such file") from None
        text = ""
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    parse_config_text(text, path)  # reports errors with the file's line numbers
    merged = _deep_merge(yaml.safe_load(text) or {}, overlay or {})
    config = build_config(merged, f"{path} with --options")
    apply_overrides(config, args)
    for warning in config.warnings:
        log.warning(warning)
    return config


class LabelPrinter:
    """Print each label set that differs from the last one as one JSON line."""

    def __init__(self, stream: IO[str], on_broken_pipe: Callable[[], None]) -> None:
        self._stream = stream
        self._on_broken_pipe = on_broken_pipe
        self._last: dict[str, str] | None = None

    def __call__(self, result: DiscoveryResult) -> None:
        if result.labels == self._last:
            return
        self._last = dict(result.labels)
        try:
            self._stream.write(labels_json(result.labels) + "\n")
            self._stream.flush()
        except BrokenPipeError:
            log.info("stdout closed, stopping")
            self._on_broken_pipe()


def _tls_error(args: Options) -> str | None:
    given = [bool(args.ca_file), bool(args.cert_file), bool(args.key_file)]
    if any(given) and not all(given):
        return "--ca-file, --cert-file and --key-file must be given together (or none of them)"
    return None


def _make_publisher(args: Options, node: str) -> Any:
    # Imported here so that --no-publish needs nothing of the gRPC side.
    from nfd.worker.publish import Publisher

    return Publisher(
        args.server,
        node,
        ca_file=args.ca_file or None,
        cert_file=args.cert_file or None,
        key_file=args.key_file or None,
        server_name_override=args.server_name_override or None,
    )


def _oneshot(args: Options, config: WorkerConfig, node: str, no_publish: bool) -> int:
    result = run_discovery(host_from_args(args), config, node)
    if no_publish:
        sys.stdout.write(labels_json(result.labels) + "\n")
        sys.stdout.flush()
        return 0
    load_logging()  # grpc logs through logging: configure it first
    from nfd.worker.publish import PublishError

    publisher = _make_publisher(args, node)
    try:
        publisher.publish_once(result.labels, result.features, timeout=ONESHOT_PUBLISH_TIMEOUT)
    except PublishError as err:
        log.error("publishing %d labels to %s failed: %s", len(result.labels), args.server, err)
        return 1
    finally:
        publisher.close()
    log.info("published %d labels to %s", len(result.labels), args.server)
    return 0


def _run(args: Options, config: WorkerConfig, node: str, no_publish: bool) -> int:
    import signal

    load_logging()  # a long run: every library logs through the configured handler
    from nfd.worker.daemon import WorkerDaemon
    from nfd.worker.metrics import WorkerMetrics, serve_metrics

    metrics = WorkerMetrics()
    server = None
    if args.metrics > 0:
        try:
            server = serve_metrics(metrics, args.metrics)
        except OSError as err:
            log.error("--metrics %d: cannot listen: %s", args.metrics, err.strerror or err)
            return 2

    publisher = None
    daemon: WorkerDaemon | None = None

    def stop() -> None:
        if daemon is not None:
            daemon.stop()

    emit: Callable[[DiscoveryResult], None]
    if no_publish:
        emit = LabelPrinter(sys.stdout, stop)
    else:
        publisher = _make_publisher(args, node)
        publisher.start()
        pub = publisher

        def emit(result: DiscoveryResult) -> None:
            pub.update(result.labels, result.features)

    daemon = WorkerDaemon(
        host_from_args(args),
        node,
        config,
        emit,
        reload_config=lambda: load_config_with_options(args),
        config_path=config_path(args),
        metrics=metrics,
    )

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("%s received, exiting", signal.Signals(signum).name)
        stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        daemon.run()
    finally:
        if publisher is not None:
            publisher.close()
        if server is not None:
            server.server_close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = main_parse(
        "nfd-worker",
        "NFD worker",
        __version__,
        WORKER_FLAGS,
        sys.argv[1:] if argv is None else argv,
    )
    setup_logging(args.verbose)
    problem = _tls_error(args)
    if problem:
        log.error("%s", problem)
        return 2
    try:
        config = load_config_with_options(args)
    except ConfigError as err:
        log.error("%s", err)
        return 2
    no_publish = args.no_publish or config.core.no_publish
    node = node_name()
    if args.oneshot:
        return _oneshot(args, config, node, no_publish)
    return _run(args, config, node, no_publish)


def console_main() -> None:
    sys.exit(main())
