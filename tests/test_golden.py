"""Golden files: ``nfd export labels|features`` on every fixture tree, byte for byte.

On a mismatch the test prints a unified diff. If the change is intended,
regenerate with ``.venv/bin/python -m tests.golden regen`` and review the diff.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from tests.golden import HERE, KINDS, REGEN_COMMAND, TREES, export, golden_path
from tests.golden.host_full import ROOT as HOST_FULL
from tests.golden.host_full import build


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tree", list(TREES))
def test_export_matches_golden(tree, kind):
    assert TREES[tree].is_dir(), f"fixture tree {TREES[tree]} is missing"
    path = golden_path(tree, kind)
    assert path.exists(), f"no golden file {path}; create it with `{REGEN_COMMAND} {tree}`"
    proc = export(tree, kind)
    assert proc.returncode == 0, f"nfd export {kind} failed on {tree}:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    expected = path.read_text()
    if proc.stdout != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                proc.stdout.splitlines(keepends=True),
                fromfile=f"golden {path.relative_to(HERE.parents[1])}",
                tofile=f"nfd export {kind} on {tree}",
            )
        )
        pytest.fail(
            f"{tree}/{kind}.json differs from the golden file "
            f"(if intended: `{REGEN_COMMAND}`, then review git diff):\n{diff}",
            pytrace=False,
        )


def test_no_stale_golden_directories():
    dirs = {p.name for p in HERE.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert dirs == set(TREES), f"golden dirs without a tree: {sorted(dirs - set(TREES))}"


def test_goldens_do_not_leak_this_machine():
    release = os.uname().release
    for tree in TREES:
        for kind in KINDS:
            text = golden_path(tree, kind).read_text()
            assert release not in text, f"{tree}/{kind}.json contains this kernel ({release})"
            assert str(HERE.parents[1]) not in text, f"{tree}/{kind}.json has a local path"


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                out[rel] = path.read_text()
            elif not any(path.iterdir()):
                out[rel] = "<empty dir>"
    return out


def test_host_full_tree_is_what_its_builder_writes(tmp_path):
    # The tree is generated: a hand edit would be lost on the next rebuild.
    build(tmp_path / "host-full")
    assert _snapshot(HOST_FULL) == _snapshot(tmp_path / "host-full"), (
        "tests/fixtures/host-full differs from tests/golden/host_full.py; "
        "rebuild with `.venv/bin/python -m tests.golden.host_full`"
    )
