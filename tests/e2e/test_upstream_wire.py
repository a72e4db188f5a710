"""Wire interoperability with upstream v0.16 over the gRPC Labeler API, on a real control plane.

- upstream nfd-worker -> our nfd-master, plaintext and mTLS: its labels land on the Node;
- our nfd-worker -> upstream nfd-master (started with -enable-nodefeature-api=false): ours land.

Upstream's binaries come from hack/upstream-nfd.sh (`make install`); if they are missing the
tests fail with that hint.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compat import upstream
from tests.e2e.master_harness import (
    BIN,
    FIXTURES,
    FNK,
    Harness,
    Proc,
    install_nfr_crd,
    make_harness,
    register,
    unique,
)
from tests.kube.controlplane import ControlPlane, free_port, wait_until
from tests.master.certs import CA


@pytest.fixture
def harness(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Harness]:
    yield from make_harness(control_plane, tmp_path)


def nfd_labels(labels: dict[str, str]) -> dict[str, str]:
    """Labels NFD added: everything but the kubelet-style ones the node registers with."""
    return {k: v for k, v in labels.items() if not k.startswith(("kubernetes.io/", "node."))}


def register_kubelet_node(h: Harness, prefix: str) -> str:
    """A Node as a real kubelet registers it, annotations included (upstream.py)."""
    name = unique(prefix)
    upstream.register_kubelet_node(h.plane, name)
    h.nodes.append(name)
    return name


def upstream_worker(
    h: Harness, node: str, server: str, *extra: str, prefixed: bool = False
) -> Proc:
    """Upstream's worker, oneshot, publishing over gRPC (not the NodeFeature API). `prefixed`:
    the build that reads upstream.prefix_root() instead of this machine."""
    argv = upstream.upstream_worker_argv(h.tmp, prefixed=prefixed, extra=extra)
    argv.remove("-no-publish")
    argv += ["-enable-nodefeature-api=false", f"-server={server}", "-grpc-health=0"]
    return h.spawn(f"upstream-worker-{node}", argv, env={"NODE_NAME": node})


def wait_exit(proc: Proc, timeout: float = 90) -> int:
    try:
        return proc.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"{proc.name} still running after {timeout}s:\n{proc.text()}"
        ) from None


def expected_upstream_labels(h: Harness) -> dict[str, str]:
    """What upstream's worker computes on this machine (its -no-publish dump)."""
    labels = upstream.run_upstream_worker(h.tmp)
    assert labels, "upstream computed no labels on this machine"
    return labels


def test_upstream_worker_to_our_master_plaintext(harness: Harness) -> None:
    want = expected_upstream_labels(harness)
    node = register(harness, "up-worker")
    _, port = harness.master()
    worker = upstream_worker(harness, node, f"127.0.0.1:{port}")
    assert wait_exit(worker) == 0, f"upstream worker failed:\n{worker.text()}"
    labels = harness.wait_labels(
        node, lambda lb: nfd_labels(lb) == want, "upstream worker's labels", timeout=30
    )
    annotation = harness.node(node).metadata.annotations["nfd.node.kubernetes.io/feature-labels"]
    assert annotation.split(",") == sorted(k.removeprefix(FNK + "/") for k in want)
    assert "sending labeling request to nfd-master" in worker.text()
    assert nfd_labels(labels) == want


def make_pki(tmp: Path, node: str) -> tuple[CA, tuple[Path, Path], tuple[Path, Path]]:
    ca = CA(tmp)
    # Go verifies the server name against SANs only; the worker asks for "nfd-master".
    master = ca.issue("nfd-master", sans=["nfd-master"], server=True)
    worker = ca.issue(node, sans=[node])
    return ca, master, worker


def test_upstream_worker_to_our_master_mtls(harness: Harness) -> None:
    want = expected_upstream_labels(harness)
    node = register(harness, "up-mtls")
    ca, (mcert, mkey), (wcert, wkey) = make_pki(harness.tmp, node)
    _, port = harness.master(
        f"--ca-file={ca.ca_file}",
        f"--cert-file={mcert}",
        f"--key-file={mkey}",
        "--verify-node-name",
    )
    tls = (
        f"-ca-file={ca.ca_file}",
        f"-cert-file={wcert}",
        f"-key-file={wkey}",
        "-server-name-override=nfd-master",
    )
    worker = upstream_worker(harness, node, f"127.0.0.1:{port}", *tls)
    assert wait_exit(worker) == 0, f"upstream worker failed over mTLS:\n{worker.text()}"
    harness.wait_labels(node, lambda lb: nfd_labels(lb) == want, "labels over mTLS", timeout=30)

    # A certificate for another node is refused by --verify-node-name: the worker fails and the
    # target node gets nothing.
    victim = register(harness, "up-victim")
    impostor = upstream_worker(harness, victim, f"127.0.0.1:{port}", *tls)
    assert wait_exit(impostor) != 0, f"impostor was accepted:\n{impostor.text()}"
    assert nfd_labels(harness.node_labels(victim)) == {}


def start_upstream_master(h: Harness, *extra: str) -> tuple[Proc, int]:
    """Upstream v0.16 nfd-master with the gRPC Labeler API, on the harness's control plane."""
    upstream.install_upstream_crds(h.plane.kubectl)
    install_nfr_crd(h.plane)
    own_node = register(h, "up-master")
    port, metrics, health = free_port(), free_port(), free_port()
    argv = upstream.upstream_master_argv(h.tmp, h.plane.kubeconfig, port, metrics, health, *extra)
    proc = h.spawn("upstream-master", argv, env=upstream.upstream_master_env(own_node))

    def ready() -> bool:
        if not proc.alive():
            raise AssertionError(f"upstream nfd-master exited:\n{proc.text()}")
        return upstream.port_open(port) and upstream.port_open(health)

    wait_until(ready, 60, "upstream nfd-master to serve gRPC")
    return proc, port


