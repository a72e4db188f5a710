"""What upstream v0.19.0's own nfd-master does with restrictions, DisableAutoPrefix and
dynamic NodeFeature label values, on the real control plane (the cached upstream
binary, as tests/e2e/test_master_upstream.py): the evidence for the upstream column of
docs/compatibility.md §7 "Restrictions and DisableAutoPrefix". Where ours departs on
purpose (allowOverwrite, the tracking of unprefixed names) the test says so."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compat.upstream import UpstreamMissing, current_binary
from tests.e2e.master_harness import FNK, Harness, Proc, install_nfr_crd, make_harness, register
from tests.e2e.test_master_nodefeatures import (
    create,
    delete,
    install_nf_crd,
    nodefeature,
    patch_labels,
)
from tests.kube.controlplane import ControlPlane, free_port, wait_until

ANN = "nfd.node.kubernetes.io"


@pytest.fixture
def harness(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Harness]:
    install_nfr_crd(control_plane)
    install_nf_crd(control_plane)
    yield from make_harness(control_plane, tmp_path)


def upstream_master(h: Harness, node: str, namespace: str, *extra: str) -> Proc:
    """Upstream v0.19.0's nfd-master (its namespace from KUBERNETES_NAMESPACE, as out of
    a pod); ``node`` is the node it runs on (it annotates it at start)."""
    try:
        binary = current_binary("nfd-master")
    except UpstreamMissing as err:
        pytest.fail(str(err), pytrace=False)
    port = free_port()
    proc = h.spawn(
        "upstream-master",
        [
            str(binary),
            f"-kubeconfig={h.plane.kubeconfig}",
            f"-port={port}",
            "-config=/dev/null",
            *extra,
        ],
        env={"NODE_NAME": node, "KUBERNETES_NAMESPACE": namespace},
    )

    def healthy() -> bool:
        if not proc.alive():
            raise AssertionError(f"upstream nfd-master exited:\n{proc.text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    wait_until(healthy, 60, "upstream nfd-master /healthz")
    return proc


def node_for_upstream(h: Harness, prefix: str) -> str:
    """A Node with an annotations map: upstream patches /metadata/annotations/<key>,
    which fails (422) on a node without one (a kubelet always sets some)."""
    node = register(h, prefix)
    h.plane.kubectl("annotate", "node", node, "e2e/kubelet=yes", check=True)
    return node


def annotations(h: Harness, node: str) -> dict[str, str]:
    return dict(h.node(node).metadata.annotations or {})


def options(**restrictions: object) -> str:
    return "-options=" + json.dumps({"restrictions": restrictions})


def test_upstream_disable_auto_prefix_tracks_foo_as_the_default_namespace(
    harness: Harness, namespace: str
) -> None:
    """Upstream keeps ``foo`` unprefixed but records it as ``foo`` in feature-labels, which
    it reads back as feature.node.kubernetes.io/foo: after the object goes ``foo`` stays
    and the same-named default-namespace label, not NFD's, is removed. Ours writes
    ``/foo`` and removes only ``foo`` (test_master_restrictions.py)."""
    plane, h = harness.plane, harness
    node = node_for_upstream(h, "up-noprefix")
    create(plane, nodefeature(namespace, node, node, {"foo": "bar"}))
    upstream_master(h, node, namespace, "-feature-gates=DisableAutoPrefix=true")
    h.wait_labels(node, lambda lb: lb.get("foo") == "bar", "unprefixed label kept as is")
    assert annotations(h, node)[f"{ANN}/feature-labels"] == "foo"
    plane.core.patch_node(node, {"metadata": {"labels": {f"{FNK}/foo": "admin"}}})
    delete(plane, namespace, node)
    got = h.wait_labels(node, lambda lb: f"{FNK}/foo" not in lb, "the wrong label removed")
    assert got["foo"] == "bar"


def test_upstream_allow_overwrite_false_is_inverted_in_its_code(
    harness: Harness, namespace: str
) -> None:
    """Upstream's docs: false leaves labels NFD does not own. Its v0.19.0 createPatches:
    a label it does not own is replaced anyway (and taken over), and one it owns is not
    updated. Ours follows the docs (test_master_restrictions.py)."""
    plane, h = harness.plane, harness
    node = node_for_upstream(h, "up-overwrite")
    plane.core.patch_node(node, {"metadata": {"labels": {f"{FNK}/theirs": "admin"}}})
    create(plane, nodefeature(namespace, node, node, {"theirs": "nfd", "mine": "1"}))
    upstream_master(h, node, namespace, options(allowOverwrite=False))
    h.wait_labels(node, lambda lb: lb.get(f"{FNK}/mine") == "1", "own label")
    wait_until(lambda: h.node_labels(node)[f"{FNK}/theirs"] == "nfd", 15, "foreign overwritten")
    assert set(annotations(h, node)[f"{ANN}/feature-labels"].split(",")) == {"mine", "theirs"}
    patch_labels(plane, namespace, node, {"theirs": "nfd", "mine": "2"})
    # Give it the time a change takes on upstream's master (rate limit 1 s, then a patch).
    with pytest.raises(TimeoutError):
        wait_until(lambda: h.node_labels(node)[f"{FNK}/mine"] == "2", 8, "own label updated")


def test_upstream_resolves_dynamic_values_in_nodefeature_labels(
    harness: Harness, namespace: str
) -> None:
    plane, h = harness.plane, harness
    node = node_for_upstream(h, "up-dynamic")
    labels = {"driver": "@vendor.driver.version", "broken": "@vendor.driver.nope", "ok": "1"}
    feats = {"attributes": {"vendor.driver": {"elements": {"version": "550.54"}}}}
    create(plane, nodefeature(namespace, f"vendor-{node}", node, labels, feats))
    upstream_master(h, node, namespace)
    got = h.wait_labels(node, lambda lb: f"{FNK}/driver" in lb, "dynamic label")
    assert got[f"{FNK}/driver"] == "550.54" and got[f"{FNK}/ok"] == "1"
    assert f"{FNK}/broken" not in got


def test_upstream_namespace_selector_does_not_spare_its_own_namespace(
    harness: Harness, namespace: str
) -> None:
    plane, h = harness.plane, harness
    node = node_for_upstream(h, "up-nssel")
    vendor = f"{namespace}-vendor"
    plane.kubectl("create", "namespace", vendor, check=True)
    plane.kubectl("label", "namespace", vendor, "nfd-e2e-sel=yes", check=True)
    create(plane, nodefeature(namespace, node, node, {"own": "1"}))
    create(plane, nodefeature(vendor, f"v-{node}", node, {"vendor": "1"}))
    selector = {"matchLabels": {"nfd-e2e-sel": "yes"}}
    upstream_master(h, node, namespace, options(nodeFeatureNamespaceSelector=selector))
    got = h.wait_labels(node, lambda lb: f"{FNK}/vendor" in lb, "selected namespace's label")
    assert f"{FNK}/own" not in got


def test_upstream_disable_restrictions_cover_nodefeature_and_rule_outputs(
    harness: Harness, namespace: str
) -> None:
    """disableLabels drops NodeFeature labels and rule labels alike, disableAnnotations the
    rule's feature annotations, disableExtendedResources its extended resources; the
    tracking annotations of what is left stay (ours: test_master_restrictions.py)."""
    from tests.e2e.test_master_restrictions import features_for, rule

    plane, h = harness.plane, harness
    node = node_for_upstream(h, "up-disable")
    create(plane, nodefeature(namespace, node, node, {"nf-label": "1"}, features_for(node)))
    name = f"up-restrict-{node}"
    plane.kubectl("apply", "-f", "-", input=rule(name, node), check=True)
    try:
        upstream_master(h, node, namespace, options(disableLabels=True, disableAnnotations=True))
        # The tracking annotation comes in the same patch as the labels would.
        wait_until(
            lambda: f"{ANN}/extended-resources" in annotations(h, node), 30, "the node patch"
        )
        assert f"{FNK}/restrict-er" in (h.node(node).status.capacity or {})
        labels, ann = h.node_labels(node), annotations(h, node)
        assert not any(k.startswith(FNK) for k in labels), labels
        assert f"{FNK}/rule-note" not in ann and f"{ANN}/feature-labels" not in ann
        assert ann[f"{ANN}/extended-resources"] == "restrict-er"
    finally:
        plane.kubectl("delete", "nodefeaturerule", name, "--ignore-not-found")
