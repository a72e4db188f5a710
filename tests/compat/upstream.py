"""Run upstream node-feature-discovery v0.16 (Go) next to ours, for side-by-side comparisons.

The binaries come from ``hack/upstream-nfd.sh build`` (``make install``) and are cached under
``~/.cache/nfd/bin``. A missing binary raises :class:`UpstreamMissing` (an AssertionError), so a
test that needs upstream fails with "run make install" instead of skipping.

Upstream's host paths are fixed at link time (``pkg/utils/hostpath.pathPrefix``). The plain
worker reads this machine (prefix ``/``); the *prefixed* worker reads ``PREFIX_ROOT``, which
:func:`prefix_root` points at a fixture tree with symlinks (one tree at a time, under a lock).
"""

from __future__ import annotations

import fcntl
import fnmatch
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "hack" / "upstream-nfd.sh"
INSTALL_HINT = "run `make install` (hack/upstream-nfd.sh build)"
VENV_BIN = Path(sys.executable).parent
COMPAT_DOC = REPO / "docs" / "compatibility.md"
# Host directories upstream joins onto its prefix (pkg/utils/hostpath).
HOST_DIRS = ("boot", "etc", "sys", "usr", "var", "lib", "proc")


class UpstreamMissing(AssertionError):
    """An upstream binary is not built: the message says how to build it."""


