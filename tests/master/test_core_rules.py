"""The master pipeline with the real rule engine (no gRPC, no API)."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest

from nfd.features import Features
from nfd.master.core import Master, WorkItem
from nfd.master.kube import NodeUpdater
from nfd.master.policy import PolicyConfig
from nfd.rules import load_rules
from nfd.wire import features_to_proto

FNK = "feature.node.kubernetes.io"

RULES = """
apiVersion: nfd.k8s-sigs.io/v1alpha1
kind: NodeFeatureRule
metadata: {name: r}
spec:
  rules:
    - name: kernel6
      labels: {kernel6: "true", "vendor.io/major": "@kernel.version.major"}
      annotations: {note: hi}
      extendedResources: {"vendor.io/things": "2"}
      taints: [{key: vendor.io/t, value: x, effect: NoSchedule}]
      matchFeatures:
        - feature: kernel.version
          matchExpressions: {major: {op: Gt, value: ["5"]}}
"""


def wait(pred) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 5
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_rules_feed_the_policy_and_rule_changes_reevaluate_from_cache() -> None:
    applied: list[tuple[str, WorkItem]] = []
    m = Master(PolicyConfig(enable_taints=True), lambda n, i: applied.append((n, i)))
    f = Features()
    f.add_attributes("kernel.version", {"major": "6"})
    m.handle_update("n", {"worker": "1"}, features_to_proto(f))
    wait(lambda: applied)
    assert applied[-1][1].desired.labels == {f"{FNK}/worker": "1"}

    m.set_rules(load_rules(RULES, "test"))  # no worker resend needed
    wait(lambda: len(applied) >= 2)
    d = applied[-1][1].desired
    assert d.labels == {f"{FNK}/worker": "1", f"{FNK}/kernel6": "true", "vendor.io/major": "6"}
    assert d.annotations == {f"{FNK}/note": "hi"}
    assert d.extended_resources == {"vendor.io/things": "2"}
    assert [str(t) for t in d.taints] == ["vendor.io/t=x:NoSchedule"]

    # The identical resend after the rule change is unchanged again.
    r = m.handle_update("n", {"worker": "1"}, features_to_proto(f))
    assert r.unchanged
    m.set_rules([])
    wait(lambda: len(applied) >= 3)
    assert applied[-1][1].desired.labels == {f"{FNK}/worker": "1"}
    m.stop()


BAD_RULES = """
apiVersion: nfd.k8s-sigs.io/v1alpha1
kind: NodeFeatureRule
metadata: {name: bad}
spec:
  rules:
    - name: boom
      labelsTemplate: '{{ fail "boom" }}'
      matchFeatures:
        - feature: kernel.version
          matchExpressions: {major: {op: Exists}}
"""

GOOD_RULE = """
apiVersion: nfd.k8s-sigs.io/v1alpha1
kind: NodeFeatureRule
metadata: {name: bad}
spec:
  rules:
    - name: boom
      labels: {boom: "ok"}
      matchFeatures:
        - feature: kernel.version
          matchExpressions: {major: {op: Exists}}
