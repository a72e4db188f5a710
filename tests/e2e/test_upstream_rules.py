"""Rule parity with upstream v0.16's nfd-master, on a real control plane.

One set of NodeFeatureRules exercises every operator v0.16 knows (In, NotIn, InRegexp, Exists,
DoesNotExist, Gt, Lt, GtLt, IsTrue, IsFalse), matching and non-matching, on flags, attributes and
instances, matchName, matchAny, labelsTemplate/varsTemplate, back-references to `rule.matched`
(within one object and across objects), `@` dynamic values and the missing-feature edge cases.
The same features (our worker on the host-full fixture tree, over gRPC) go first to upstream's
master for one node, then to ours for another; the two Nodes must end up with the same labels
and extended resources.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compat import upstream
from tests.e2e.master_harness import FIXTURES, FNK, Harness, make_harness
from tests.e2e.test_upstream_wire import (
    nfd_labels,
    our_oneshot_worker,
    register_kubelet_node,
    start_upstream_master,
    upstream_worker,
    wait_exit,
)
from tests.kube.controlplane import ControlPlane

RULES = r"""
apiVersion: nfd.k8s-sigs.io/v1alpha1
kind: NodeFeatureRule
metadata:
  name: compat-rules-a
spec:
  rules:
    - name: sentinel
      labels: {compat-sentinel: "true"}
      matchFeatures:
        - feature: kernel.version
          matchExpressions: {major: {op: Exists}}
    - name: op-in
      labels: {compat-op-in: "true"}
      matchFeatures:
        - feature: system.osrelease
          matchExpressions: {ID: {op: In, value: [rhel, ubuntu]}}
    - name: op-in-miss
      labels: {compat-op-in-miss: "true"}
      matchFeatures:
        - feature: system.osrelease
          matchExpressions: {ID: {op: In, value: [plan9]}}
    - name: op-notin
      labels: {compat-op-notin: "true"}
      matchFeatures:
        - feature: system.osrelease
          matchExpressions: {ID: {op: NotIn, value: [rhel]}}
    - name: op-notin-missing-key
      labels: {compat-op-notin-missing: "true"}
      matchFeatures:
        - feature: system.osrelease
          matchExpressions: {NO_SUCH_KEY: {op: NotIn, value: [x]}}
    - name: op-inregexp
      labels: {compat-op-inregexp: "true"}
      matchFeatures:
        - feature: kernel.version
          matchExpressions: {full: {op: InRegexp, value: ["^5\\.1[0-9]\\."]}}
    - name: op-exists-flag
      labels: {compat-op-exists: "true"}
      matchFeatures:
        - feature: cpu.cpuid
          matchExpressions: {AVX512F: {op: Exists}}
    - name: op-doesnotexist
      labels: {compat-op-doesnotexist: "true"}
      matchFeatures:
        - feature: cpu.cpuid
          matchExpressions: {NO_SUCH_FLAG: {op: DoesNotExist}}
    - name: op-doesnotexist-missing-feature
      labels: {compat-op-dne-missing-feature: "true"}
      matchFeatures:
        - feature: nosuch.feature
          matchExpressions: {x: {op: DoesNotExist}}
    - name: op-gt
      labels: {compat-op-gt: "true"}
      extendedResources: {compat-numa-nodes: "@memory.numa.node_count", compat-static: "3"}
      matchFeatures:
        - feature: memory.numa
          matchExpressions: {node_count: {op: Gt, value: ["1"]}}
    - name: op-gt-miss
      labels: {compat-op-gt-miss: "true"}
      matchFeatures:
        - feature: memory.numa
          matchExpressions: {node_count: {op: Gt, value: ["2"]}}
    - name: op-lt
      labels: {compat-op-lt: "true"}
      matchFeatures:
        - feature: kernel.version
          matchExpressions: {major: {op: Lt, value: ["6"]}}
    - name: op-gtlt
      labels: {compat-op-gtlt: "true"}
      matchFeatures:
        - feature: kernel.version
          matchExpressions: {minor: {op: GtLt, value: ["10", "20"]}}
    - name: op-istrue
      labels: {compat-op-istrue: "true"}
      matchFeatures:
        - feature: cpu.pstate
          matchExpressions: {turbo: {op: IsTrue}}
    - name: op-isfalse
      labels: {compat-op-isfalse: "true"}
      matchFeatures:
        - feature: memory.swap
          matchExpressions: {enabled: {op: IsFalse}}
    - name: instances
      labels: {compat-gpu-present: "true"}
      matchFeatures:
        - feature: pci.device
          matchExpressions:
            vendor: {op: In, value: ["10de"]}
            class: {op: InRegexp, value: ["^03"]}
    - name: instance-template
      labelsTemplate: |
        {{ range .pci.device }}compat-pci-{{ .vendor }}-{{ .device }}=present
        {{ end }}
      matchFeatures:
        - feature: pci.device
          matchExpressions:
            class: {op: In, value: ["0302", "0b40"]}
    - name: matchname-template
      labelsTemplate: |
        {{ range .cpu.cpuid }}compat-avx512-{{ .Name }}=true
        {{ end }}
      matchFeatures:
        - feature: cpu.cpuid
          matchName: {op: InRegexp, value: ["^AVX512(F|BW|CD)$"]}
    - name: attribute-template
      labelsTemplate: |
        {{ range .system.osrelease }}compat-os-{{ .Name }}={{ .Value }}
        {{ end }}
      matchFeatures:
        - feature: system.osrelease
          matchExpressions:
            ID: {op: Exists}
            VERSION_ID: {op: Exists}
    - name: dynamic-value
      labels:
        compat-kernel-major: "@kernel.version.major"
        compat.example.com/os: "@system.osrelease.ID"
      matchFeatures:
        - feature: kernel.version
          matchExpressions: {major: {op: Exists}}
    - name: match-any
      labels: {compat-match-any: "true"}
      matchAny:
        - matchFeatures:
            - feature: system.osrelease
              matchExpressions: {ID: {op: In, value: [plan9]}}
        - matchFeatures:
            - feature: memory.hugepages
              matchExpressions: {enabled: {op: IsTrue}}
    - name: match-any-miss
      labels: {compat-match-any-miss: "true"}
      matchAny:
        - matchFeatures:
            - feature: system.osrelease
              matchExpressions: {ID: {op: In, value: [plan9]}}
    - name: vars-only
      vars: {compat-var: "true"}
      varsTemplate: |
        compat-var-kernel={{ range .kernel.version }}{{ .Value }}{{ end }}
      matchFeatures:
        - feature: kernel.version
          matchExpressions: {major: {op: In, value: ["5"]}}
    - name: back-reference
      labels: {compat-backref: "true"}
      matchFeatures:
        - feature: rule.matched
          matchExpressions:
            compat-var: {op: IsTrue}
            compat-op-in: {op: IsTrue}
    - name: back-reference-miss
      labels: {compat-backref-miss: "true"}
      matchFeatures:
        - feature: rule.matched
          matchExpressions: {compat-op-in-miss: {op: Exists}}
    - name: local-feature
      labels: {compat-from-local: "true"}
      matchFeatures:
        - feature: local.label
          matchExpressions: {compat-local: {op: In, value: ["yes"]}}
    - name: override-worker-label
      labels: {compat-local: "overridden"}
      matchFeatures:
        - feature: local.label
          matchExpressions: {compat-local: {op: Exists}}
