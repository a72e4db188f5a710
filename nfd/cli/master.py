"""``nfd-master``: accept workers over gRPC, apply the label policy and NodeFeatureRules,
and patch Node objects (see docs/protocol.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import socket
import sys
import threading
import uuid
from typing import Any

from nfd import __version__
from nfd.master.config import (
    DEFAULT_MASTER_CONFIG_PATH,
    ConfigReloader,
    ConfigWatcher,
    apply_to_args,
    explicit_dests,
    load_master_config,
    merge_flags,
)
from nfd.master.core import Master, WorkItem
from nfd.master.metrics import MasterMetrics
from nfd.master.policy import PolicyConfig, PolicyError
from nfd.master.server import GrpcServer, TLSFiles
from nfd.metrics_http import serve_http

log = logging.getLogger("nfd-master")


def parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "t", "true", "yes", "on"):
        return True
    if low in ("0", "f", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def parse_duration_s(text: str) -> float:
    from nfd.durations import parse_duration

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


def _namespace(flag: str | None) -> str:
    if flag:
        return flag
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip()
    except OSError:
        return os.environ.get("KUBERNETES_NAMESPACE") or "node-feature-discovery"


def _gpu_fn(enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from nfd.gpu.marking import compute_gpu_labels
    except ImportError as err:
        log.error("GPU marking unavailable (%s); continuing without it", err)
        return None
    return compute_gpu_labels


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
    tls_files = [args.ca_file, args.cert_file, args.key_file]
    if any(tls_files) and not all(tls_files):
        log.error("--ca-file, --cert-file and --key-file must be given together")
        return 2
    if args.verify_node_name and not all(tls_files):
        log.error("--verify-node-name needs --ca-file, --cert-file and --key-file")
        return 2
    if args.instance and not re.fullmatch(
        r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", args.instance
    ):
        log.error(
            "--instance %r: must be alphanumerics, '-', '_' or '.', starting and ending "
            "with an alphanumeric",
            args.instance,
        )
        return 2
    if args.nfd_api_parallelism <= 0:
        log.error("--nfd-api-parallelism must be > 0")
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
    metrics = MasterMetrics()

    if args.prune or args.gpu_marking_only:
        from nfd.master.kube import KubeNodes, NodeUpdater, load_api_client

        api_client = load_api_client(args.kubeconfig)
        if args.prune:
            return _prune(KubeNodes(api_client), args.instance)
        gpu = _gpu_fn(True)
        if gpu is None:
            return 2
        return _gpu_only(api_client, gpu, metrics, args)

    api_client = None
    apply = None
    if args.no_publish and args.kubeconfig:
        # Read-only: log the exact patch that would be sent. Without a reachable API the
        # master still runs and logs the desired state instead.
        apply = _dry_run_apply(args)
    elif not args.no_publish:
        from nfd.master.kube import KubeNodes, NodeUpdater, load_api_client

        api_client = load_api_client(args.kubeconfig)
        updater = NodeUpdater(
            KubeNodes(api_client),
            instance=args.instance,
            gpu_fn=_gpu_fn(bool(args.enable_gpu_marking)),
            on_update=metrics.updates.inc,
        )

        def apply(node: str, item: WorkItem) -> bool:
            return updater.apply(node, item.desired, item.allow_remove)

    master = Master(
        policy,
        apply,
        metrics,
        args.nfd_api_parallelism,
        wait_for_rules=api_client is not None and bool(args.crd_controller),
    )
    node_watch = None
    if api_client is not None:
        from nfd.master.kube import NodeWatcher

        # State only for Nodes that exist: made-up names keep nothing, deleted ones go.
        node_watch = NodeWatcher(
            api_client, master.set_known_nodes, master.node_added, master.node_deleted
        )
        node_watch.start()
    config_watch = None
    if args.config:
        reload = ConfigReloader(
            args.config,
            args.options,
            "config" in explicit,
            args,
            explicit,
            running,
            master.set_policy,
            bool(args.enable_gpu_marking),
        )
        config_watch = ConfigWatcher(args.config, reload)
        config_watch.start()
    watcher = None
    if api_client is not None and args.crd_controller:
        from nfd.master.rules import RuleWatcher

        watcher = RuleWatcher(
            api_client,
            master.set_rules,
            lambda m: metrics.rule_errors.inc(),
            events_namespace=_namespace(args.namespace),
        )
        master.on_rule_failure = watcher.report_rule_failure
        watcher.start()
    exit_code = [0]
    loop_holder: dict[str, Any] = {}
    if api_client is not None and args.enable_leader_election and master.queue is not None:
        from nfd.master.leader import LeaderElector

        master.queue.pause()
        identity = f"{os.environ.get('NODE_NAME') or socket.gethostname()}_{uuid.uuid4()}"

        def lost() -> None:
            exit_code[0] = 1
            loop = loop_holder.get("loop")
            if loop is not None:
                loop.call_soon_threadsafe(loop_holder["stop"].set)

        elector = LeaderElector(
            api_client,
            _namespace(args.namespace),
            identity,
            master.queue.resume,
            lost,
            lease_duration=args.leader_elect_lease_duration,
            renew_deadline=args.leader_elect_renew_deadline,
            retry_period=args.leader_elect_retry_period,
        )
        # Only the leader is ready and takes workers, so a Service routes them to it.
        master.serving = lambda: elector.is_leader
        elector.start()

    tls = TLSFiles(*tls_files) if all(tls_files) else None
    started = threading.Event()
    http = serve_http(
        args.metrics,
        metrics.registry,
        lambda: (
            started.is_set()
            and (watcher is None or watcher.synced.is_set())
            and (node_watch is None or node_watch.synced.is_set())
            and master.serving()
        ),
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop_holder.update(loop=loop, stop=stop)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            # grpc.aio binds the server to the running loop: create it here.
            server = GrpcServer(master, args.port, tls=tls, verify_node_name=args.verify_node_name)
            await server.start()
        except (OSError, ValueError, RuntimeError) as err:
            log.error("cannot start the gRPC server on port %d: %s", args.port, err)
            exit_code[0] = 2
            return
        started.set()
        log.info(
            "nfd-master %s serving gRPC on port %d (%s), metrics on %d%s",
            __version__,
            server.port,
            "mTLS" if tls else "plaintext",
            args.metrics,
            " [no-publish]" if args.no_publish else "",
        )

        async def resync() -> None:
            while args.resync_period > 0:
                await asyncio.sleep(args.resync_period)
                log.info("periodic resync")
                await loop.run_in_executor(None, master.resync)
                await server.stream.request_resync("periodic resync")

        task = asyncio.create_task(resync())
        await stop.wait()
        task.cancel()
        log.info("shutting down")
        await server.stop(1.0)

    asyncio.run(run())
    http.shutdown()
    master.stop()
    if config_watch:
        config_watch.stop()
    if watcher:
        watcher.stop()
    if node_watch:
        node_watch.stop()
    return exit_code[0]


def _dry_run_apply(args: Any) -> Any:
    import json

    from nfd.master.kube import KubeNodes, NodeUpdater, load_api_client

    try:
        updater = NodeUpdater(
            KubeNodes(load_api_client(args.kubeconfig)),
            instance=args.instance,
            gpu_fn=_gpu_fn(bool(args.enable_gpu_marking)),
        )
    except Exception as err:  # noqa: BLE001 - no API: --no-publish works without one
        log.warning("--no-publish: no Kubernetes API (%s); logging desired state only", err)
        return None

    def apply(node: str, item: WorkItem) -> None:
        from nfd.master.queue import Permanent

        try:
            ops = updater.dry_run(node, item.desired, item.allow_remove)
        except Exception as err:  # noqa: BLE001
            if getattr(err, "status", None) == 404:
                raise Permanent(f"node {node} not found") from None
            raise
        log.info("node %s (--no-publish): would send patch %s", node, json.dumps(ops))

    return apply


def _prune(nodes: Any, instance: str) -> int:
    from nfd.master.kube import NodeUpdater

    updater = NodeUpdater(nodes, instance=instance)
    failed = 0
    listed = nodes.list_all()
    for node in listed:
        name = node["metadata"]["name"]
        try:
            if updater.prune(name):
                log.info("node %s: pruned", name)
        except Exception as err:  # noqa: BLE001 - report and go on with the other nodes
            failed += 1
            log.error("node %s: prune failed: %s", name, err)
    log.info("prune: %d nodes, %d failed", len(listed), failed)
    return 1 if failed else 0


def _gpu_only(api_client: Any, gpu: Any, metrics: MasterMetrics, args: Any) -> int:
    from nfd.master.gpuonly import GPU_ONLY_INSTANCE, run_gpu_marking_only

    stop = threading.Event()  # SIGTERM keeps its default action: the watch just ends
    http = serve_http(args.metrics, metrics.registry, lambda: True)
    log.info("nfd-master %s: GPU marking only", __version__)
    run_gpu_marking_only(
        api_client,
        gpu,
        metrics,
        stop,
        instance=args.instance or GPU_ONLY_INSTANCE,
        parallelism=args.nfd_api_parallelism,
    )
    http.shutdown()
    return 0


def console_main() -> None:
    sys.exit(main())
