"""NodeFeatureRules that fail in a real nfd-master against a real kube-apiserver: the
rule is reported (Warning Event on its NodeFeatureRule, metric), skipped, the other rules
and nodes go on, and the labels it set before never leave the node meanwhile."""

from __future__ import annotations

import secrets
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

import nfd.rules
from nfd._proto import labeler_pb2, labeler_pb2_grpc
from nfd.features import Features
from nfd.wire import features_to_proto
from tests.e2e.master_harness import (
    FNK,
    Harness,
    install_nfr_crd,
    make_harness,
    metric_value,
    metrics_text,
)
from tests.kube.controlplane import ControlPlane, wait_until
from tests.reliability.cluster import NodeWatch, delete_nodes, register_nodes

FAILURES = "nfd_master_nodefeaturerule_failures_total"
REPORT_BOUND_S = 30  # from the rule change to its Event


@pytest.fixture
def harness(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Harness]:
    yield from make_harness(control_plane, tmp_path)


@pytest.fixture
def nodes(control_plane: ControlPlane) -> Iterator[tuple[list[str], NodeWatch, str]]:
    install_nfr_crd(control_plane)
    run = secrets.token_hex(3)
    names = register_nodes(control_plane, f"e2e-rf-{run}", 2, run)
    watch = NodeWatch(control_plane, run)
    try:
        watch.wait_seen(names)
        yield names, watch, run
    finally:
        watch.stop()
        delete_nodes(control_plane, names)


def rule_object(name: str, rule: str) -> str:
    return f"""
apiVersion: nfd.k8s-sigs.io/v1alpha1
kind: NodeFeatureRule
metadata: {{name: {name}}}
spec:
  rules:
    - name: {name}-rule
{rule}
      matchFeatures:
        - feature: kernel.version
          matchExpressions: {{major: {{op: Exists}}}}
"""


def set_labels(port: int, node: str, labels: dict[str, str]) -> None:
    f = Features()
    f.add_attributes("kernel.version", {"major": "6"})
    req = labeler_pb2.SetLabelsRequest(node_name=node, labels=labels)
    req.features.CopyFrom(features_to_proto(f))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        labeler_pb2_grpc.LabelerStub(channel).SetLabels(req, timeout=30)


def rule_events(plane: ControlPlane, rule_object: str) -> list[Any]:
    events = plane.core.list_namespaced_event(
        "default", field_selector=f"involvedObject.name={rule_object}"
    )
    return [e for e in events.items if e.involved_object.kind == "NodeFeatureRule"]


def failures(master: Any, reason: str) -> float:
    try:
        return metric_value(metrics_text(master), f'{FAILURES}{{reason="{reason}"}}')
    except KeyError:
        return 0.0


def test_a_failing_rule_is_reported_and_its_labels_stay(
    harness: Harness, nodes: tuple[list[str], NodeWatch, str]
) -> None:
    (node, other), watch, run = nodes
    flaky, good = f"flaky-{run}", f"good-{run}"
    plane = harness.plane
    master, port = harness.master("--namespace=default")
    apply = lambda text: plane.kubectl("apply", "-f", "-", input=text, check=True)  # noqa: E731
    apply(rule_object(flaky, '      labels: {e2e-flaky: "1"}'))
    apply(rule_object(good, '      labels: {e2e-good: "1"}'))
    try:
        for n in (node, other):
            set_labels(port, n, {"e2e-worker": "1"})
        want = {f"{FNK}/e2e-flaky": "1", f"{FNK}/e2e-good": "1", f"{FNK}/e2e-worker": "1"}
        watch.wait_all(
            [node, other],
            lambda n, lb: all(lb.get(k) == v for k, v in want.items()),
            30,
            "rule and worker labels",
        )
        since = time.monotonic()
        apply(rule_object(flaky, "      labelsTemplate: '{{ fail \"e2e boom\" }}'"))
        events = wait_until(lambda: rule_events(plane, flaky) or None, REPORT_BOUND_S, "the Event")
        assert [(e.type, e.reason) for e in events] == [("Warning", "RuleFailed")]
        assert "e2e boom" in events[0].message and flaky in events[0].message
        # The other rules and the workers' updates go on.
        set_labels(port, node, {"e2e-worker": "1", "e2e-worker-new": "1"})
        watch.wait_all([node], lambda n, lb: f"{FNK}/e2e-worker-new" in lb, 30, "a new label")
        assert failures(master, "error") >= 2  # both nodes re-evaluated
        ours = [ln for ln in master.text().splitlines() if " nfd-master: " in ln]
        assert sum(f"rule '{flaky}-rule' failed" in ln for ln in ours) == 1  # not per node
        time.sleep(1.0)
        assert watch.flaps({n: want for n in (node, other)}, since) == []
        assert len(rule_events(plane, flaky)) == 1
    finally:
        plane.kubectl("delete", "nodefeaturerule", flaky, good)
    # The failing rule is gone: its labels may go now.
    watch.wait_all(
        [node, other], lambda n, lb: f"{FNK}/e2e-flaky" not in lb, 30, "the flaky label removed"
    )


def runaway_template(depth: int = 40) -> str:
    """2**depth nested template calls that emit nothing (the probe's freezing rule)."""
    parts = ['{{define "t0"}}{{end}}']
    parts += [
        f'{{{{define "t{i}"}}}}{{{{template "t{i - 1}"}}}}{{{{template "t{i - 1}"}}}}{{{{end}}}}'
        for i in range(1, depth + 1)
    ]
    parts.append(f'{{{{template "t{depth}"}}}}')
    return "".join(parts)


@pytest.mark.skipif(
    not hasattr(nfd.rules, "EvalBudget"), reason="needs the rules engine's evaluation budget"
)
def test_a_rule_over_its_budget_is_skipped_on_every_node(
    harness: Harness, nodes: tuple[list[str], NodeWatch, str]
) -> None:
    (node, other), watch, run = nodes
    runaway, good = f"runaway-{run}", f"good-{run}"
    plane = harness.plane
    master, port = harness.master("--namespace=default")
    plane.kubectl(
        "apply", "-f", "-", input=rule_object(good, '      labels: {e2e-good: "1"}'), check=True
    )
    template = runaway_template().replace("'", "''")
    text = rule_object(runaway, f"      labelsTemplate: '{template}'")
    plane.kubectl("apply", "-f", "-", input=text, check=True)
    try:
        began = time.monotonic()
        set_labels(port, node, {"e2e-worker": "1"})
        events = wait_until(
            lambda: rule_events(plane, runaway) or None, REPORT_BOUND_S, "the Event"
        )
        assert [(e.type, e.reason) for e in events] == [("Warning", "RuleBudgetExceeded")]
        set_labels(port, other, {"e2e-worker": "1"})
        watch.wait_all(
            [node, other],
            lambda n, lb: lb.get(f"{FNK}/e2e-good") == "1",
            REPORT_BOUND_S,
            "the good rule's labels",
        )
        assert time.monotonic() - began < 2 * REPORT_BOUND_S
        assert failures(master, "budget") == 1  # paid once ...
        assert failures(master, "skipped") >= 1  # ... then skipped on the other node
        port_http = master.metrics_port  # type: ignore[attr-defined]
        with urllib.request.urlopen(f"http://127.0.0.1:{port_http}/healthz", timeout=5) as r:
            assert r.status == 200
    finally:
        plane.kubectl("delete", "nodefeaturerule", runaway, good)