---
apiVersion: nfd.k8s-sigs.io/v1alpha1
kind: NodeFeatureRule
metadata:
  name: compat-rules-b
spec:
  rules:
    - name: cross-object-back-reference
      labels: {compat-cross-backref: "true"}
      matchFeatures:
        - feature: rule.matched
          matchExpressions:
            compat-backref: {op: IsTrue}
            compat-avx512-AVX512F: {op: IsTrue}
    - name: var-back-reference
      labelsTemplate: |
        {{ range .rule.matched }}compat-seen-{{ .Name }}={{ .Value }}
        {{ end }}
      matchFeatures:
        - feature: rule.matched
          matchName: {op: InRegexp, value: ["^compat-var"]}
"""

RULE_NAMES = ("compat-rules-a", "compat-rules-b")


@pytest.fixture
def harness(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Harness]:
    yield from make_harness(control_plane, tmp_path)


def node_result(h: Harness, node: str) -> tuple[dict[str, str], dict[str, str]]:
    obj = h.node(node)
    resources = {
        k: str(v)
        for k, v in (obj.status.capacity or {}).items()
        if k.startswith(FNK) or "compat" in k
    }
    return nfd_labels(obj.metadata.labels or {}), resources


def feed(h: Harness, feeder: str, node: str, port: int) -> None:
    """One oneshot publish of the host-full tree's features to the master on `port`."""
    if feeder == "ours":
        worker = our_oneshot_worker(h, node, port, "host-full")
        assert wait_exit(worker) == 0, f"our worker failed:\n{worker.text()}"
        return
    with upstream.prefix_root(FIXTURES / "host-full"):
        worker = upstream_worker(h, node, f"127.0.0.1:{port}", prefixed=True)
        assert wait_exit(worker) == 0, f"upstream worker failed:\n{worker.text()}"