def our_export(tree: str, features_dir: Path) -> dict[str, str]:
    """What our worker computes for the tree (nfd export labels with the same inputs)."""
    out = subprocess.run(
        [
            str(BIN / "nfd"),
            "export",
            "labels",
            f"--host-prefix={FIXTURES / tree}/",
            f"--features-dir={features_dir}",
            f"--config={features_dir.parent / 'empty.conf'}",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)


def our_oneshot_worker(h: Harness, node: str, port: int, tree: str, *extra: str) -> Proc:
    features = h.tmp / "features"
    features.mkdir(exist_ok=True)
    (features / "compat").write_text("compat-local=yes\nvendor.example.com/compat-ns=1\n")
    (h.tmp / "empty.conf").write_text("# defaults only\n")
    return h.spawn(
        f"worker-{node}",
        [
            str(BIN / "nfd-worker"),
            f"--server=127.0.0.1:{port}",
            "--oneshot",
            f"--host-prefix={FIXTURES / tree}/",
            f"--features-dir={features}",
            f"--config={h.tmp / 'empty.conf'}",
            "--metrics=0",
            *extra,
        ],
        env={"NODE_NAME": node},
    )


def test_our_worker_to_upstream_master(harness: Harness) -> None:
    master, port = start_upstream_master(harness)
    node = register_kubelet_node(harness, "our-worker")
    worker = our_oneshot_worker(harness, node, port, "host-full")
    assert wait_exit(worker) == 0, f"our worker failed against upstream:\n{worker.text()}"
    # Unprefixed names (local source) get the default namespace from the master.
    exported = our_export("host-full", harness.tmp / "features")
    want = {(k if "/" in k else f"{FNK}/{k}"): v for k, v in exported.items()}
    assert f"{FNK}/compat-local" in want and "vendor.example.com/compat-ns" in want
    labels = harness.wait_labels(
        node, lambda lb: nfd_labels(lb) == want, "our worker's labels", timeout=30
    )
    assert nfd_labels(labels) == want
    assert "gRPC SetLabels request received" in master.text()


def alpn_of(port: int, ca: CA, cert: Path, key: Path) -> str:
    """What openssl s_client reports for ALPN when it offers h2 to 127.0.0.1:port with the
    worker's certificate: "No ALPN negotiated" or "ALPN protocol: h2"."""
    out = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-alpn",
            "h2",
            "-servername",
            "nfd-master",
            "-CAfile",
            str(ca.ca_file),
            "-cert",
            str(cert),
            "-key",
            str(key),
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return next((ln.strip() for ln in out.splitlines() if "ALPN" in ln), f"no ALPN line:\n{out}")


def test_our_worker_to_upstream_master_mtls(harness: Harness) -> None:
    """docs/compatibility.md §3: upstream v0.16's master hands its TLS settings over through
    tls.Config.GetConfigForClient without NextProtos, so it selects no ALPN (openssl shows it);
    grpcio refuses such a server, so our worker carries gRPC over its own mTLS connection
    (nfd/worker/tlsrelay.py). The labels land; --verify-node-name still refuses a worker whose
    certificate names another node."""
    node = register_kubelet_node(harness, "our-mtls")
    ca, (mcert, mkey), (wcert, wkey) = make_pki(harness.tmp, node)
    master, port = start_upstream_master(
        harness,
        f"-ca-file={ca.ca_file}",
        f"-cert-file={mcert}",
        f"-key-file={mkey}",
        "-verify-node-name",
    )
    assert alpn_of(port, ca, wcert, wkey) == "No ALPN negotiated"
    tls = (
        f"--ca-file={ca.ca_file}",
        f"--cert-file={wcert}",
        f"--key-file={wkey}",
        "--server-name-override=nfd-master",
    )
    ours = our_oneshot_worker(harness, node, port, "cpu-only", *tls)
    assert wait_exit(ours) == 0, f"our worker over mTLS to upstream v0.16:\n{ours.text()}"
    assert "selects no ALPN protocol" in ours.text()
    exported = our_export("cpu-only", harness.tmp / "features")
    want = {(k if "/" in k else f"{FNK}/{k}"): v for k, v in exported.items()}
    labels = harness.wait_labels(
        node, lambda lb: nfd_labels(lb) == want, "our labels over mTLS", timeout=30
    )
    assert nfd_labels(labels) == want
    assert "gRPC SetLabels request received" in master.text()

    # The master verified our client certificate: the same certificate publishing for another
    # node is refused by -verify-node-name, and that node gets nothing.
    victim = register_kubelet_node(harness, "our-victim")
    impostor = our_oneshot_worker(harness, victim, port, "cpu-only", *tls)
    assert wait_exit(impostor) != 0, f"impostor was accepted:\n{impostor.text()}"
    assert nfd_labels(harness.node_labels(victim)) == {}

    # A certificate from another CA does not get through the relay either.
    (harness.tmp / "other").mkdir()
    other = CA(harness.tmp / "other")
    ocert, okey = other.issue(node, sans=[node])
    stranger = our_oneshot_worker(
        harness,
        node,
        port,
        "cpu-only",
        f"--ca-file={ca.ca_file}",
        f"--cert-file={ocert}",
        f"--key-file={okey}",
        "--server-name-override=nfd-master",
    )
    assert wait_exit(stranger) != 0, f"foreign certificate was accepted:\n{stranger.text()}"
    # ... and the worker says why: the master's TLS alert, carried into its error.
    assert "alert unknown ca" in stranger.text().split("failed: ", 1)[-1], stranger.text()
