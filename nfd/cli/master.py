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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nfd-master", description="NFD master")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--port", type=int, default=8080, help="gRPC port (Labeler, stream, health)")
    p.add_argument("--metrics", type=int, default=8081, help="HTTP port: /metrics /healthz /readyz")
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
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def normalize_argv(argv: list[str]) -> list[str]:
    """Accept upstream's Go-style single-dash long flags (-port=8080)."""
    out = []
    for a in argv:
        if a.startswith("-") and not a.startswith("--") and len(a) > 2 and a[1] != "v":
            a = "-" + a
        out.append(a)
    return out


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
        )
    except PolicyError as err:
        log.error("%s", err)
        return 2
    tls = TLSFiles(args.ca_file, args.cert_file, args.key_file) if args.ca_file else None
    return daemon.run(args, policy, running, explicit, tls)


def console_main() -> None:
    sys.exit(main())