def settled(h: Harness, node: str) -> tuple[dict[str, str], dict[str, str]]:
    """The node's NFD labels and extended resources once the rules have run (the sentinel
    rule always matches) and nothing has changed for a second."""
    h.wait_labels(node, lambda lb: f"{FNK}/compat-sentinel" in lb, "rule labels", timeout=60)
    last = node_result(h, node)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = node_result(h, node)
        if now == last:
            return now
        last = now
    raise AssertionError(f"labels of {node} still changing after 30s:\n{h.logs()}")


@pytest.mark.parametrize("feeder", ["ours", "upstream"])
def test_rules_give_the_same_node_labels_on_both_masters(harness: Harness, feeder: str) -> None:
    """Both masters get the same features: from our worker, or from upstream's (its prefixed
    build on the same tree; it reads some inputs from this machine, docs/compatibility.md §1,
    so fewer rules hit, but both masters see identical requests)."""
    h = harness
    upstream_master, port = start_upstream_master(h)  # also installs the CRDs
    h.plane.kubectl("apply", "-f", "-", input=RULES, check=True)
    try:
        theirs_node = register_kubelet_node(h, "rules-upstream")
        feed(h, feeder, theirs_node, port)
        theirs = settled(h, theirs_node)
        upstream_master.stop()

        ours_node = register_kubelet_node(h, "rules-ours")
        # GPU marking (nvidia.com/gpu.present, gpu.deploy.*) is our master's extension with no
        # upstream counterpart (docs/compatibility.md §4): off, so only the rules are compared.
        _, our_port = h.master("--enable-gpu-marking=false")
        feed(h, feeder, ours_node, our_port)
        ours = settled(h, ours_node)
    finally:
        h.plane.kubectl("delete", "nodefeaturerule", *RULE_NAMES, "--ignore-not-found")

    assert ours[0] == theirs[0], _diff("labels", ours[0], theirs[0])
    assert ours[1] == theirs[1], _diff("extended resources", ours[1], theirs[1])
    if feeder == "upstream":
        assert f"{FNK}/compat-op-in" in ours[0], "upstream's features matched no rule"
        return

    labels, resources = ours
    # The rule set must actually exercise things: the hits and misses we designed for.
    for hit in (
        "compat-op-in",
        "compat-op-notin",
        "compat-op-inregexp",
        "compat-op-exists",
        "compat-op-doesnotexist",
        "compat-op-gt",
        "compat-op-lt",
        "compat-op-gtlt",
        "compat-op-istrue",
        "compat-op-isfalse",
        "compat-gpu-present",
        "compat-pci-10de-20b5",
        "compat-avx512-AVX512F",
        "compat-os-ID",
        "compat-match-any",
        "compat-backref",
        "compat-cross-backref",
        "compat-from-local",
    ):
        assert f"{FNK}/{hit}" in labels, f"{hit} missing on our master's node: {labels}"
    for miss in ("compat-op-in-miss", "compat-op-gt-miss", "compat-backref-miss"):
        assert f"{FNK}/{miss}" not in labels
    for never in ("compat-op-notin-missing", "compat-op-dne-missing-feature"):
        assert f"{FNK}/{never}" not in labels, f"{never}: a missing key/feature never matches"
    assert labels[f"{FNK}/compat-local"] == "overridden"
    assert labels["compat.example.com/os"] == "ubuntu"
    assert f"{FNK}/compat-seen-compat-var" in labels, "vars did not reach rule.matched"
    assert resources == {f"{FNK}/compat-numa-nodes": "2", f"{FNK}/compat-static": "3"}


def _diff(what: str, ours: dict[str, str], theirs: dict[str, str]) -> str:
    keys = sorted(set(ours) | set(theirs))
    rows = [f"  {k}: ours={ours.get(k)!r} upstream={theirs.get(k)!r}" for k in keys]
    rows = [r for r, k in zip(rows, keys, strict=True) if ours.get(k) != theirs.get(k)]
    return f"{what} differ between our master and upstream's:\n" + "\n".join(rows)
