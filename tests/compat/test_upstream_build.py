"""hack/upstream-nfd.sh: v0.16.6 and v0.19.0 built from Go modules side by side, cached."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.compat.upstream import SCRIPT, binary, current_binary, script_env, version


def test_a_second_build_only_checks_the_cache() -> None:
    began = time.monotonic()
    result = subprocess.run(
        ["bash", str(SCRIPT), "build"], capture_output=True, text=True, timeout=120
    )
    elapsed = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    current = script_env()["NFD_UPSTREAM_CURRENT"]
    for line in (
        f"node-feature-discovery {version()}: cached",
        f"node-feature-discovery {current}: cached",
        f"node-feature-discovery {current} source: cached",
    ):
        assert line in result.stderr, result.stderr
    assert elapsed < 10


@pytest.mark.parametrize("name", ["nfd-master", "nfd-worker", "kubectl-nfd"])
def test_both_versions_are_there_under_their_own_names(name: str) -> None:
    current = script_env()["NFD_UPSTREAM_CURRENT"]
    new = current_binary(name)
    assert new.name == f"upstream-{name}-{current}"
    if name != "kubectl-nfd":  # kubectl-nfd has no -version flag
        out = subprocess.run([str(new), "-version"], capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == f"{name} {current}"
    old = binary(name)
    assert old.name == f"upstream-{name}-{version()}" and old != new
