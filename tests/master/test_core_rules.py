"""The master pipeline with the real rule engine (no gRPC, no API)."""

from __future__ import annotations

import time

from nfd.features import Features
from nfd.master.core import Master, WorkItem
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
