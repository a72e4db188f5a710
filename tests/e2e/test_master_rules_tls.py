"""nfd-master end to end: NodeFeatureRules applied with kubectl, and mTLS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.master_harness import (
    FNK,
    Harness,
    install_nfr_crd,
    make_harness,
    register,
)
from tests.kube.controlplane import ControlPlane, wait_until
from tests.master.certs import CA


@pytest.fixture
def harness(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Harness]:
    yield from make_harness(control_plane, tmp_path)


RULE = """
apiVersion: nfd.k8s-sigs.io/v1alpha1
kind: NodeFeatureRule
metadata:
  name: {name}
spec:
  rules:
    - name: e2e-os
      labels:
        e2e-rule: "true"
        vendor.example.com/os: "@system.osrelease.ID"
      annotations:
        e2e-note: hello
      extendedResources:
        vendor.example.com/widgets: "3"
      taints:
        - key: vendor.example.com/dedicated
          value: e2e
          effect: NoSchedule
      matchFeatures:
        - feature: system.osrelease
          matchExpressions:
            ID: {{op: In, value: [rhel]}}
    - name: never
      labels:
        e2e-never: "true"
      matchFeatures:
        - feature: system.osrelease
          matchExpressions:
            ID: {{op: In, value: [plan9]}}
"""


def features_dir(tmp: Path) -> Path:
    d = tmp / "features"
    d.mkdir(exist_ok=True)
    (d / "e2e").write_text("e2e-base=1\n")
    return d


def test_nodefeaturerule_applied_and_removed(harness: Harness, tmp_path: Path) -> None:
    install_nfr_crd(harness.plane)
    node = register(harness, "rules")
    harness.plane.kubectl("taint", "node", node, "user.example.com/own=x:NoSchedule", check=True)
    _, port = harness.master("--enable-taints")
    harness.worker(node, "cpu-only", f"127.0.0.1:{port}", features_dir(tmp_path))
    harness.wait_labels(node, lambda lb: f"{FNK}/e2e-base" in lb, "worker labels")

    name = f"e2e-{node}"
    harness.plane.kubectl("apply", "-f", "-", input=RULE.format(name=name), check=True)
    try:
        labels = harness.wait_labels(node, lambda lb: f"{FNK}/e2e-rule" in lb, "rule labels")
        assert labels["vendor.example.com/os"] == "rhel"
        assert f"{FNK}/e2e-never" not in labels

        def extras() -> tuple[dict, dict, list] | None:  # type: ignore[type-arg]
            n = harness.node(node)
            caps = n.status.capacity or {}
            taints = [(t.key, t.value, t.effect) for t in (n.spec.taints or [])]
            if "vendor.example.com/widgets" in caps and len(taints) == 2:
                return n.metadata.annotations, caps, taints
            return None

        ann, caps, taints = wait_until(extras, 30, "annotation, extended resource and taint")
        assert ann[f"{FNK}/e2e-note"] == "hello"
        assert caps["vendor.example.com/widgets"] == "3"
        assert ("vendor.example.com/dedicated", "e2e", "NoSchedule") in taints
        assert ("user.example.com/own", "x", "NoSchedule") in taints
    finally:
        harness.plane.kubectl("delete", "nodefeaturerule", name, check=True)

    labels = harness.wait_labels(
        node,
        lambda lb: f"{FNK}/e2e-rule" not in lb and "vendor.example.com/os" not in lb,
        "rule labels gone",
    )
    assert labels[f"{FNK}/e2e-base"] == "1"

    def cleaned() -> bool:
        n = harness.node(node)
        return (
            "vendor.example.com/widgets" not in (n.status.capacity or {})
            and f"{FNK}/e2e-note" not in (n.metadata.annotations or {})
            and [t.key for t in n.spec.taints or []] == ["user.example.com/own"]
        )

    wait_until(cleaned, 30, "annotation, extended resource and NFD taint removed")
    assert harness.node(node).status.capacity["cpu"] == "4"


def test_malformed_rule_rejected_by_the_crd_schema(harness: Harness) -> None:
    install_nfr_crd(harness.plane)
    bad = RULE.format(name="e2e-bad").replace("op: In, value: [rhel]", "op: Bogus")
    result = harness.plane.kubectl("apply", "-f", "-", input=bad)
    assert result.returncode != 0
    assert "Unsupported value" in result.stderr and "Bogus" in result.stderr
    no_name = """
apiVersion: nfd.k8s-sigs.io/v1alpha1
kind: NodeFeatureRule
metadata: {name: e2e-noname}
spec:
  rules:
    - labels: {a: b}
"""
    result = harness.plane.kubectl("apply", "-f", "-", input=no_name)
    assert result.returncode != 0 and "name" in result.stderr


def test_mtls_verify_node_name(harness: Harness, tmp_path: Path) -> None:
    ca = CA(tmp_path)
    cert, key = ca.issue("nfd-master", ["nfd-master"], server=True)
    good_node = register(harness, "tls-good")
    other_node = register(harness, "tls-other")
    master, port = harness.master(
        f"--ca-file={ca.ca_file}",
        f"--cert-file={cert}",
        f"--key-file={key}",
        "--verify-node-name",
    )
    server = f"127.0.0.1:{port}"
    fd = features_dir(tmp_path)

    def tls_args(cn: str, ca_obj: CA = ca) -> list[str]:
        c, k = ca_obj.issue(cn)
        return [
            f"--ca-file={ca.ca_file}",
            f"--cert-file={c}",
            f"--key-file={k}",
            "--server-name-override=nfd-master",
        ]

    harness.worker(good_node, "cpu-only", server, fd, *tls_args(good_node))
    # A worker claiming other_node with good_node's certificate is refused.
    harness.worker(other_node, "cpu-only", server, fd, *tls_args(f"{good_node}-2"))
    harness.wait_labels(good_node, lambda lb: f"{FNK}/e2e-base" in lb, "labels over mTLS")
    wait_until(lambda: "refused peer" in master.text(), 30, "the refusal log line")
    assert other_node in master.text()
    # A certificate from a foreign CA never gets through the handshake.
    evil = CA(tmp_path, "evil-ca")
    harness.worker(other_node, "cpu-only", server, fd, *tls_args(other_node, evil))
    # Plaintext against the mTLS master: refused too.
    harness.worker(other_node, "cpu-only", server, fd)
    import time

    time.sleep(5)
    assert not [k for k in harness.node_labels(other_node) if k.startswith(FNK)]
