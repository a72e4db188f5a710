"""``nfd-worker``: discover this node's features and publish its labels.

Modes:

- ``--oneshot --no-publish``: print the labels once and exit: one JSON object
  (sorted keys, one line) through a pipe or with ``-o json``, a NAME/VALUE table
  on a terminal (``-o table|yaml|json`` chooses).
- ``--oneshot``: publish once to ``--server`` and exit; 0 on success, 1 when the
  master could not be reached or refused the labels.
- ``--no-publish``: run, and print every new label set as one JSON object per
  line, so the worker's reactions to events can be watched without a cluster.
- default: run and keep the master up to date: over one long-lived gRPC stream, or
  through this node's NodeFeature object (see :func:`publish_mode`).

Flags follow upstream v0.14–v0.16 (the gRPC era) and v0.19 (``-port``, ``-kubeconfig``,
``-owner-refs``, ``-no-publish-features``, ``-feature-gates``, klog's). The Kubernetes
client is imported only in NodeFeature mode (``nfd.worker.nodefeature``).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import IO, Any

import yaml

from nfd import __version__
from nfd.cli import output
from nfd.cli.common import (
    add_discovery_options,
    apply_overrides,
    host_from_args,
    load_worker_config,
    node_name,
    setup_logging,
)
from nfd.cli.flags import FlagParser, go_bool
from nfd.cli.upstream_flags import (
    FeatureGateError,
    add_feature_gates,
    add_klog_flags,
    klog_warnings,
    parse_feature_gates,
)
from nfd.worker.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    WorkerConfig,
    build_config,
    normalize_owner_refs,
    parse_config_text,
)
from nfd.worker.discovery import DiscoveryResult, run_discovery

# The HTTP port (/metrics, /healthz): v0.16's -metrics default, v0.19's -port default. A
# command line with a gRPC-era flag gets v0.16's, any other v0.19's (docs/compatibility.md).
DEFAULT_METRICS_PORT = 8081
DEFAULT_V019_PORT = 8080
GRPC_ERA_FLAGS = ("server", "ca_file", "cert_file", "key_file", "server_name_override")

log = logging.getLogger("nfd-worker")

DEFAULT_SERVER = "nfd-master:8080"
# Upstream's worker waited up to 60 s for the master before giving up.
ONESHOT_PUBLISH_TIMEOUT = 60.0


def build_parser() -> FlagParser:
    parser = FlagParser(prog="nfd-worker", description="NFD worker")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_discovery_options(parser)
    parser.add_argument(
        "--options",
        default="",
        help="config options in the config file's format (YAML or JSON), overlaid on the file",
    )
    parser.add_bool("--oneshot", help="discover and publish once, exit")
    parser.add_bool(
        "--no-publish",
        help="do not publish; print the labels (each new label set as one JSON line)",
    )
    output.add_output_option(parser, "table")
    parser.add_argument(
        "--server", default=None, help=f"nfd-master address (default {DEFAULT_SERVER})"
    )
    parser.add_argument("--ca-file", default="", help="root certificate to verify the master")
    parser.add_argument("--cert-file", default="", help="client certificate for mTLS")
    parser.add_argument("--key-file", default="", help="private key of --cert-file")
    parser.add_argument(
        "--server-name-override",
        default="",
        help="name expected in the master's certificate (default: host part of --server)",
    )
    parser.add_argument(
        "--metrics",
        type=int,
        default=None,
        help=f"port for /metrics and /healthz (v0.16's spelling; default {DEFAULT_METRICS_PORT} "
        f"with a gRPC-era flag such as --server, else {DEFAULT_V019_PORT}; 0 disables)",
    )
    parser.add_argument(
        "--port", type=int, default=None, help="the same HTTP port, v0.19's spelling"
    )
    parser.add_argument(
        "--grpc-health", type=int, default=None, help="v0.16's gRPC health port: ignored"
    )
    parser.add_argument(
        "--enable-nodefeature-api",
        nargs="?",
        const=True,
        default=None,
        type=go_bool,
        metavar="BOOL",
        help="v0.16: publish a NodeFeature object (=false: gRPC to --server)",
    )
    # Upstream v0.19: the NodeFeature object this worker would publish.
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig for NodeFeature mode")
    parser.add_argument(
        "--owner-refs",
        default=None,
        help="NodeFeature owners: comma list of node, pod, ds (default pod,ds; empty: none)",
    )
    parser.add_bool("--no-owner-refs", help="no NodeFeature owner references (deprecated)")
    parser.add_argument(
        "--no-publish-features",
        default=None,
        help="feature keys left out of the NodeFeature (comma list; 'pci.*' is a prefix)",
    )
    add_feature_gates(parser)
    add_klog_flags(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The worker's options; a bad command line prints the usage and exits 2.

    --metrics and --port are one HTTP port; --server gets its default here, after the
    port default has looked at whether it was given.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.port is not None and args.metrics is not None and args.port != args.metrics:
        parser.error(
            f"--port={args.port} and --metrics={args.metrics} name the same HTTP port "
            "(v0.19 and v0.16 spelling): give one"
        )
    grpc_era = args.metrics is not None or any(
        getattr(args, f) not in (None, "") for f in GRPC_ERA_FLAGS
    )
    for http in (args.port, args.metrics):
        if http is not None:
            args.metrics = http
            break
    else:
        args.metrics = DEFAULT_METRICS_PORT if grpc_era else DEFAULT_V019_PORT
    args.server_given = bool(args.server)
    args.server = args.server or DEFAULT_SERVER
    if args.owner_refs is not None:
        try:
            args.owner_refs = normalize_owner_refs(
                [v.strip() for v in args.owner_refs.split(",") if v.strip()]
            )
        except ValueError as err:
            parser.error(f"argument --owner-refs: {err}")
    if args.no_publish_features is not None:
        args.no_publish_features = [
            v.strip() for v in args.no_publish_features.split(",") if v.strip()
        ]
    args.nodefeature_gate_given = _gate_given(args.feature_gates, "NodeFeatureAPI")
    try:
        args.feature_gates = parse_feature_gates(args.feature_gates)
    except FeatureGateError as err:
        parser.error(str(err))
    args.grpc_era = grpc_era
    return args


def _gate_given(values: list[str] | None, gate: str) -> bool:
    return any(
        item.partition("=")[0].strip() == gate for v in values or [] for item in v.split(",")
    )


GRPC, NODEFEATURE = "grpc", "nodefeature"


def publish_mode(args: argparse.Namespace) -> str:
    """How a publishing worker publishes: ``grpc`` or ``nodefeature``.

    1. ``-feature-gates NodeFeatureAPI=false`` or ``-enable-nodefeature-api=false``: gRPC
       (v0.16's switches to it);
    2. ``-feature-gates NodeFeatureAPI=true`` or ``-enable-nodefeature-api[=true]``:
       NodeFeature;
    3. else a gRPC-era flag (``--server``, TLS files, ``--metrics``, ``--grpc-health``):
       gRPC, as this worker always did (our manifests pass ``--server``);
    4. else (upstream v0.19's command line, e.g. its DaemonSet's bare ``nfd-worker``):
       NodeFeature, v0.19's only mode. The same rule picks the ``-port`` meaning.
    """
    gate = args.feature_gates["NodeFeatureAPI"]
    if (args.nodefeature_gate_given and not gate) or args.enable_nodefeature_api is False:
        return GRPC
    if args.nodefeature_gate_given or args.enable_nodefeature_api:
        return NODEFEATURE
    if args.grpc_era or args.grpc_health is not None:
        return GRPC
    return NODEFEATURE


def upstream_flag_warnings(args: argparse.Namespace, config: WorkerConfig) -> list[str]:
    """One line for each v0.16/v0.19 option given that means nothing to this worker.

    In gRPC mode the NodeFeature object's options (owners, contents, API access) are
    moot; in NodeFeature mode the gRPC ones (``--server``, TLS) are.
    """
    out = []
    publishing = not (args.no_publish or config.core.no_publish)
    if publish_mode(args) == GRPC or not publishing:
        why = "gRPC to --server" if publishing else "--no-publish"
        moot = "applies to the NodeFeature object, which this nfd-worker does not publish "
        moot += f"({why}); ignored"
        for flag, value in (
            ("kubeconfig", args.kubeconfig),
            ("owner-refs", args.owner_refs),
            ("no-owner-refs", args.no_owner_refs or None),
            ("no-publish-features", args.no_publish_features),
        ):
            if value is not None:
                out.append(f"--{flag}: {moot}")
        for key in ("ownerRefs", "noOwnerRefs", "noPublishFeatures"):
            if key in config.core.given:
                out.append(f"core.{key}: {moot}")
    if publish_mode(args) == NODEFEATURE:
        for flag in GRPC_ERA_FLAGS:
            given = args.server_given if flag == "server" else getattr(args, flag)
            if given not in (None, "", False):
                name = flag.replace("_", "-")
                out.append(f"--{name}: NodeFeature mode publishes no gRPC; ignored")
    if args.no_owner_refs or "noOwnerRefs" in config.core.given:
        out.append(
            "core.noOwnerRefs / -no-owner-refs are deprecated: use 'core.ownerRefs: []' "
            "or '-owner-refs='"
        )
    if args.grpc_health is not None:
        out.append(f"--grpc-health={args.grpc_health}: this worker serves no gRPC; ignored")
    gates = args.feature_gates
    if gates["DisableAutoPrefix"] or gates["NodeFeatureGroupAPI"]:
        out.append(
            "--feature-gates: DisableAutoPrefix and NodeFeatureGroupAPI act in "
            "nfd-master; ignored by nfd-worker"
        )
    return [*out, *klog_warnings(args)]


def labels_json(labels: dict[str, str]) -> str:
    """One label set as one line of JSON, keys sorted."""
    return json.dumps(labels, sort_keys=True)


def _json_line(labels: dict[str, str]) -> str:
    return labels_json(labels) + "\n"


def _deep_merge(base: Any, overlay: Any) -> Any:
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for key, value in overlay.items():
            out[key] = _deep_merge(base.get(key), value)
        return out
    return overlay


def config_path(args: argparse.Namespace) -> str:
    return str(args.config or DEFAULT_CONFIG_PATH)


def load_config_with_options(args: argparse.Namespace) -> WorkerConfig:
    """Defaults < config file < ``--options`` < flags; ConfigError on anything bad."""
    if not args.options:
        return load_worker_config(args)
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


def _tls_error(args: argparse.Namespace) -> str | None:
    given = [bool(args.ca_file), bool(args.cert_file), bool(args.key_file)]
    if any(given) and not all(given):
        return "--ca-file, --cert-file and --key-file must be given together (or none of them)"
    return None


def nodefeature_options(args: argparse.Namespace, config: WorkerConfig) -> dict[str, Any]:
    """Owners and unpublished feature keys: flags over the config file, as upstream;
    ``noOwnerRefs`` (deprecated, flag or config) means no owners at all."""
    owners = config.core.owner_refs if args.owner_refs is None else args.owner_refs
    if args.no_owner_refs or config.core.no_owner_refs:
        owners = []
    hidden = args.no_publish_features
    if hidden is None:
        hidden = config.core.no_publish_features
    return {"owner_refs": list(owners), "no_publish_features": list(hidden)}


def _make_publisher(args: argparse.Namespace, node: str, config: WorkerConfig) -> Any:
    if publish_mode(args) == NODEFEATURE:
        # The only place the worker loads the Kubernetes client (NodeFeature mode).
        from nfd.worker.nodefeature import NodeFeaturePublisher

        return NodeFeaturePublisher(
            node, kubeconfig=args.kubeconfig, **nodefeature_options(args, config)
        )
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


def _oneshot(args: argparse.Namespace, config: WorkerConfig, node: str, no_publish: bool) -> int:
    result = run_discovery(host_from_args(args), config, node)
    if no_publish:
        fmt = output.choose_format(args.output, output.stream_is_tty(sys.stdout), "table")
        text = output.render(result.labels, fmt, _json_line, output.labels_table)
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    target = args.server if publish_mode(args) == GRPC else "its NodeFeature object"
    try:
        publisher = _make_publisher(args, node, config)
    except RuntimeError as err:  # PublishError, NodeFeatureError: bad setup
        log.error("%s", err)
        return 2
    try:
        publisher.publish_once(result.labels, result.features, timeout=ONESHOT_PUBLISH_TIMEOUT)
    except RuntimeError as err:
        log.error("publishing %d labels to %s failed: %s", len(result.labels), target, err)
        return 1
    finally:
        publisher.close()
    log.info("published %d labels to %s", len(result.labels), target)
    return 0


def _run(args: argparse.Namespace, config: WorkerConfig, node: str, no_publish: bool) -> int:
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
        try:
            publisher = _make_publisher(args, node, config)
        except RuntimeError as err:  # PublishError, NodeFeatureError: bad setup
            log.error("%s", err)
            if server is not None:
                server.server_close()
            return 2
        log.info("publishing mode: %s", publish_mode(args))
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
    args = parse_args(argv)
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
    for warning in upstream_flag_warnings(args, config):
        log.warning("%s", warning)
    no_publish = args.no_publish or config.core.no_publish
    if args.output and not (args.oneshot and no_publish):
        log.error(
            "--output applies to --oneshot --no-publish only "
            "(a running worker prints each label set as one JSON line)"
        )
        return 2
    node = node_name()
    if args.oneshot:
        return _oneshot(args, config, node, no_publish)
    return _run(args, config, node, no_publish)


def console_main() -> None:
    sys.exit(main())
