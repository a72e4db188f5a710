"""``nfd-master``: accept workers over gRPC, apply the label policy and NodeFeatureRules,
and patch Node objects (see docs/protocol.md).

This module is the command line: flags, the config file under them, and their
checks. The run loop is nfd.master.daemon.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys

from nfd import __version__
from nfd.cli.flags import FlagParser, Verbosity
from nfd.cli.upstream_flags import (
    add_feature_gates,
    add_klog_flags,
    klog_warnings,
    parse_feature_gates,
)
from nfd.durations import parse_duration
from nfd.master import daemon
from nfd.master.config import (
    DEFAULT_MASTER_CONFIG_PATH,
    apply_to_args,
    explicit_dests,
    load_master_config,
    merge_flags,
)
from nfd.master.policy import PolicyConfig, PolicyError
from nfd.master.server import TLSFiles

log = logging.getLogger("nfd-master")


def parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "t", "true", "yes", "on"):
        return True
    if low in ("0", "f", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def parse_duration_s(text: str) -> float:
    try:
        return float(parse_duration(text))
    except Exception as err:  # noqa: BLE001
        raise argparse.ArgumentTypeError(f"bad duration {text!r}: {err}") from None


def _csv(values: list[str] | None) -> frozenset[str]:
    out: set[str] = set()
    for v in values or []:
        out |= {x.strip() for x in v.split(",") if x.strip()}
    return frozenset(out)


# Ports. v0.16 (gRPC era): -port is gRPC, -metrics HTTP, -grpc-health gRPC health. v0.19
# (no gRPC): -port is HTTP (/metrics, /healthz). Which one a command line means is decided
# by resolve_ports (docs/compatibility.md, "Ports").
DEFAULT_PORT = 8080
DEFAULT_METRICS_PORT = 8081
DEFAULT_V019_GRPC_PORT = 8081


def build_parser() -> FlagParser:
    p = FlagParser(prog="nfd-master", description="NFD master")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="with --metrics (v0.16 layout): the gRPC port; without it (v0.19 layout): the "
        f"HTTP port of /metrics /healthz /readyz (default {DEFAULT_PORT})",
    )
    p.add_argument(
        "--metrics",
        type=int,
        default=DEFAULT_METRICS_PORT,
        help="HTTP port: /metrics /healthz /readyz; giving it selects the v0.16 layout "
        f"(default {DEFAULT_METRICS_PORT})",
    )
    p.add_argument(
        "--grpc-port",
        type=int,
        default=DEFAULT_V019_GRPC_PORT,
        help="v0.19 layout (no --metrics): the gRPC port for gRPC workers "
        f"(default {DEFAULT_V019_GRPC_PORT})",
    )
    p.add_argument(
        "--grpc-health",
        type=int,
        default=None,
        help="v0.16's gRPC health port: accepted; gRPC health is served on the gRPC port",
    )
    p.add_argument(
        "--informer-page-size",
        type=int,
        default=200,
        help="page size of the NodeFeature list (default 200; 0: one list)",
    )
    add_feature_gates(p)
    p.add_bool(
        "--enable-nodefeature-api",
        help="v0.16's flag: false is -feature-gates NodeFeatureAPI=false",
    )
    p.add_argument("--no-publish", action="store_true", help="compute and log; never write Nodes")
    p.add_argument("--kubeconfig", default=None, help="kubeconfig (default: in-cluster)")
    p.add_argument("--ca-file", default="", help="CA for verifying worker certificates")
    p.add_argument("--cert-file", default="", help="master certificate")
    p.add_argument("--key-file", default="", help="master private key")
    p.add_argument(
        "--verify-node-name",
        action="store_true",
        help="a worker may only publish for the node named in its certificate (CN or SAN)",
    )
    p.add_argument("--extra-label-ns", action="append", help="namespaces re-allowed (comma list)")
    p.add_argument("--deny-label-ns", action="append", help="namespaces denied; '*.x' suffix")
    p.add_argument("--label-whitelist", default=None, help="RE2 regexp on the label name part")
    p.add_argument(
        "--resource-labels", action="append", help="labels turned into extended resources"
    )
    p.add_argument("--enable-taints", nargs="?", const=True, default=False, type=parse_bool)
    p.add_argument("--prune", action="store_true", help="remove all NFD labels etc. and exit")
    p.add_argument("--instance", default="", help="prefix of NFD's own node annotations")
    p.add_argument(
        "--enable-leader-election", nargs="?", const=True, default=False, type=parse_bool
    )
    p.add_argument("--leader-elect-lease-duration", type=parse_duration_s, default=15.0)
    p.add_argument("--leader-elect-renew-deadline", type=parse_duration_s, default=10.0)
    p.add_argument("--leader-elect-retry-period", type=parse_duration_s, default=2.0)
    p.add_argument(
        "--namespace",
        default=None,
        help="namespace of the leader-election Lease (default: the pod's namespace)",
    )
    p.add_argument("--nfd-api-parallelism", type=int, default=10)
    p.add_argument("--resync-period", type=parse_duration_s, default=3600.0)
    p.add_argument(
        "--crd-controller",
        "--featurerules-controller",
        dest="crd_controller",
        nargs="?",
        const=True,
        default=True,
        type=parse_bool,
        help="watch NodeFeatureRule objects (default true)",
    )
    p.add_argument("--enable-gpu-marking", nargs="?", const=True, default=True, type=parse_bool)
    p.add_argument(
        "--gpu-marking-only",
        action="store_true",
        help="only run the GPU marking stage on Nodes (no gRPC)",
    )
    p.add_argument(
        "--config",
        default=DEFAULT_MASTER_CONFIG_PATH,
        help="nfd-master.conf (YAML), watched and reloaded; flags given win over it",
    )
    p.add_argument("--options", default="", help="YAML/JSON overlay on the config file")
    p.add_argument("-v", "--verbose", action=Verbosity, help="more logging (-v: debug; -v=N)")
    add_klog_flags(p)
    return p


def normalize_argv(argv: list[str]) -> list[str]:
    """Accept upstream's Go-style single-dash long flags (-port=8080, -vmodule=x)."""
    return build_parser().gnu_spellings(list(argv))