"""


def kernel6() -> Any:
    f = Features()
    f.add_attributes("kernel.version", {"major": "6"})
    return features_to_proto(f)


def last_item(applied: list[tuple[str, WorkItem]], node: str) -> WorkItem:
    return [item for n, item in applied if n == node][-1]


def test_a_failing_rule_is_reported_once_and_the_other_rules_and_nodes_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    applied: list[tuple[str, WorkItem]] = []
    reports: list[tuple[str, str, bool]] = []
    m = Master(PolicyConfig(enable_taints=True), lambda n, i: applied.append((n, i)))
    m.on_rule_failure = lambda rule, message, blown: reports.append((rule.name, message, blown))
    m.set_rules(load_rules(RULES, "NodeFeatureRule r") + load_rules(BAD_RULES, "bad"))
    with caplog.at_level(logging.WARNING, "nfd-master"):
        for node in ("n1", "n2", "n3"):
            m.handle_update(node, {"worker": "1"}, kernel6())
    wait(lambda: {n for n, _ in applied} == {"n1", "n2", "n3"})
    for node in ("n1", "n2", "n3"):
        item = last_item(applied, node)
        assert item.desired.labels[f"{FNK}/kernel6"] == "true"  # the good rule applies
        assert item.allow_remove is False  # a rule failed: nothing is taken away
    assert [(name, blown) for name, _, blown in reports] == [("boom", False)]
    assert "error calling fail: boom" in reports[0][1]
    ours = [r for r in caplog.records if r.name == "nfd-master"]
    assert sum("rule 'boom' failed" in r.message for r in ours) == 1
    errors = m.metrics.rule_failures.labels("error")._value.get()
    assert errors == 3  # counted per evaluation, logged once
    m.stop()


def test_labels_a_rule_set_stay_on_the_node_while_the_rule_fails() -> None:
    from tests.master.test_kube import FakeNodes

    fake = FakeNodes()
    fake.add("n")
    updater = NodeUpdater(fake)  # type: ignore[arg-type]
    m = Master(PolicyConfig(), lambda n, i: updater.apply(n, i.desired, i.allow_remove))
    m.set_rules(load_rules(GOOD_RULE, "NodeFeatureRule bad"))
    m.handle_update("n", {"worker": "1"}, kernel6())
    wait(lambda: fake.nodes["n"]["metadata"]["labels"].get(f"{FNK}/boom") == "ok")
    assert m.queue is not None
    writes = len(fake.patches)
    # The rule is edited into one that fails: its label must not flap away.
    m.set_rules(load_rules(BAD_RULES, "NodeFeatureRule bad"))
    assert m.queue.wait_idle(5)
    assert fake.nodes["n"]["metadata"]["labels"][f"{FNK}/boom"] == "ok"
    # A worker label that went away meanwhile waits for the rules to work again.
    m.handle_update("n", {}, kernel6())
    assert m.queue.wait_idle(5)
    assert fake.nodes["n"]["metadata"]["labels"].get(f"{FNK}/worker") == "1"
    assert len(fake.patches) == writes
    # Fixed again (here: the rule removed): now stale labels go.
    m.set_rules([])
    assert m.queue.wait_idle(5)
    wait(lambda: f"{FNK}/boom" not in fake.nodes["n"]["metadata"]["labels"])
    assert f"{FNK}/worker" not in fake.nodes["n"]["metadata"]["labels"]
    m.stop()


def test_a_rule_over_its_budget_is_skipped_on_every_node_until_it_changes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The engine reports a rule that exceeded its evaluation budget (the rules
    package's RuleOutput.failed_rules contract); the master must not pay that
    budget again on every other node."""
    import nfd.rules

    real = nfd.rules.execute_rules
    evaluated: list[str] = []

    def execute(rules: list[Any], features: Any, **kwargs: Any) -> Any:
        evaluated.extend(r.name for r in rules)
        slow = [r for r in rules if r.name == "boom"]
        out = real([r for r in rules if r.name != "boom"], features)
        for r in slow:
            out.errors.append(
                f"{r.origin}: rule 'boom' failed: exceeded its evaluation budget (1000 steps / 1s)"
            )
        names = ("labels", "annotations", "taints", "extended_resources", "vars", "errors")
        fields = {name: getattr(out, name) for name in (*names, "matched_rules")}
        return SimpleNamespace(**fields, failed_rules=[r.name for r in slow])

    monkeypatch.setattr(nfd.rules, "execute_rules", execute)
    applied: list[tuple[str, WorkItem]] = []
    reports: list[bool] = []
    m = Master(PolicyConfig(), lambda n, i: applied.append((n, i)))
    m.on_rule_failure = lambda rule, message, blown: reports.append(blown)
    m.set_rules(load_rules(RULES, "NodeFeatureRule r") + load_rules(GOOD_RULE, "x"))
    with caplog.at_level(logging.ERROR, "nfd-master"):
        for i in range(20):
            m.handle_update(f"n{i}", {}, kernel6())
    assert evaluated.count("boom") == 1
    assert evaluated.count("kernel6") == 20
    assert reports == [True]
    assert sum("skipped on every node" in r.message for r in caplog.records) == 1
    wait(lambda: len({n for n, _ in applied}) == 20)
    assert all(not item.allow_remove for _, item in applied)  # its labels are kept
    assert all(item.desired.labels.get(f"{FNK}/kernel6") for _, item in applied)
    assert m.metrics.rule_failures.labels("skipped")._value.get() == 19
    # Unrelated rule objects re-listed: still skipped. The rule itself changed: tried again.
    m.set_rules(load_rules(RULES, "NodeFeatureRule r") + load_rules(GOOD_RULE, "x"))
    assert evaluated.count("boom") == 1
    changed = load_rules(GOOD_RULE.replace('"ok"', '"ok2"'), "x")
    m.set_rules(load_rules(RULES, "NodeFeatureRule r") + changed)
    assert evaluated.count("boom") == 2
    m.stop()


def test_an_evaluation_that_raises_keeps_every_label() -> None:
    applied: list[tuple[str, WorkItem]] = []
    m = Master(PolicyConfig(), lambda n, i: applied.append((n, i)))
    m.set_rules(load_rules(RULES, "NodeFeatureRule r"))
    import nfd.rules

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("engine bug")

    orig = nfd.rules.execute_rules
    nfd.rules.execute_rules = explode  # type: ignore[assignment]
    try:
        m.handle_update("n", {"worker": "1"}, kernel6())
    finally:
        nfd.rules.execute_rules = orig
    wait(lambda: applied)
    assert applied[-1][1].desired.labels == {f"{FNK}/worker": "1"}
    assert applied[-1][1].allow_remove is False
    m.stop()
