"""Master cold start from NodeFeature objects: ours vs upstream v0.19 nfd-master (issues 18, 19).

One throw-away control plane (etcd + kube-apiserver, tests/kube/controlplane.py, loopback
only). N Node objects (as a kubelet registers them) and N NodeFeature objects, one per node,
named after it, in the master's namespace, labelled ``nfd.node.kubernetes.io/node-name``.
Each object is of real size: the labels and raw features our worker discovers on the
host-full fixture tree, kernel.config grown to 3,000 options (a distribution kernel's order
of magnitude), plus the managedFields the API server adds (~160 KiB as served).

Then, for each master in turn (upstream first, then ours; the Nodes are deleted and
registered again in between, so both start from unlabelled Nodes and the same objects):
start it, watch all Nodes, and measure the time from the start of the process until every
Node carries the objects' labels; the master's peak RSS and CPU seconds (psutil, the
process tree); the API server's and etcd's CPU seconds; API requests by verb and resource
from the API server's own ``apiserver_request_total`` (before/after difference).

Bounded: N objects, one time limit per master (--limit), loopback only; it stops by itself
and removes its control plane. ``make bench`` runs N=200; ``SCALE=5000 make bench`` or
``python -m bench.bench_nodefeature_scale --nodes 5000`` the full size (above 2,000 nodes
the API server keeps no NodeFeature in its watch cache, where each takes ~3 MiB: see
--watch-cache). Writes (replaces) its section for that N in bench/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results.md"
OUR_MASTER = Path(
    os.environ.get("NFD_BENCH_OUR_MASTER") or Path(sys.executable).parent / "nfd-master"
)
FNK = "feature.node.kubernetes.io"
BENCH_LABEL = f"{FNK}/nfbench"
NODE_NAME_LABEL = "nfd.node.kubernetes.io/node-name"
NAMESPACE = "node-feature-discovery"
GROUP, VERSION = "nfd.k8s-sigs.io", "v1alpha1"
KERNEL_OPTIONS = 3000
CRDS = ("crd-nodefeatures.yaml", "crd-nodefeaturerules.yaml", "crd-nodefeaturegroups.yaml")

# Each side's best settings (see the section "Settings" this module writes).
UPSTREAM_PARALLELISM = 100
OUR_PARALLELISM = 10
# Upstream's default; its initial read is one streaming watch-list, where it does not apply.
PAGE_SIZE = 200
# Ours at the same default: its list fetches the next page while it parses the last
# (nfd/master/watch.py). NFD_BENCH_PAGE_SIZE=1000 was its best before that (results.md).
OUR_PAGE_SIZE = int(os.environ.get("NFD_BENCH_PAGE_SIZE") or PAGE_SIZE)


# ------------------------------------------------------------------------------------ API


class Api:
    """Raw HTTPS to the test API server (urllib3, one pool, the admin token): JSON in,
    answers not parsed unless asked, so the load generator stays cheap."""

    def __init__(self, server: str, token: str, ca: Path) -> None:
        import urllib3

        host, port = server.removeprefix("https://").split(":")
        self.pool = urllib3.HTTPSConnectionPool(
            host, int(port), maxsize=16, ca_certs=str(ca), cert_reqs="CERT_REQUIRED", timeout=120
        )
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> tuple[int, bytes]:
        headers = {**self.headers, "Content-Type": content_type} if content_type else self.headers
        r = self.pool.request(method, path, body=body, headers=headers, retries=False)
        return r.status, r.data

    def ok(
        self, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> bytes:
        status, data = self.request(method, path, body, content_type)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {data[:500]!r}")
        return data


def request_counts(api: Api) -> Counter[tuple[str, str]]:
    """apiserver_request_total summed by (verb, resource), API resources only."""
    return parse_request_counts(api.ok("GET", "/metrics").decode())


def parse_request_counts(text: str) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if labels.get("resource"):
            counts[(labels["verb"], labels["resource"])] += int(float(line.rsplit(" ", 1)[1]))
    return counts


# ------------------------------------------------------------------------------------ load


def realistic_spec() -> dict[str, Any]:
    """labels + features of the host-full fixture, kernel.config with 3,000 options."""
    bindir = Path(sys.executable).parent
    tree = REPO / "tests" / "fixtures" / "host-full"

    def export(what: str) -> Any:
        out = subprocess.run(
            [str(bindir / "nfd"), "export", what, f"--host-prefix={tree}"],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        ).stdout
        return json.loads(out)

    features = export("features")
    config = features["attributes"].setdefault("kernel.config", {"elements": {}})["elements"]
    for i in range(KERNEL_OPTIONS - len(config)):
        config[f"OPTION_{i:05d}_{'M' if i % 3 else 'Y'}"] = "m" if i % 3 else "y"
    labels = {**export("labels"), BENCH_LABEL: "1"}
    return {"labels": labels, "features": features}


def delete_nodes(api: Api, count: int, limit: float) -> None:
    api.ok("DELETE", "/api/v1/nodes?labelSelector=nfbench%3Dnode")
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        items = json.loads(api.ok("GET", "/api/v1/nodes?labelSelector=nfbench%3Dnode&limit=1"))
        if not items["items"]:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{count} Nodes not deleted within {limit:.0f} s")


def create_nodefeatures(api: Api, names: list[str], spec: dict[str, Any]) -> int:
    """Create one NodeFeature per node; returns the size of one object as served."""
    spec_json = json.dumps(spec)
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/nodefeatures"

    def make(node: str) -> int:
        meta = {"name": node, "namespace": NAMESPACE, "labels": {NODE_NAME_LABEL: node}}
        body = (
            f'{{"apiVersion":"{GROUP}/{VERSION}","kind":"NodeFeature",'
            f'"metadata":{json.dumps(meta)},"spec":{spec_json}}}'
        ).encode()
        return len(api.ok("POST", path, body))

    def guarded(node: str) -> int:
        check_memory()
        return make(node)

    with ThreadPoolExecutor(8) as pool:
        sizes = list(pool.map(guarded, names))
    return sizes[0]


# ----------------------------------------------------------------------------------- watch


class NodeWatch:
    """A raw watch over all Nodes: the time each one first shows BENCH_LABEL, and how many
    labels it then has. Started before the master; one LIST and one WATCH of its own."""

    def __init__(self, server: str, token: str, ca: Path, names: set[str]) -> None:
        self.server, self.token, self.ca = server, token, ca
        self.want = names
        self.labelled: dict[str, float] = {}
        self.label_counts: dict[str, int] = {}
        self.sample: set[str] = set()  # the label names of the first Node labelled
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._stop = False
        self._response: Any = None

    def start(self, limit: float) -> None:
        import urllib.request

        ctx = ssl.create_default_context(cafile=str(self.ca))
        headers = {"Authorization": f"Bearer {self.token}"}
        req = urllib.request.Request(f"{self.server}/api/v1/nodes?limit=1", headers=headers)
        with urllib.request.urlopen(req, context=ctx, timeout=60) as r:
            rv = json.loads(r.read())["metadata"]["resourceVersion"]
        url = (
            f"{self.server}/api/v1/nodes?watch=1&resourceVersion={rv}"
            f"&timeoutSeconds={int(limit) + 60}"
        )
        self._response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), context=ctx, timeout=limit + 60
        )
        threading.Thread(target=self._run, daemon=True, name="node-watch").start()

    def _run(self) -> None:
        try:
            for line in self._response:
                if self._stop:
                    return
                event = json.loads(line)
                obj = event.get("object", {})
                if event.get("type") not in ("ADDED", "MODIFIED"):
                    continue
                meta = obj.get("metadata", {})
                name = meta.get("name")
                labels = meta.get("labels") or {}
                if name in self.want and name not in self.labelled and BENCH_LABEL in labels:
                    self.labelled[name] = time.monotonic()
                    self.label_counts[name] = len(labels)
                    if not self.sample:
                        self.sample = set(labels)
                    if len(self.labelled) == len(self.want):
                        self.done.set()
                        return
        except BaseException as err:  # noqa: BLE001 - reported by the caller
            if not self._stop:
                self.error = err
        finally:
            self.done.set()

    def stop(self) -> None:
        self._stop = True
        try:
            self._response.close()
        except Exception:  # noqa: BLE001 - closing a finished stream
            pass


# ----------------------------------------------------------------------------- machine

MIN_AVAILABLE_MIB = 1536  # stop before the machine runs short of memory (shared with others)


def check_memory() -> None:
    import psutil

    available = psutil.virtual_memory().available / 2**20
    if available < MIN_AVAILABLE_MIB:
        raise MemoryError(f"only {available:.0f} MiB of memory left: benchmark stopped")


def renice_all(pids: list[int], value: int = 0) -> None:
    """Set the nice value of every thread of these processes (Linux: nice is per thread)."""
    for pid in pids:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in tids:
            try:
                os.setpriority(os.PRIO_PROCESS, tid, value)
            except OSError:
                pass


def wait_for_fair_time(fair_at: str | None, plane: Any) -> str:
    """Developing runs under ``nice -n 19``; the measured run may create its objects so, and
    at ``fair_at`` (HH:MM UTC) this harness and the control plane go back to nice 0 before
    any master starts (the masters inherit it). Returns the nice value the masters get."""
    if fair_at:
        hh, mm = (int(x) for x in fair_at.split(":"))
        now = time.gmtime()
        wait = (hh * 3600 + mm * 60) - (now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec)
        if 0 < wait < 12 * 3600:
            print(f"nodefeature-scale: waiting {wait} s until {fair_at} UTC", flush=True)
            time.sleep(wait)
        renice_all([os.getpid(), *plane.pids().values()], 0)
    return str(os.getpriority(os.PRIO_PROCESS, 0))


# ---------------------------------------------------------------------------------- master


@dataclass
class Figures:
    side: str
    argv: list[str]
    nodes: int
    labelled: int = 0
    first_s: float = 0.0
    all_s: float | None = None
    peak_rss_mib: float = 0.0
    hwm_mib: float = 0.0
    rss_end_mib: float = 0.0
    cpu_s: float = 0.0
    apiserver_cpu_s: float = 0.0
    etcd_cpu_s: float = 0.0
    apiserver_rss_mib: float = 0.0
    labels_per_node: int = 0
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    sample_labels: set[str] = field(default_factory=set)
    error: str = ""


def _tree_cpu_rss(proc: Any) -> tuple[float, float]:
    import psutil

    cpu = rss = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            cpu += t.user + t.system
            rss += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return cpu, rss / 2**20


def _hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def run_master(
    plane: Any,
    api: Api,
    side: str,
    argv: list[str],
    names: list[str],
    limit: float,
    log: Path,
) -> Figures:
    import psutil

    fig = Figures(side, argv, len(names))
    pids = plane.pids()
    watch = NodeWatch(
        plane.server, plane.token, plane.kubeconfig.parent / "pki" / "apiserver.crt", set(names)
    )
    watch.start(limit)
    before = request_counts(api)
    cp_before = {c: _cpu(pids[c]) for c in ("kube-apiserver", "etcd")}
    env = {**os.environ, "NODE_NAME": names[0], "KUBERNETES_NAMESPACE": NAMESPACE}
    with open(log, "wb") as out:
        began = time.monotonic()
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    proc = psutil.Process(popen.pid)
    apiserver = psutil.Process(pids["kube-apiserver"])
    try:
        deadline = began + limit
        while not watch.done.is_set() and time.monotonic() < deadline:
            if popen.poll() is not None:
                fig.error = f"exited {popen.returncode}: {log.read_text()[-2000:]}"
                break
            try:
                _, rss = _tree_cpu_rss(proc)
            except psutil.NoSuchProcess:
                continue
            fig.peak_rss_mib = max(fig.peak_rss_mib, rss)
            check_memory()
            fig.apiserver_rss_mib = max(fig.apiserver_rss_mib, apiserver.memory_info().rss / 2**20)
            watch.done.wait(0.25)
        if watch.error is not None:
            fig.error = f"node watch: {watch.error!r}"
        fig.labelled = len(watch.labelled)
        if watch.labelled:
            fig.first_s = min(watch.labelled.values()) - began
        if fig.labelled == len(names):
            fig.all_s = max(watch.labelled.values()) - began
        elif not fig.error:
            fig.error = f"{fig.labelled} of {len(names)} labelled after {limit:.0f} s"
        if popen.poll() is None:
            fig.cpu_s, fig.rss_end_mib = _tree_cpu_rss(proc)
            fig.peak_rss_mib = max(fig.peak_rss_mib, fig.rss_end_mib)
            fig.hwm_mib = _hwm_mib(popen.pid)
        fig.apiserver_cpu_s = _cpu(pids["kube-apiserver"]) - cp_before["kube-apiserver"]
        fig.etcd_cpu_s = _cpu(pids["etcd"]) - cp_before["etcd"]
        fig.sample_labels = watch.sample
        if watch.label_counts:
            fig.labels_per_node = Counter(watch.label_counts.values()).most_common(1)[0][0]
    finally:
        watch.stop()
        popen.terminate()
        try:
            popen.wait(30)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
    # A WATCH (and a client-go streaming list, which is a WATCH) is counted when it ends:
    # read the counters once the master and the harness's watch have closed theirs.
    time.sleep(2)
    fig.requests = request_counts(api) - before
    # This harness's own: the node watch's LIST (limit=1) and WATCH.
    fig.requests[("LIST", "nodes")] -= 1
    fig.requests[("WATCH", "nodes")] -= 1
    return fig


def upstream_argv(kubeconfig: Path, work: Path) -> list[str]:
    from tests.compat.upstream import current_binary
    from tests.kube.controlplane import free_port

    config = work / "nfd-master.conf"
    config.write_text("# defaults only\n")
    return [
        str(current_binary("nfd-master")),
        f"-kubeconfig={kubeconfig}",
        f"-config={config}",
        f"-port={free_port()}",
        f"-nfd-api-parallelism={UPSTREAM_PARALLELISM}",
        f"-informer-page-size={PAGE_SIZE}",
        "-feature-gates=NodeFeatureGroupAPI=false",
    ]


def our_argv(kubeconfig: Path, profile: Path | None = None) -> list[str]:
    from tests.kube.controlplane import free_port

    head = [str(OUR_MASTER)]
    if profile is not None:
        head = [sys.executable, str(Path(__file__).with_name("sampling.py")), str(profile)]
    return [
        *head,
        f"--kubeconfig={kubeconfig}",
        f"--port={free_port()}",
        f"--grpc-port={free_port()}",
        f"--namespace={NAMESPACE}",
        f"--nfd-api-parallelism={OUR_PARALLELISM}",
        f"--informer-page-size={OUR_PAGE_SIZE}",
        "--feature-gates=NodeFeatureGroupAPI=false",
        # Our GPU marking (nvidia.com/gpu.deploy.*) is work upstream does not do: off, so
        # both masters write the same labels.
        "--enable-gpu-marking=false",
    ]


# ------------------------------------------------------------------------------------ run


@dataclass
class Setup:
    nodes: int
    object_kib: float
    register_s: float
    create_s: float
    load_avg: str
    sides: list[Figures]
    nice: str = "0"
    watch_cache: bool = True


def bench(
    nodes: int,
    limit: float,
    sides: list[str],
    work: Path,
    fair_at: str | None = None,
    profile: Path | None = None,
    watch_cache: bool = True,
) -> Setup:
    from tests.kube.controlplane import ControlPlane

    spec = realistic_spec()
    # Without the watch cache for NodeFeatures the API server holds none of them decoded
    # (~3 MiB each in its cache here): 5,000 then fit in this machine's memory.
    extra = () if watch_cache else (f"--watch-cache-sizes=nodefeatures.{GROUP}#0",)
    plane = ControlPlane.start_new(apiserver_args=extra)
    try:
        ca = plane.kubeconfig.parent / "pki" / "apiserver.crt"
        api = Api(plane.server, plane.token, ca)
        for crd in CRDS:
            plane.kubectl("apply", "-f", str(REPO / "deploy" / "base" / crd), check=True)
        plane.kubectl(
            "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s", check=True
        )
        plane.kubectl("create", "namespace", NAMESPACE, check=True)
        names = [f"nfbench-{i:05d}" for i in range(nodes)]
        began = time.monotonic()
        register_nodes_labelled(api, names)
        register_s = time.monotonic() - began
        began = time.monotonic()
        size = create_nodefeatures(api, names, spec)
        create_s = time.monotonic() - began
        print(
            f"nodefeature-scale: {nodes} Nodes in {register_s:.1f} s, {nodes} NodeFeatures "
            f"({size / 1024:.0f} KiB each as served) in {create_s:.1f} s",
            flush=True,
        )
        nice = wait_for_fair_time(fair_at, plane)
        load_avg = " ".join(f"{x:.2f}" for x in os.getloadavg())
        figures = []
        for i, side in enumerate(sides):
            if i:
                delete_nodes(api, nodes, 300)
                register_nodes_labelled(api, names)
            argv = (
                upstream_argv(plane.kubeconfig, work)
                if side == "upstream"
                else our_argv(plane.kubeconfig, profile)
            )
            fig = run_master(plane, api, side, argv, names, limit, work / f"{side}-master.log")
            print(f"nodefeature-scale: {summary(fig)}", flush=True)
            figures.append(fig)
        return Setup(nodes, size / 1024, register_s, create_s, load_avg, figures, nice, watch_cache)
    finally:
        plane.stop()


def register_nodes_labelled(api: Api, names: list[str]) -> None:
    """Nodes carry nfbench=node, so one deletecollection removes exactly them."""
    from tests.kube.controlplane import node_manifest

    def body(name: str) -> bytes:
        manifest = node_manifest(name, labels={"nfbench": "node"})
        manifest["metadata"]["annotations"] = {
            "volumes.kubernetes.io/controller-managed-attach-detach": "true"
        }
        return json.dumps(manifest).encode()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: api.ok("POST", "/api/v1/nodes", body(n)), names))


def summary(f: Figures) -> str:
    took = f"{f.all_s:.1f} s" if f.all_s is not None else f"NOT ALL ({f.labelled})"
    return (
        f"{f.side}: all {f.nodes} labelled {took}, first {f.first_s:.1f} s, peak RSS "
        f"{f.peak_rss_mib:.0f} MiB (VmHWM {f.hwm_mib:.0f}), CPU {f.cpu_s:.1f} s, apiserver CPU "
        f"{f.apiserver_cpu_s:.1f} s, etcd {f.etcd_cpu_s:.1f} s, requests "
        f"{dict(by_verb(f.requests))} {f.error}"
    )


# What a master reads and writes; the rest of apiserver_request_total in a run is the API
# server's own (its loopback informers' watches ending, its lease renewals).
MASTER_RESOURCES = ("nodes", "nodefeatures", "nodefeaturerules", "nodefeaturegroups")


def by_verb(requests: Counter[tuple[str, str]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for (verb, resource), n in requests.items():
        if n > 0 and resource in MASTER_RESOURCES:
            out[verb] += n
    return out


# ---------------------------------------------------------------------------------- report


def _ratio(ours: float | None, theirs: float | None) -> str:
    if not ours or not theirs:
        return ""
    return f"{ours / theirs:.2f}"


def render(s: Setup) -> str:
    figs = {f.side: f for f in s.sides}
    up, us = figs.get("upstream"), figs.get("ours")

    def cell(f: Figures | None, fn: Callable[[Figures], str]) -> str:
        return fn(f) if f is not None else "not run"

    def took(f: Figures) -> str:
        return f"{f.all_s:.1f} s" if f.all_s is not None else f"not all: {f.labelled} ({f.error})"

    rows = [
        ("time from master start to every Node labelled", took, lambda f: f.all_s),
        ("time to the first Node labelled", lambda f: f"{f.first_s:.1f} s", lambda f: f.first_s),
        (
            "master peak RSS (process tree, sampled every 0.25 s)",
            lambda f: f"{f.peak_rss_mib:.0f} MiB",
            lambda f: f.peak_rss_mib,
        ),
        (
            "master VmHWM (kernel's peak of the process)",
            lambda f: f"{f.hwm_mib:.0f} MiB",
            lambda f: f.hwm_mib,
        ),
        (
            "master RSS when all are labelled",
            lambda f: f"{f.rss_end_mib:.0f} MiB",
            lambda f: f.rss_end_mib,
        ),
        ("master CPU seconds (user+sys)", lambda f: f"{f.cpu_s:.1f}", lambda f: f.cpu_s),
        (
            "master CPU / wall (1.0 = one core busy)",
            lambda f: f"{f.cpu_s / f.all_s:.2f}" if f.all_s else "",
            lambda f: None,
        ),
        (
            "kube-apiserver CPU seconds",
            lambda f: f"{f.apiserver_cpu_s:.1f}",
            lambda f: f.apiserver_cpu_s,
        ),
        ("etcd CPU seconds", lambda f: f"{f.etcd_cpu_s:.1f}", lambda f: f.etcd_cpu_s),
        (
            "kube-apiserver peak RSS meanwhile",
            lambda f: f"{f.apiserver_rss_mib:.0f} MiB",
            lambda f: None,
        ),
        ("labels on a Node", lambda f: str(f.labels_per_node), lambda f: None),
    ]
    lines = [
        f"<!-- nodefeature-scale N={s.nodes} begin (bench/bench_nodefeature_scale.py) -->",
        f"## NodeFeature cold start, {s.nodes} nodes: ours vs upstream v0.19 nfd-master",
        "",
        f"Generated by `bench/bench_nodefeature_scale.py --nodes {s.nodes}`; "
        f"measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
        f"before the masters {s.load_avg} ({os.cpu_count()} cores, shared by the master, "
        "kube-apiserver, etcd, this harness and other work on the machine); masters, "
        f"kube-apiserver and etcd at nice {s.nice}.",
        "",
        f"Setup: one kube-apiserver + etcd (tests/kube/controlplane.py), {s.nodes} Nodes, "
        f"{s.nodes} NodeFeature objects in `{NAMESPACE}`, one per Node (named after it, label "
        f"`{NODE_NAME_LABEL}`), each the host-full fixture's labels and raw features with "
        f"kernel.config of {KERNEL_OPTIONS} options: {s.object_kib:.0f} KiB as served "
        f"({s.object_kib * s.nodes / 1024:.0f} MiB in all). Creating the Nodes took "
        f"{s.register_s:.0f} s, the objects {s.create_s:.0f} s (8 clients). Each master starts "
        "on the same objects and freshly registered, unlabelled Nodes; a watch over all Nodes "
        f"sees each Node get `{BENCH_LABEL}` (one of the objects' labels). "
        + (
            "The API server's watch cache holds the NodeFeatures (its default)."
            if s.watch_cache
            else "The API server runs with `--watch-cache-sizes=nodefeatures.nfd.k8s-sigs.io#0`"
            " (no NodeFeature in its watch cache: with it, 5,000 objects take ~14 GiB of its"
            " memory, more than this shared machine has to spare), so every read of them"
            " goes to etcd. Upstream's client-go asks for its initial list as a streaming"
            ' WATCH (sendInitialEvents); ours pages a LIST (resourceVersion "",'
            " --informer-page-size), the next page fetched while the last one is parsed."
        ),
        "",
        "| measure | upstream v0.19.0 | ours | ours / upstream |",
        "|---|---|---|---|",
    ]
    for title, show, value in rows:
        a = cell(up, show)
        b = cell(us, show)
        ratio = _ratio(value(us) if us else None, value(up) if up else None)
        lines.append(f"| {title} | {a} | {b} | {ratio} |")
    verbs = sorted(
        set(by_verb(up.requests) if up else []) | set(by_verb(us.requests) if us else [])
    )
    for verb in verbs:
        a = by_verb(up.requests)[verb] if up else 0
        b = by_verb(us.requests)[verb] if us else 0
        lines.append(f"| API requests: {verb} | {a} | {b} | {_ratio(b, a)} |")
    lines += [
        "",
        "API requests by verb and resource (apiserver_request_total, after - before; the"
        " harness's own LIST and WATCH of nodes taken off; other resources, the API server's"
        " own loopback watches and lease renewals, left out):",
        "",
    ]
    keys = sorted(
        {k for f in s.sides for k, n in f.requests.items() if n > 0 and k[1] in MASTER_RESOURCES},
        key=lambda k: (k[1], k[0]),
    )
    lines += ["| resource | verb | upstream | ours |", "|---|---|---|---|"]
    for verb, resource in keys:
        a = up.requests[(verb, resource)] if up else 0
        b = us.requests[(verb, resource)] if us else 0
        lines.append(f"| {resource} | {verb} | {a} | {b} |")
    if up and us and up.sample_labels and us.sample_labels:
        only_up = sorted(up.sample_labels - us.sample_labels)
        only_us = sorted(us.sample_labels - up.sample_labels)
        lines += [
            "",
            f"Labels on the first Node labelled: only upstream's: {only_up or 'none'}; "
            f"only ours: {only_us or 'none'}.",
        ]
    lines += ["", "Settings:", ""]
    for f in s.sides:
        shown = [Path(f.argv[0]).name, *[a for a in f.argv[1:] if "kubeconfig" not in a]]
        lines.append(f"- {f.side}: `{' '.join(shown)}`")
    lines += [f"<!-- nodefeature-scale N={s.nodes} end -->", ""]
    return "\n".join(lines)


def write_results(section: str, nodes: int, path: Path = RESULTS) -> None:
    """Replace this N's section of results.md (the rest is kept), or append it."""
    text = path.read_text() if path.exists() else ""
    begin = f"<!-- nodefeature-scale N={nodes} begin"
    end = f"<!-- nodefeature-scale N={nodes} end -->\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=int(os.environ.get("SCALE") or 200))
    p.add_argument("--limit", type=float, default=None, help="seconds per master (default: scaled)")
    p.add_argument("--sides", default="upstream,ours")
    p.add_argument("--no-write", action="store_true", help="print, do not touch results.md")
    p.add_argument(
        "--watch-cache",
        choices=("auto", "on", "off"),
        default="auto",
        help="off: kube-apiserver --watch-cache-sizes=nodefeatures...#0 (lists come from etcd; "
        "~3 MiB less API server memory per object); auto: off above 2,000 nodes",
    )
    p.add_argument("--no-watch-cache", action="store_true", help="--watch-cache=off")
    p.add_argument(
        "--profile-ours",
        metavar="OUT.json",
        help="run our master under bench/sampling.py (figures then include the sampler)",
    )
    p.add_argument(
        "--fair-at",
        metavar="HH:MM",
        help="UTC time from which the masters may run: then this harness and the control "
        "plane are reniced to 0 (create the objects under nice before it)",
    )
    args = p.parse_args(argv if argv is not None else [])
    if not 1 <= args.nodes <= 20000:
        raise SystemExit("--nodes must be 1..20000")
    sides = [s for s in args.sides.split(",") if s]
    if any(s not in ("upstream", "ours") for s in sides):
        raise SystemExit("--sides: upstream and/or ours")
    if args.fair_at and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", args.fair_at):
        raise SystemExit(f"--fair-at {args.fair_at!r}: want HH:MM (UTC)")
    watch_cache = args.watch_cache == "on" or (args.watch_cache == "auto" and args.nodes <= 2000)
    if args.no_watch_cache:
        watch_cache = False
    limit = args.limit if args.limit is not None else 120 + args.nodes * 0.3
    with tempfile.TemporaryDirectory(prefix="nfbench.") as tmp:
        profile = Path(args.profile_ours).resolve() if args.profile_ours else None
        setup = bench(args.nodes, limit, sides, Path(tmp), args.fair_at, profile, watch_cache)
    section = render(setup)
    print(section)
    if not args.no_write:
        write_results(section, args.nodes)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main(sys.argv[1:])
