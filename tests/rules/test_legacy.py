"""The legacy v0.6-v0.14 ``matchOn`` format, converted and evaluated."""

from __future__ import annotations

import pytest

from nfd.features import Features
from nfd.rules import RuleError, execute_rules, load_rules


def host() -> Features:
    f = Features()
    f.add_instances(
        "pci.device",
        [
            {"class": "0300", "vendor": "10de", "device": "1db6"},
            {"class": "0200", "vendor": "8086", "device": "1572"},
        ],
    )
    f.add_instances("usb.device", [{"class": "ff", "vendor": "1d6b", "device": "0003"}])
    f.add_flags("kernel.loadedmodule", ["nvidia", "ext4"])
    f.add_flags("cpu.cpuid", ["AVX", "AVX2"])
    f.add_attributes("kernel.config", {"NO_HZ": "y", "MODULES": "m", "LOG_BUF_SHIFT": "17"})
    f.add_attributes("system.name", {"nodename": "gpu-node-1"})
    return f


def labels(text: str) -> dict[str, str]:
    return execute_rules(load_rules(text, "nfd-worker.conf", worker=True), host()).labels


@pytest.mark.parametrize(
    ("matcher", "expected"),
    [
        ("{pciId: {vendor: ['10de'], class: ['0300']}}", True),
        ("{pciId: {vendor: ['10de'], class: ['0200']}}", False),  # one device must have both
        ("{pciId: {vendor: ['15b3', '8086']}}", True),
        ("{pciId: {}}", False),  # all lists empty never matches
        ("{usbId: {vendor: ['1d6b'], device: ['0003']}}", True),
        ("{loadedKMod: [nvidia, ext4]}", True),
        ("{loadedKMod: [nvidia, xfs]}", False),
        ("{cpuId: [AVX, AVX2]}", True),
        ("{cpuId: [AVX512F]}", False),
        ("{kConfig: [NO_HZ, MODULES]}", True),  # y or m
        ("{kConfig: [LOG_BUF_SHIFT]}", False),
        ("{kConfig: ['LOG_BUF_SHIFT=17']}", True),
        ("{nodename: ['^gpu-', '(']}", True),  # invalid pattern skipped
        ("{nodename: ['^cpu-']}", False),
        ("{nodename: ['(']}", False),
        ("{loadedKMod: [nvidia], cpuId: [AVX512F]}", False),  # AND within an entry
    ],
)
def test_matchers(matcher: str, expected: bool) -> None:
    out = labels(f"- {{name: feat, matchOn: [{matcher}]}}")
    assert out == ({"custom-feat": "true"} if expected else {})


def test_entries_are_or_and_value_and_names() -> None:
    text = """
- name: my-gpu
  value: nvidia
  matchOn:
    - loadedKMod: [nope]
    - pciId: {vendor: ["10de"]}
- name: vendor.io/accel
  matchOn: [{cpuId: [AVX]}]
- name: always
  matchOn: []
"""
    assert labels(text) == {
        "custom-my-gpu": "nvidia",
        "vendor.io/accel": "true",
        "custom-always": "true",
    }


def test_mixed_with_new_format_and_errors() -> None:
    text = "- {name: a, matchOn: [{cpuId: [AVX]}]}\n- {name: b, labels: {b: '1'}}\n"
    assert labels(text) == {"custom-a": "true", "b": "1"}
    with pytest.raises(RuleError, match="unknown matcher"):
        load_rules("- {name: a, matchOn: [{pciID: {}}]}", "w", worker=True)
    with pytest.raises(RuleError, match="matchOn"):
        load_rules("- {name: a, matchOn: {cpuId: [A]}}", "w", worker=True)
