"""The nfd-master run loop: wire the Master to the Kubernetes API, the config and rule
watchers, leader election, the HTTP probes and the gRPC server, then serve until
SIGTERM (or a lost lease).

nfd.cli.master parses and checks the flags and hands over here; ``--prune`` and
``--gpu-marking-only`` are one-off modes that run instead of the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from nfd import __version__
from nfd.master.config import ConfigReloader, ConfigWatcher, MasterConfig
from nfd.master.core import Master, WorkItem
from nfd.master.explain import GpuMarking, explain_route
from nfd.master.guards import in_daemon_thread
from nfd.master.metrics import MasterMetrics
from nfd.master.policy import PolicyConfig
from nfd.master.process import ProcessGuard, raise_open_files_limit
from nfd.master.server import GrpcServer, TLSFiles
from nfd.metrics_http import serve_http

log = logging.getLogger("nfd-master")


def run(
    args: argparse.Namespace,
    policy: PolicyConfig,
    running: MasterConfig,
    explicit: set[str],
    tls: TLSFiles | None,
) -> int:
    """Run nfd-master with checked flags; the process exit code."""
    if args.prune:  # one pass over the Nodes: SIGTERM keeps its default action
        from nfd.master.kube import KubeNodes, load_api_client

        return _prune(KubeNodes(load_api_client(args.kubeconfig)), args.instance)
    guard = ProcessGuard()
    guard.install()
    old, new = raise_open_files_limit()
    if new != old:
        log.debug("open files limit raised from %d to %d", old, new)
    metrics = MasterMetrics()
    if args.gpu_marking_only:
        from nfd.master.kube import load_api_client

        api_client = load_api_client(args.kubeconfig)
        gpu = _gpu_fn(True)
        if gpu is None:
            return 2
        return _gpu_only(api_client, gpu, metrics, args, guard)
    return _serve(args, policy, running, explicit, tls, metrics, guard)


def _serve(
    args: argparse.Namespace,
    policy: PolicyConfig,
    running: MasterConfig,
    explicit: set[str],
    tls: TLSFiles | None,
    metrics: MasterMetrics,
    guard: ProcessGuard,
) -> int:
    api_client = None
    apply: Callable[[str, WorkItem], object] | None = None
    if args.no_publish and args.kubeconfig:
        # Read-only: log the exact patch that would be sent. Without a reachable API the
        # master still runs and logs the desired state instead.
        apply = _dry_run_apply(args, running.restrictions.allow_overwrite)
    elif not args.no_publish:
        from nfd.master.kube import KubeNodes, NodeUpdater, load_api_client

        api_client = load_api_client(args.kubeconfig)
        updater = NodeUpdater(
            KubeNodes(api_client),
            instance=args.instance,
            gpu_fn=_gpu_fn(bool(args.enable_gpu_marking)),
            on_update=metrics.updates.inc,
            allow_overwrite=running.restrictions.allow_overwrite,
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
    nf_watch = gc = None
    ns_watch = None
    if api_client is not None and nodefeature_api_enabled(args):
        from nfd.master.nodefeatures import NodeFeatureStore, NodeFeatureWatcher

        store = NodeFeatureStore(
            _namespace(args.namespace),
            lambda node, labels, feats: master.budget.check(node, labels, feats),
            deny_third_party_labels=running.restrictions.deny_node_feature_labels,
            disable_auto_prefix=policy.disable_auto_prefix,
        )
        selector = running.restrictions.node_feature_namespace_selector
        if selector is not None:
            from nfd.master.namespaces import NamespaceWatcher

            ns_store = store
            ns_watch = NamespaceWatcher(
                api_client,
                selector,
                lambda names: master.node_features_changed(ns_store.nodes_in(names)),
                lambda: master.node_features_synced(ns_store.nodes(), True),
            )
            store.namespace_filter = ns_watch
        master.node_features = store
        nf_watch = NodeFeatureWatcher(
            api_client,
            store,
            master.node_features_changed,
            master.node_features_synced,
            page_size=_page_size(args, running),
        )
    if api_client is not None:
        from nfd.master.kube import NodeWatcher

        on_deleted = master.node_deleted
        if nf_watch is not None and not args.no_publish:
            from nfd.master.nodefeatures import NodeFeatureGC

            gc = NodeFeatureGC(
                api_client,
                nf_watch.store,
                master.known_nodes,
                lambda: master.serving(),
                on_deleted=metrics.gc_deleted.labels("NodeFeature").inc,
                on_error=metrics.gc_delete_failures.labels("NodeFeature").inc,
            )
            collector = gc

            def on_deleted(name: str) -> None:
                master.node_deleted(name)
                collector.node_deleted(name)

        # State only for Nodes that exist: made-up names keep nothing, deleted ones go.
        node_watch = NodeWatcher(api_client, master.set_known_nodes, master.node_added, on_deleted)
        node_watch.start()
        if ns_watch is not None:
            ns_watch.start()
        if nf_watch is not None:
            nf_watch.start()
        if gc is not None:
            gc.start()
    group_watch = None
    if api_client is not None and group_gate_enabled(args):
        from nfd.master.groups import NodeFeatureGroups, NodeFeatureGroupWatcher

        master.groups = NodeFeatureGroups(master.node_inputs)
        group_watch = NodeFeatureGroupWatcher(
            api_client,
            _namespace(args.namespace),
            master.groups,
            leading=lambda: master.serving(),
            ready=lambda: (
                (node_watch is None or node_watch.synced.is_set())
                and (nf_watch is None or nf_watch.store.synced.is_set())
            ),
            on_write=metrics.group_updates.inc,
        )
        group_watch.start()
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
            disable_auto_prefix=policy.disable_auto_prefix,
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
    if api_client is not None and args.enable_leader_election and master.queue is not None:
        from nfd.master.leader import LeaderElector

        master.queue.pause()
        identity = f"{os.environ.get('NODE_NAME') or socket.gethostname()}_{uuid.uuid4()}"

        def lost() -> None:
            exit_code[0] = 1
            guard.request_stop()

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

    started = threading.Event()
    grpc_server: list[GrpcServer] = []
    gpu_marking = _explain_gpu(api_client, args)

    def health() -> str | None:
        return grpc_server[0].health_problem() if grpc_server else None

    http = serve_http(
        args.metrics,
        metrics.registry,
        lambda: (
            started.is_set()
            and (watcher is None or watcher.synced.is_set())
            and (node_watch is None or node_watch.synced.is_set())
            and (nf_watch is None or nf_watch.store.complete())
            and master.serving()
        ),
        health=health,
        routes={
            "/explain/": explain_route(
                lambda node, label: master.explain(node, label, gpu_marking(node)),
                lambda: master.serving(),
            )
        },
    )

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # the loop already ended: nothing left to stop
                pass

        guard.on_stop(wake)
        try:
            # grpc.aio binds the server to the running loop: create it here.
            server = GrpcServer(master, args.port, tls=tls, verify_node_name=args.verify_node_name)
            await server.start()
        except (OSError, ValueError, RuntimeError) as err:
            log.error("cannot start the gRPC server on port %d: %s", args.port, err)
            exit_code[0] = 2
            return
        grpc_server.append(server)
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
                await in_daemon_thread(master.resync, "nfd-resync")
                await server.stream.request_resync("periodic resync")

        task = asyncio.create_task(resync())
        await stop.wait()
        task.cancel()
        log.info("shutting down")
        await server.stop(1.0)

    asyncio.run(serve())
    http.shutdown()
    master.stop()
    if config_watch:
        config_watch.stop()
    if watcher:
        watcher.stop()
    if node_watch:
        node_watch.stop()
    if nf_watch:
        nf_watch.stop()
    if ns_watch:
        ns_watch.stop()
    if gc:
        gc.stop()
    if group_watch:
        group_watch.stop()
    return exit_code[0]


def nodefeature_api_enabled(args: argparse.Namespace) -> bool:
    """The NodeFeatureAPI feature gate (on by default, as in upstream v0.19)."""
    gates = getattr(args, "feature_gates", None)
    if isinstance(gates, str):  # "Name=bool,Name=bool", as the flag is written
        pairs = (item.partition("=") for item in gates.split(",") if item.strip())
        gates = {k.strip(): v.strip().lower() == "true" for k, _, v in pairs}
    if isinstance(gates, dict):
        return bool(gates.get("NodeFeatureAPI", True))
    return True


def group_gate_enabled(args: argparse.Namespace) -> bool:
    """The NodeFeatureGroupAPI feature gate (off by default, as in upstream v0.19)."""
    from nfd.master.groups import gate_enabled

    return gate_enabled(getattr(args, "feature_gates", None))


def _page_size(args: argparse.Namespace, running: MasterConfig) -> int:
    """-informer-page-size / informerPageSize (the flag merged into ``running``)."""
    from nfd.master.nodefeatures import DEFAULT_PAGE_SIZE

    value = getattr(running, "informer_page_size", None)
    if value is None:
        value = getattr(args, "informer_page_size", None)
    return DEFAULT_PAGE_SIZE if value is None else int(value)


def _namespace(flag: str | None) -> str:
    if flag:
        return flag
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip()
    except OSError:
        return os.environ.get("KUBERNETES_NAMESPACE") or "node-feature-discovery"


def _explain_gpu(api_client: Any, args: argparse.Namespace) -> Callable[[str], GpuMarking | None]:
    """For /explain: the GPU marking stage as the NodeUpdater runs it, on the Node's
    labels read now (one GET per request; nothing kept)."""
    gpu = _gpu_fn(bool(args.enable_gpu_marking)) if api_client is not None else None
    if gpu is None:
        return lambda node: None
    from kubernetes import client

    from nfd.master.patch import parse_owned

    core: Any = client.CoreV1Api(api_client)  # responses read raw

    def for_node(name: str) -> GpuMarking:
        try:
            resp = core.read_node(name, _preload_content=False, _request_timeout=5)
            obj = json.loads(resp.data)
        except Exception as err:  # noqa: BLE001 - explain with NFD's labels only
            log.debug("explain: reading Node %s: %s", name, err)
            obj = {}
        current = dict((obj.get("metadata") or {}).get("labels") or {})
        owned = set(parse_owned(obj, args.instance).labels) if obj else set()

        def mark(labels: Mapping[str, str], hardware: bool) -> Mapping[str, str]:
            return dict(gpu({**current, **labels}, owned, hardware))

        return mark

    return for_node


def _gpu_fn(enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from nfd.gpu.marking import compute_gpu_labels
    except ImportError as err:
        log.error("GPU marking unavailable (%s); continuing without it", err)
        return None
    return compute_gpu_labels


def _dry_run_apply(
    args: argparse.Namespace, allow_overwrite: bool = True
) -> Callable[[str, WorkItem], None] | None:
    from nfd.master.kube import KubeNodes, NodeUpdater, load_api_client

    try:
        updater = NodeUpdater(
            KubeNodes(load_api_client(args.kubeconfig)),
            instance=args.instance,
            gpu_fn=_gpu_fn(bool(args.enable_gpu_marking)),
            allow_overwrite=allow_overwrite,
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


def _gpu_only(
    api_client: Any,
    gpu: Any,
    metrics: MasterMetrics,
    args: argparse.Namespace,
    guard: ProcessGuard,
) -> int:
    from nfd.master.gpuonly import GPU_ONLY_INSTANCE, run_gpu_marking_only

    stop = threading.Event()
    guard.on_stop(stop.set)
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
