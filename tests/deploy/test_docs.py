"""docs/labels.md is exactly what `nfd docs labels` generates from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nfd.cli import docs
from nfd.cli.nfd import main
from nfd.sources import SOURCE_NAMES, get_source
from tests.deploy.manifests import REPO

LABELS_MD = REPO / "docs" / "labels.md"


def test_labels_md_is_up_to_date() -> None:
    expected = docs.render_labels()
    current = LABELS_MD.read_text(encoding="utf-8") if LABELS_MD.exists() else ""
    if current != expected:
        pytest.fail(f"docs/labels.md is out of date: run `{docs.REGENERATE}`", pytrace=False)


def test_reference_covers_every_source_and_its_defaults() -> None:
    text = docs.render_labels()
    for name in SOURCE_NAMES:
        assert f"\n## {name}\n" in text
        for key in get_source(name).default_config():
            assert f"    {key}:" in text, f"{name}: default option {key} missing"
    assert "`feature.node.kubernetes.io/cpu-cpuid.<FLAG>`" in text
    assert "`nvidia.com/gpu.present`" in text
    assert "`nvidia.com/gpu.deploy.driver`" in text


def test_a_labels_table_in_the_source_module_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    import nfd.sources.storage as storage

    monkeypatch.setattr(storage, "LABELS", (("spinning", "a rotating disk"),), raising=False)
    text = docs.render_labels()
    assert "| `feature.node.kubernetes.io/storage-spinning` | a rotating disk |" in text
    assert "`feature.node.kubernetes.io/storage-nonrotationaldisk`" not in text


def test_command_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "labels.md"
    assert main(["docs", "labels", "--output", str(out)]) == 0
    assert out.read_text() == docs.render_labels()
    assert main(["docs", "labels", "--check", str(out)]) == 0
    out.write_text("stale\n")
    assert main(["docs", "labels", "--check", str(out)]) == 1
    assert "out of date" in capsys.readouterr().err


DEPLOY_MD = REPO / "docs" / "deploy.md"


def test_deploy_md_names_only_paths_that_exist() -> None:
    text = DEPLOY_MD.read_text()
    paths = set(re.findall(r"`((?:deploy|hack|docs)/[\w./-]+)`", text))
    paths |= {m for m in re.findall(r"\((\w[\w./-]*\.md)\)", text)}
    assert paths
    for path in paths:
        where = REPO / path if "/" in path else REPO / "docs" / path
        assert where.exists(), f"docs/deploy.md mentions {path}, which does not exist"


def test_deploy_md_rule_example_validates(tmp_path: Path) -> None:
    text = DEPLOY_MD.read_text()
    start = text.index("apiVersion: nfd.k8s-sigs.io/v1alpha1")
    rule = tmp_path / "rule.yaml"
    rule.write_text(text[start : text.index("```", start)])
    assert main(["validate", str(rule)]) == 0