# Flags that exist only in the gRPC era (v0.16 and before): any of them selects its layout.
GRPC_ERA_FLAGS = ("metrics", "grpc_health", "ca_file", "cert_file", "key_file", "verify_node_name")


def resolve_ports(args: argparse.Namespace, explicit: set[str]) -> list[str]:
    """Decide what --port means; set args.port (gRPC) and args.metrics (HTTP).

    v0.16 layout, chosen by any gRPC-era flag (--metrics, --grpc-health, the TLS flags) or
    NodeFeatureAPI=false, and used by our manifests: --port is gRPC, --metrics HTTP.
    Otherwise v0.19's layout: --port (default 8080) is HTTP, where upstream v0.19's
    manifests probe /healthz; gRPC, which v0.19 no longer has, is on --grpc-port (default
    8081). Call after resolve_feature_gates. Returns warnings; raises ValueError for flags
    that contradict the layout.
    """
    warnings = []
    if "grpc_health" in explicit:
        warnings.append(
            f"--grpc-health={args.grpc_health}: gRPC health (grpc.health.v1) is served on the "
            "gRPC port, ignored"
        )
    grpc_era = [f for f in GRPC_ERA_FLAGS if f in explicit]
    if grpc_era or not args.feature_gates["NodeFeatureAPI"]:
        if "grpc_port" in explicit:
            why = f"--{grpc_era[0].replace('_', '-')}" if grpc_era else "NodeFeatureAPI=false"
            raise ValueError(
                f"--grpc-port is for the v0.19 layout (HTTP on --port); with {why}, --port is "
                "the gRPC port and --metrics the HTTP port"
            )
        return warnings
    http, grpc_port = args.port, args.grpc_port
    if http == grpc_port:
        raise ValueError(
            f"--port={http} (HTTP in the v0.19 layout) and --grpc-port={grpc_port} must differ"
        )
    args.port, args.metrics = grpc_port, http
    return warnings


def resolve_feature_gates(args: argparse.Namespace, explicit: set[str]) -> list[str]:
    """args.feature_gates: every gate's value. Raises FeatureGateError."""
    gates = parse_feature_gates(args.feature_gates)
    if "enable_nodefeature_api" in explicit:
        gates["NodeFeatureAPI"] = bool(args.enable_nodefeature_api)
    args.feature_gates = gates
    # DisableAutoPrefix is enforced (PolicyConfig.disable_auto_prefix): nothing to warn.
    return []


def _check(args: argparse.Namespace) -> str | None:
    """What is wrong with the flags once the config file is merged (None: nothing)."""
    tls_files = [args.ca_file, args.cert_file, args.key_file]
    if any(tls_files) and not all(tls_files):
        return "--ca-file, --cert-file and --key-file must be given together"
    if args.verify_node_name and not all(tls_files):
        return "--verify-node-name needs --ca-file, --cert-file and --key-file"
    if args.instance and not re.fullmatch(
        r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", args.instance
    ):
        return (
            f"--instance {args.instance!r}: must be alphanumerics, '-', '_' or '.', starting "
            "and ending with an alphanumeric"
        )
    if args.nfd_api_parallelism <= 0:
        return "--nfd-api-parallelism must be > 0"
    if args.informer_page_size < 0:
        return "--informer-page-size must be >= 0"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = normalize_argv(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # nfd-master.conf under the flags: only flags given on the command line win.
    explicit = explicit_dests(build_parser(), argv)
    try:
        warnings = [
            *resolve_feature_gates(args, explicit),
            *resolve_ports(args, explicit),
            *klog_warnings(args),
        ]
    except ValueError as err:  # FeatureGateError too
        log.error("%s", err)
        return 2
    for warning in warnings:
        log.warning("%s", warning)
    try:
        running = load_master_config(args.config, args.options, "config" in explicit)
    except ValueError as err:  # ConfigError
        log.error("%s", err)
        return 2
    for warning in running.warnings:
        log.warning("%s", warning)
    running = merge_flags(running, args, explicit)
    apply_to_args(running, args)
    problem = _check(args)
    if problem:
        log.error("%s", problem)
        return 2
    try:
        policy = PolicyConfig(
            extra_label_ns=_csv(args.extra_label_ns),
            deny_label_ns=_csv(args.deny_label_ns),
            label_whitelist=args.label_whitelist,
            resource_labels=_csv(args.resource_labels),
            enable_taints=bool(args.enable_taints),
            gpu_marking=bool(args.enable_gpu_marking),
            disable_labels=running.restrictions.disable_labels,
            disable_extended_resources=running.restrictions.disable_extended_resources,
            disable_annotations=running.restrictions.disable_annotations,
            disable_auto_prefix=bool(args.feature_gates["DisableAutoPrefix"]),
        )
    except PolicyError as err:
        log.error("%s", err)
        return 2
    tls = TLSFiles(args.ca_file, args.cert_file, args.key_file) if args.ca_file else None
    return daemon.run(args, policy, running, explicit, tls)


def console_main() -> None:
    sys.exit(main())