@cache
def script_env() -> dict[str, str]:
    """NFD_UPSTREAM_* variables printed by ``hack/upstream-nfd.sh env`` (paths, version)."""
    out = subprocess.run(
        ["bash", str(SCRIPT), "env"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def version() -> str:
    return script_env()["NFD_UPSTREAM_VERSION"]


def binary(name: str) -> Path:
    """Path of a cached upstream binary: nfd-worker, nfd-master, kubectl-nfd,
    nfd-worker-prefixed."""
    var = "NFD_UPSTREAM_" + name.upper().replace("-", "_")
    path = Path(script_env()[var])
    if not os.access(path, os.X_OK):
        raise UpstreamMissing(f"upstream {name} {version()} is not built ({path}): {INSTALL_HINT}")
    return path


def crds_file() -> Path:
    path = Path(script_env()["NFD_UPSTREAM_CRDS"])
    if not path.is_file():
        raise UpstreamMissing(f"upstream CRDs {path} missing: {INSTALL_HINT}")
    return path


def current_source() -> Path:
    """The newest upstream release's module source (v0.19.0: cmd/, pkg/, deployment/ with
    CRDs, kustomize bases and overlays, Helm chart), cached from its Go module by
    ``hack/upstream-nfd.sh build``."""
    path = Path(script_env()["NFD_UPSTREAM_CURRENT_SRC"])
    if not (path / "deployment" / "base" / "nfd-crds" / "nfd-api-crds.yaml").is_file():
        raise UpstreamMissing(
            f"upstream {script_env()['NFD_UPSTREAM_CURRENT']} source is not cached "
            f"({path}): run `make install` (hack/upstream-nfd.sh deployment)"
        )
    return path


def current_binary(name: str) -> Path:
    """Path of a cached upstream v0.19 binary: nfd-worker, nfd-master, kubectl-nfd,
    nfd-worker-prefixed."""
    var = "NFD_UPSTREAM_CURRENT_" + name.upper().replace("-", "_")
    path = Path(script_env()[var])
    if not os.access(path, os.X_OK):
        raise UpstreamMissing(
            f"upstream {name} {script_env()['NFD_UPSTREAM_CURRENT']} is not built ({path}): "
            f"{INSTALL_HINT}"
        )
    return path


def current_deployment() -> Path:
    """deployment/ of :func:`current_source`."""
    return current_source() / "deployment"


def write_dummy_kubeconfig(path: Path) -> Path:
    """v0.16's worker builds a Kubernetes client at start even with -no-publish (nothing is
    contacted then); any syntactically valid kubeconfig does."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "none", "user": {"token": "none"}}],
                "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
                "current-context": "none",
            }
        )
    )
    return path


# ---------------------------------------------------------------------------------------------
# Parsing upstream's log


_DUMP_START = re.compile(r'"feature discovery completed" labels=<\s*$')


def parse_worker_labels(log: str) -> dict[str, str]:
    """The labels of upstream nfd-worker's last "feature discovery completed" line (-v=1).

    klog prints a multi-line value as ``labels=<`` then each line tab-indented, then `` >``;
    the value itself is the YAML dump of the label map (pkg/utils.DelayedDumper)."""
    lines = log.splitlines()
    starts = [i for i, line in enumerate(lines) if _DUMP_START.search(line)]
    if not starts:
        if '"feature discovery completed"' in log:
            raise ValueError("upstream logged no label dump: run it with -v=1")
        raise ValueError("no 'feature discovery completed' line in upstream's log")
    body = []
    for line in lines[starts[-1] + 1 :]:
        if line.strip() == ">":
            break
        body.append(line[1:] if line.startswith("\t") else line)
    else:
        raise ValueError("unterminated label dump in upstream's log")
    data = yaml.safe_load("\n".join(body)) or {}
    if not isinstance(data, dict):
        raise ValueError(f"label dump is not a map: {data!r}")
    return {str(k): str(v) for k, v in data.items()}


# ---------------------------------------------------------------------------------------------
# Running the two workers


def upstream_worker_argv(
    workdir: Path,
    *,
    prefixed: bool = False,
    extra: tuple[str, ...] = (),
    current: bool = False,
) -> list[str]:
    """argv of ``nfd-worker -oneshot -no-publish`` with defaults only (an empty config) and the
    label dump enabled. `current`: v0.19.0's worker instead of v0.16.6's. v0.19 has no
    -metrics (its -port serves metrics and health, and -oneshot returns before serving) and
    no gRPC; like v0.16 it builds a Kubernetes client at start, so it gets the dummy
    kubeconfig too, and its host prefix is the same link-time constant (PREFIX_ROOT)."""
    config = workdir / "nfd-worker.conf"
    if not config.exists():
        config.write_text("# defaults only\n")
    kubeconfig = workdir / "kubeconfig"
    if not kubeconfig.exists():
        write_dummy_kubeconfig(kubeconfig)
    name = "nfd-worker-prefixed" if prefixed else "nfd-worker"
    return [
        str(current_binary(name) if current else binary(name)),
        "-oneshot",
        "-no-publish",
        f"-config={config}",
        f"-kubeconfig={kubeconfig}",
        "-port=0" if current else "-metrics=0",
        "-v=1",
        *extra,
    ]


def run_upstream_worker(
    workdir: Path, *, prefixed: bool = False, current: bool = False
) -> dict[str, str]:
    env = {**os.environ, "NODE_NAME": "compat-node"}
    proc = subprocess.run(
        upstream_worker_argv(workdir, prefixed=prefixed, current=current),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    if proc.returncode != 0:
        raise AssertionError(f"upstream nfd-worker exited {proc.returncode}:\n{proc.stderr}")
    return parse_worker_labels(proc.stderr + proc.stdout)


def our_export_argv(host_prefix: str, workdir: Path) -> list[str]:
    """``nfd export labels`` with the same input upstream gets: defaults only, and the local and
    custom directories where upstream reads them (without the host prefix)."""
    config = workdir / "nfd-worker.conf"
    if not config.exists():
        config.write_text("# defaults only\n")
    nfd_dir = "/etc/kubernetes/node-feature-discovery"
    return [
        str(VENV_BIN / "nfd"),
        "export",
        "labels",
        "--host-prefix",
        host_prefix,
        "--config",
        str(config),
        "--features-dir",
        f"{nfd_dir}/features.d",
        "--hooks-dir",
        f"{nfd_dir}/source.d",
        "--rules-dir",
        f"{nfd_dir}/custom.d",
    ]


def run_our_export(host_prefix: str, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NFD_")}
    env["NODE_NAME"] = "compat-node"
    proc = subprocess.run(
        our_export_argv(host_prefix, workdir), capture_output=True, text=True, env=env, timeout=120
    )
    if proc.returncode != 0:
        raise AssertionError(f"nfd export labels exited {proc.returncode}:\n{proc.stderr}")
    return json.loads(proc.stdout)


@contextmanager
def prefix_root(tree: Path) -> Iterator[Path]:
    """Point the prefixed upstream worker's link-time root at ``tree``, one tree at a time.

    Each host directory upstream knows becomes a symlink into the tree (or a dangling one, when
    the tree lacks it, so upstream sees it as missing rather than reading this machine)."""
    root = Path(script_env()["NFD_UPSTREAM_PREFIX_ROOT"])
    lock_path = Path(str(root).rstrip("/") + ".lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        root.mkdir(parents=True, exist_ok=True)
        for name in HOST_DIRS:
            link = root / name
            if link.is_symlink() or link.is_file():
                link.unlink()
            elif link.exists():
                raise AssertionError(f"{link} is a real directory; remove it by hand")
            link.symlink_to(tree / name)
        try:
            yield root
        finally:
            for name in HOST_DIRS:
                (root / name).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# docs/compatibility.md: the list of known, explained differences

KINDS = ("only-ours", "only-upstream", "value", "any")


@dataclass(frozen=True)
class Allowed:
    """One row of the table: on `scope` (a tree name, `host`, `fixtures` or `*`), labels
    matching the glob `pattern` may differ in the way `kind` says (`any`: the two sides read
    different input, so the label may be missing on either side or differ), for `reason`."""

    scope: str
    pattern: str
    kind: str
    reason: str
    line: int

    def covers(self, scope: str, label: str, kind: str) -> bool:
        scope_ok = self.scope in ("*", scope) or (self.scope == "fixtures" and scope != "host")
        kind_ok = self.kind in ("any", kind)
        return scope_ok and kind_ok and fnmatch.fnmatchcase(label, self.pattern)


def parse_allowed(
    text: str, source: str = "docs/compatibility.md", table: str = "label-differences"
) -> list[Allowed]:
    """Rows of the machine-readable table between the `table` markers
    (``<!-- label-differences:begin -->`` for v0.16, ``label-differences-v0.19`` for v0.19)."""
    begin, end = f"<!-- {table}:begin -->", f"<!-- {table}:end -->"
    try:
        body = text.split(begin, 1)[1].split(end, 1)[0]
    except IndexError:
        raise ValueError(f"{source}: no {begin} ... {end} table") from None
    first = text[: text.index(begin)].count("\n") + 1
    rows: list[Allowed] = []
    for offset, raw in enumerate(body.splitlines()):
        line = raw.strip()
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
        if cells[0].lower() == "scope":
            continue
        where = f"{source}:{first + offset}"
        if len(cells) != 4:
            raise ValueError(f"{where}: expected 4 cells (scope|label|kind|reason), got {cells}")
        scope, pattern, kind, reason = cells
        if kind not in KINDS:
            raise ValueError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
        if not pattern or not reason:
            raise ValueError(f"{where}: label pattern and reason must not be empty")
        rows.append(Allowed(scope, pattern, kind, reason, first + offset))
    if not rows:
        raise ValueError(f"{source}: the label-differences table is empty")
    return rows


def load_allowed(table: str = "label-differences") -> list[Allowed]:
    return parse_allowed(COMPAT_DOC.read_text(), table=table)


def load_allowed_features() -> list[AllowedFeature]:
    return parse_allowed_features(COMPAT_DOC.read_text())


@dataclass(frozen=True)
class Difference:
    label: str
    kind: str
    ours: str | None
    upstream: str | None

    def __str__(self) -> str:
        return f"{self.kind:13} {self.label}: ours={self.ours!r} upstream={self.upstream!r}"


def differences(ours: dict[str, str], upstream: dict[str, str]) -> list[Difference]:
    out = []
    for label in sorted(set(ours) | set(upstream)):
        a, b = ours.get(label), upstream.get(label)
        if a == b:
            continue
        kind = "only-ours" if b is None else "only-upstream" if a is None else "value"
        out.append(Difference(label, kind, a, b))
    return out


def unexplained(
    scope: str, ours: dict[str, str], upstream: dict[str, str], allowed: list[Allowed]
) -> list[Difference]:
    """Differences no row of the table covers."""
    return [
        d
        for d in differences(ours, upstream)
        if not any(a.covers(scope, d.label, d.kind) for a in allowed)
    ]


# ---------------------------------------------------------------------------------------------
# Upstream's master (gRPC Labeler API enabled) on a real control plane


def upstream_master_argv(
    workdir: Path, kubeconfig: Path, port: int, metrics: int, health: int, *extra: str
) -> list[str]:
    """v0.16 nfd-master serving the gRPC Labeler API: -enable-nodefeature-api=false."""
    config = workdir / "nfd-master.conf"
    if not config.exists():
        config.write_text("# defaults only\n")
    return [
        str(binary("nfd-master")),
        "-enable-nodefeature-api=false",
        f"-kubeconfig={kubeconfig}",
        f"-config={config}",
        f"-port={port}",
        f"-metrics={metrics}",
        f"-grpc-health={health}",
        *extra,
    ]


def upstream_master_env(node: str) -> dict[str, str]:
    """NODE_NAME must name an existing Node: at start the master patches its own node."""
    return {"NODE_NAME": node, "KUBERNETES_NAMESPACE": "default"}


def install_upstream_crds(kubectl) -> None:  # type: ignore[no-untyped-def]
    """Create the upstream CRDs the cluster lacks (never replacing ours: NodeFeatureRule is
    installed from deploy/ by the master harness), and wait until they are served."""
    docs = [d for d in yaml.safe_load_all(crds_file().read_text()) if d]
    for doc in docs:
        name = doc["metadata"]["name"]
        if kubectl("get", "crd", name).returncode != 0:
            kubectl("create", "-f", "-", input=yaml.safe_dump(doc), check=True)
        kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s", check=True)


def port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def register_kubelet_node(plane, name: str) -> None:  # type: ignore[no-untyped-def]
    """Create a Node with the annotation every real kubelet sets. Upstream v0.16's master
    cannot label a Node without any annotation: its JSON patch adds under a null
    /metadata/annotations, which the apiserver rejects (docs/compatibility.md §3)."""
    from kubernetes import client

    from tests.kube.controlplane import node_manifest

    manifest = node_manifest(name)
    manifest["metadata"]["annotations"] = {
        "volumes.kubernetes.io/controller-managed-attach-detach": "true"
    }
    plane.core.create_node(body=client.V1Node.from_dict(manifest))


# ---------------------------------------------------------------------------------------------
# Raw features: what upstream's worker sends over gRPC, against `nfd export features`


def capture_upstream_request(workdir: Path, *, prefixed: bool = False) -> tuple[dict, dict]:
    """Run upstream's worker once against a throw-away Labeler server; return the (labels,
    features) of its SetLabels request, features in NodeFeature spec JSON shape."""
    from concurrent import futures

    import grpc

    from nfd._proto import labeler_pb2, labeler_pb2_grpc
    from nfd.wire import features_from_proto

    requests: list = []

    class Capture(labeler_pb2_grpc.LabelerServicer):
        def SetLabels(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
            requests.append(request)
            return labeler_pb2.SetLabelsReply()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    labeler_pb2_grpc.add_LabelerServicer_to_server(Capture(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        argv = upstream_worker_argv(workdir, prefixed=prefixed)
        argv.remove("-no-publish")
        argv += ["-enable-nodefeature-api=false", f"-server=127.0.0.1:{port}", "-grpc-health=0"]
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env={**os.environ, "NODE_NAME": "compat-node"},
            timeout=120,
        )
    finally:
        server.stop(grace=None)
    if proc.returncode != 0 or len(requests) != 1:
        raise AssertionError(
            f"upstream nfd-worker exited {proc.returncode} after {len(requests)} request(s):\n"
            f"{proc.stderr[-3000:]}"
        )
    req = requests[0]
    return dict(req.labels), features_from_proto(req.features).to_dict()


def run_our_features(host_prefix: str, workdir: Path) -> dict:
    argv = our_export_argv(host_prefix, workdir)
    argv[argv.index("labels")] = "features"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NFD_")}
    env["NODE_NAME"] = "compat-node"
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"nfd export features exited {proc.returncode}:\n{proc.stderr}")
    return json.loads(proc.stdout)


_FTABLE_BEGIN = "<!-- feature-differences:begin -->"
_FTABLE_END = "<!-- feature-differences:end -->"


@dataclass(frozen=True)
class AllowedFeature:
    """A row of the feature table: on `scope`, in feature sets matching `feature`, elements
    (flag names, attribute names, or attribute names inside instances) matching `element` may
    differ. `element` of the form `@key=glob` drops whole instances whose `key` matches."""

    scope: str
    feature: str
    element: str
    reason: str
    line: int

    def applies(self, scope: str, feature: str) -> bool:
        scope_ok = self.scope in ("*", scope) or (self.scope == "fixtures" and scope != "host")
        return scope_ok and fnmatch.fnmatchcase(feature, self.feature)


def parse_allowed_features(
    text: str, source: str = "docs/compatibility.md"
) -> list[AllowedFeature]:
    try:
        body = text.split(_FTABLE_BEGIN, 1)[1].split(_FTABLE_END, 1)[0]
    except IndexError:
        raise ValueError(f"{source}: no {_FTABLE_BEGIN} ... {_FTABLE_END} table") from None
    first = text[: text.index(_FTABLE_BEGIN)].count("\n") + 1
    rows = []
    for offset, raw in enumerate(body.splitlines()):
        line = raw.strip()
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
        if cells[0].lower() == "scope":
            continue
        where = f"{source}:{first + offset}"
        if len(cells) != 4 or not all(cells):
            raise ValueError(f"{where}: expected 4 non-empty cells (scope|feature|element|reason)")
        rows.append(AllowedFeature(*cells, line=first + offset))
    return rows


def _elements(spec: dict, kind: str) -> dict[str, object]:
    # An empty feature set and a missing one are treated alike here (upstream sends some
    # empty sets, e.g. cpu.cpuid attributes, that carry nothing a rule could match).
    return {k: v["elements"] for k, v in spec.get(kind, {}).items() if v.get("elements")}


def feature_differences(
    scope: str, ours: dict, theirs: dict, allowed: list[AllowedFeature]
) -> list[str]:
    """Differences in raw features that no row covers, one line each."""
    out = []
    for kind in ("flags", "attributes", "instances"):
        a_sets, b_sets = _elements(ours, kind), _elements(theirs, kind)
        for name in sorted(set(a_sets) | set(b_sets)):
            rows = [r for r in allowed if r.applies(scope, name)]
            if any(r.element == "*" for r in rows):
                continue
            a, b = a_sets.get(name), b_sets.get(name)
            if kind == "instances":
                a_n = _normalise_instances(a or [], rows)
                b_n = _normalise_instances(b or [], rows)
                if a_n != b_n:
                    out.append(f"instances {name}: ours={a_n} upstream={b_n}")
                continue
            a_d, b_d = dict(a or {}), dict(b or {})  # type: ignore[call-overload]
            for key in sorted(set(a_d) | set(b_d)):
                if a_d.get(key) != b_d.get(key) and not any(
                    fnmatch.fnmatchcase(key, r.element) for r in rows
                ):
                    out.append(
                        f"{kind} {name}.{key}: ours={a_d.get(key)!r} upstream={b_d.get(key)!r}"
                    )
    return out


def _normalise_instances(instances: list, rows: list[AllowedFeature]) -> list:
    drop = [r.element[1:].split("=", 1) for r in rows if r.element.startswith("@")]
    keep_rows = [r for r in rows if not r.element.startswith("@")]
    result = []
    for inst in instances:
        attrs = inst.get("attributes", {})
        if any(fnmatch.fnmatchcase(attrs.get(k, ""), g) for k, g in drop if k in attrs):
            continue
        kept = {
            k: v
            for k, v in attrs.items()
            if not any(fnmatch.fnmatchcase(k, r.element) for r in keep_rows)
        }
        result.append(sorted(kept.items()))
    return sorted(result)
