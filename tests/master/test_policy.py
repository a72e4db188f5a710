"""Label policy (upstream HEAD semantics, reference §3 and §7.3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from nfd.master.policy import (
    PolicyConfig,
    PolicyError,
    Taint,
    auto_prefix,
    build_desired,
    check_label,
    is_quantity,
    parse_taint,
)

FNK = "feature.node.kubernetes.io"


@dataclass
class Out:
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    extended_resources: dict[str, str] = field(default_factory=dict)
    taints: list[Any] = field(default_factory=list)


def reasons(rejected: list[Any]) -> dict[str, str]:
    return {r.name: r.reason for r in rejected}


def test_auto_prefix() -> None:
    assert auto_prefix("cpu-cpuid.AVX") == f"{FNK}/cpu-cpuid.AVX"
    assert auto_prefix("vendor.io/x") == "vendor.io/x"


@pytest.mark.parametrize(
    "name",
    [
        f"{FNK}/a",
        "profile.node.kubernetes.io/a",
        f"sub.{FNK}/a",
        "sub.profile.node.kubernetes.io/a",
        "vendor.io/a",
        "nvidia.com/gpu.count",
    ],
)
def test_allowed_namespaces(name: str) -> None:
    assert check_label(name, "v", PolicyConfig()) is None


@pytest.mark.parametrize(
    "name",
    ["kubernetes.io/a", "node.kubernetes.io/a", "node-role.kubernetes.io/x", "k8s.kubernetes.io/a"],
)
def test_kubernetes_namespaces_denied(name: str) -> None:
    reason = check_label(name, "v", PolicyConfig())
    assert reason is not None and "not allowed" in reason


def test_extra_label_ns_reallows_a_denied_namespace() -> None:
    cfg = PolicyConfig(extra_label_ns=frozenset({"node.kubernetes.io"}))
    assert check_label("node.kubernetes.io/a", "v", cfg) is None
    assert check_label("kubernetes.io/a", "v", cfg) is not None


def test_deny_label_ns_exact_and_suffix() -> None:
    cfg = PolicyConfig(deny_label_ns=frozenset({"vendor.io", "*.example.com"}))
    assert check_label("vendor.io/a", "v", cfg) is not None
    assert check_label("a.vendor.io/a", "v", cfg) is None
    assert check_label("x.example.com/a", "v", cfg) is not None
    assert check_label("other.org/a", "v", cfg) is None


def test_deny_star_denies_everything_even_default_ns_unless_extra() -> None:
    cfg = PolicyConfig(deny_label_ns=frozenset({"*"}), extra_label_ns=frozenset({FNK}))
    assert check_label("vendor.io/a", "v", cfg) is not None
    assert check_label(f"{FNK}/a", "v", cfg) is None


def test_whitelist_matches_name_part_unanchored() -> None:
    cfg = PolicyConfig(label_whitelist="^cpu-")
    assert check_label(f"{FNK}/cpu-x", "v", cfg) is None
    assert "whitelist" in (check_label(f"{FNK}/kernel-x", "v", cfg) or "")
    # The namespace is not part of the match.
    assert check_label("cpu-vendor.io/kernel", "v", cfg) is not None


def test_invalid_whitelist_is_a_clear_error() -> None:
    with pytest.raises(PolicyError, match="--label-whitelist"):
        PolicyConfig(label_whitelist="(")


def test_invalid_names_and_values() -> None:
    cfg = PolicyConfig()
    assert "invalid value" in (check_label(f"{FNK}/a", "bad value!", cfg) or "")
    assert "invalid value" in (check_label(f"{FNK}/a", "x" * 64, cfg) or "")
    assert "invalid name" in (check_label(f"{FNK}/-a", "v", cfg) or "")
    assert "invalid name" in (check_label("UPPER.io/a", "v", cfg) or "")


def test_gpu_marking_labels_are_reserved() -> None:
    cfg = PolicyConfig()
    assert "GPU marking" in (check_label("nvidia.com/gpu.present", "true", cfg) or "")
    assert "GPU marking" in (check_label("nvidia.com/gpu.deploy.driver", "true", cfg) or "")
    assert check_label("nvidia.com/gpu.product", "A100", cfg) is None
    assert check_label("nvidia.com/gpu.present", "true", PolicyConfig(gpu_marking=False)) is None


def test_build_desired_one_bad_label_costs_nothing_else() -> None:
    desired, rejected = build_desired(
        {"cpu-a": "true", "kubernetes.io/evil": "x", "vendor.io/b": "bad value", "c": "1"},
        PolicyConfig(),
    )
    assert desired.labels == {f"{FNK}/cpu-a": "true", f"{FNK}/c": "1"}
    assert set(reasons(rejected)) == {"kubernetes.io/evil", "vendor.io/b"}
    assert all(r.kind == "label" for r in rejected)


def test_rule_labels_override_worker_labels() -> None:
    out = Out(labels={"a": "rule", "vendor.io/r": "1"})
    desired, _ = build_desired({"a": "worker"}, PolicyConfig(), out)
    assert desired.labels == {f"{FNK}/a": "rule", "vendor.io/r": "1"}


def test_resource_labels_become_extended_resources() -> None:
    cfg = PolicyConfig(resource_labels=frozenset({"epc", "vendor.io/mem"}))
    desired, rejected = build_desired({"epc": "512", "vendor.io/mem": "notint", "other": "3"}, cfg)
    assert desired.extended_resources == {f"{FNK}/epc": "512"}
    assert desired.labels == {"vendor.io/mem": "notint", f"{FNK}/other": "3"}
    assert not rejected


def test_annotations_extended_resources_taints_from_rules() -> None:
    out = Out(
        annotations={"note": "hello", "kubernetes.io/bad": "x", "vendor.io/long": "x" * 1025},
        extended_resources={"gpus": "4", "vendor.io/mem": "2Gi", "bad": "lots"},
        taints=[
            {"key": f"{FNK}/dedicated", "value": "gpu", "effect": "NoSchedule"},
            {"key": "vendor.io/t", "effect": "Sometimes"},
            {"key": "node.kubernetes.io/t", "effect": "NoExecute"},
        ],
    )
    desired, rejected = build_desired({}, PolicyConfig(enable_taints=True), out)
    assert desired.annotations == {f"{FNK}/note": "hello"}
    assert desired.extended_resources == {f"{FNK}/gpus": "4", "vendor.io/mem": "2Gi"}
    assert desired.taints == [Taint(f"{FNK}/dedicated", "gpu", "NoSchedule")]
    kinds = sorted(r.kind for r in rejected)
    assert kinds == ["annotation", "annotation", "extended-resource", "taint", "taint"]


def test_taints_need_enable_taints() -> None:
    out = Out(taints=[{"key": "vendor.io/t", "value": "", "effect": "NoSchedule"}])
    desired, rejected = build_desired({}, PolicyConfig(), out)
    assert desired.taints == []
    assert "--enable-taints" in rejected[0].reason


def test_quantities() -> None:
    for ok in ("1", "100m", "2Gi", "1.5", "1e3", "+4"):
        assert is_quantity(ok), ok
    for bad in ("", "lots", "1GiB", "1.2.3"):
        assert not is_quantity(bad), bad


def test_taint_string_round_trip() -> None:
    for t in (Taint("a/b", "v", "NoSchedule"), Taint("a/b", "", "NoExecute")):
        assert parse_taint(str(t)) == t
    assert str(Taint("a/b", "", "NoExecute")) == "a/b:NoExecute"
    assert parse_taint("garbage") is None


def test_hostile_names_are_reported_truncated() -> None:
    _, rejected = build_desired({"x" * 100_000: "v"}, PolicyConfig())
    assert len(rejected) == 1
    assert len(rejected[0].name) < 300 and len(rejected[0].reason) < 600
