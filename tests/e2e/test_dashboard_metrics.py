"""The Grafana dashboard and the alerts of deploy/overlays/prometheus use only what the
running nfd-master and nfd-worker export.

A real master (against the test kube-apiserver) and two real workers (one for a
registered Node, one for a name no Node has, so that refusals are counted too) run
until every labelled series the dashboard needs exists; then both /metrics endpoints
are scraped and every PromQL expression is checked: each metric name must be a sample
name there, each label a label of that metric or one Prometheus adds to the target.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest
import yaml

from tests.e2e.master_harness import REPO, Harness, make_harness, metrics_text, register, unique
from tests.kube.controlplane import ControlPlane, free_port, wait_until
from tests.promql import exported, parse, problems

OVERLAY = REPO / "deploy" / "overlays" / "prometheus"
DASHBOARD = OVERLAY / "dashboards" / "node-feature-discovery.json"
RULES = OVERLAY / "prometheusrule.yaml"


def dashboard_exprs() -> list[tuple[str, str]]:
    doc = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in doc["panels"] for t in p["targets"]]


def alert_exprs() -> list[tuple[str, str]]:
    doc = yaml.safe_load(RULES.read_text())
    return [(r["alert"], r["expr"]) for g in doc["spec"]["groups"] for r in g["rules"]]


def _get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


@pytest.fixture(scope="module")
def scraped(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    tmp = tmp_path_factory.mktemp("dashboard")
    harness_gen = make_harness(control_plane, tmp)
    h: Harness = next(harness_gen)
    try:
        master, port = h.master()
        node = register(h, "dash")
        features = tmp / "features.d"
        features.mkdir()
        worker_port = free_port()
        h.worker(node, "host-full", f"127.0.0.1:{port}", features, f"--metrics={worker_port}")
        h.worker(unique("no-such-node"), "cpu-only", f"127.0.0.1:{port}", features)
        h.wait_labels(node, lambda lb: any("cpu-cpuid" in k for k in lb), "worker labels")

        def both() -> tuple[str, str] | None:
            m, w = metrics_text(master), _get(worker_port)
            ready = (
                'nfd_master_node_update_refused_total{reason="unknown-node"}' in m
                and "nfd_worker_labels{" in w
                and "nfd_worker_rediscoveries_total{" in w
            )
            return (m, w) if ready else None

        texts = wait_until(both, 60, "the master's refusal and the worker's series")
        yield texts
    finally:
        next(harness_gen, None)


@pytest.mark.parametrize("where,expr", dashboard_exprs() + alert_exprs(), ids=lambda v: str(v)[:60])
def test_expression_uses_only_exported_metrics_and_labels(scraped, where, expr):
    names = exported(scraped)
    assert problems(expr, names) == [], where


def test_every_exported_metric_family_is_on_the_dashboard_or_an_alert(scraped):
    """Nothing the processes export is forgotten (build info and internals aside)."""
    used = set()
    for _, expr in dashboard_exprs() + alert_exprs():
        selectors, bare, _ = parse(expr)
        used |= {m for m, _ in selectors if m} | set(bare)
    stems = {
        n.removesuffix("_total").removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
        for n in used
    }
    families = {
        n.removesuffix("_total").removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
        for n in exported(scraped)
        if n.startswith("nfd_") and not n.endswith("_created")
    }
    # Counted by reason elsewhere on the dashboard (rule errors is the same events).
    not_shown = {"nfd_master_nodefeaturerule_failures"}
    assert families - stems <= not_shown


def test_the_checker_reports_unknown_metrics_and_labels():
    names = {"a_total": frozenset({"reason"}), "up": frozenset()}
    assert problems('sum by (reason) (rate(a_total{reason="x", pod="p"}[5m]))', names) == []
    found = problems('sum by (node) (rate(b_total[5m])) + a_total{nope="1"}', names)
    assert any("metric b_total is not exported" in p for p in found)
    assert any("a_total has no label 'nope'" in p for p in found)
    assert any("label 'node'" in p for p in found)
