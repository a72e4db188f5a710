"""Label parity with upstream v0.19.0: its ``nfd-worker -oneshot -no-publish`` against our
``nfd export labels``, on this machine and on every fixture tree (tests/golden TREES: our own
trees and the byte-exact copies of the shared ones).

Same inputs as the v0.16 comparison (test_label_parity.py): defaults only, the same host tree
(v0.19 still takes its host prefix at link time, so the tree is reached through the prefixed
build and PREFIX_ROOT), local and custom directories where upstream reads them. The allowed
differences are the ``label-differences-v0.19`` table of docs/compatibility.md, and the table
must be exact: every difference is covered by a row, and every row outside the host scope
(whose rows depend on the CPU of the machine running the test) explains at least one
difference, so a row that no longer applies fails the test until it is removed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.compat import upstream
from tests.golden import TREES

TABLE = "label-differences-v0.19"


def _labels(scope: str, tmp: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(ours, upstream v0.19's) for `scope`: "host" or a TREES name."""
    if scope == "host":
        theirs = upstream.run_upstream_worker(tmp, current=True)
        ours = upstream.run_our_export("/", tmp)
    else:
        root = TREES[scope]
        assert root.is_dir(), f"fixture tree {root} is missing"
        with upstream.prefix_root(root):
            theirs = upstream.run_upstream_worker(tmp, prefixed=True, current=True)
        ours = upstream.run_our_export(f"{root}/", tmp)
    assert theirs, f"upstream v0.19 produced no labels on {scope}"
    assert ours, f"we produced no labels on {scope}"
    return ours, theirs


def test_every_difference_is_documented_and_every_row_is_used(tmp_path: Path) -> None:
    rows = upstream.load_allowed(TABLE)
    used: set[int] = set()
    unexplained: list[str] = []
    for scope in ("host", *sorted(TREES)):
        work = tmp_path / scope
        work.mkdir()
        ours, theirs = _labels(scope, work)
        for diff in upstream.differences(ours, theirs):
            covering = [r.line for r in rows if r.covers(scope, diff.label, diff.kind)]
            used.update(covering)
            if not covering:
                unexplained.append(f"  {scope}: {diff}")
    if unexplained:
        pytest.fail(
            f"{len(unexplained)} label difference(s) from upstream v0.19.0 not explained in "
            f"docs/compatibility.md ({TABLE}; add a row with the reason, or fix the code):\n"
            + "\n".join(unexplained),
            pytrace=False,
        )
    stale = [r for r in rows if r.line not in used and r.scope != "host"]
    assert not stale, "rows of docs/compatibility.md that explain no difference any more:\n" + (
        "\n".join(f"  line {r.line}: {r.scope} {r.pattern} {r.kind}" for r in stale)
    )


def test_same_labels_where_upstream_reads_the_tree(tmp_path: Path) -> None:
    """Against a table that hides everything: on the richest fixture, the sources v0.19 reads
    through its prefix agree label for label."""
    ours, theirs = _labels("host-full", tmp_path)
    for source in ("pci", "usb", "storage", "system", "memory", "network"):
        key = f"feature.node.kubernetes.io/{source}-"
        a = {k: v for k, v in ours.items() if k.startswith(key)}
        b = {k: v for k, v in theirs.items() if k.startswith(key)}
        assert a == b, f"{source} labels differ on host-full:\nours={a}\nupstream v0.19={b}"
    assert any(k.startswith("feature.node.kubernetes.io/pci-") for k in theirs)


def test_every_host_tree_is_compared() -> None:
    """A host tree is a directory with a `sys` or `proc` directory (tests/fixtures/README.md);
    every one under tests/fixtures (the shared trees are byte-exact copies there, never
    edited) is in TREES, so the parity tests above run on all of them. kubeyaml/ is no tree."""
    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    found = set()
    for marker in ("sys", "proc"):
        for path in fixtures.glob(f"**/{marker}"):
            root = path.parent
            # procfs's proc/sys is inside a tree, not a tree of its own
            if path.is_dir() and not path.is_symlink() and root.name != "proc":
                found.add(root.resolve())
    assert found, "no host trees found under tests/fixtures"
    assert found == {p.resolve() for p in TREES.values()}


def _tree_files(root: Path) -> dict[str, bytes]:
    """Relative path -> content (symlinks: their target) of every entry under root."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = b"-> " + os.fsencode(os.readlink(path))
        elif path.is_file():
            out[rel] = path.read_bytes()
    return out


def test_the_shared_fixture_trees_are_the_ones_compared() -> None:
    """The team's shared trees (../shared/fixtures beside the main checkout, when present) are
    compared through their byte-exact copies in tests/fixtures (tests/fixtures/README.md)."""
    here = Path(__file__).resolve().parents[2]
    candidates = [here.parent / "shared" / "fixtures", here.parents[1] / "shared" / "fixtures"]
    shared = next((c for c in candidates if c.is_dir()), None)
    if shared is None:
        pytest.skip("no ../shared/fixtures beside this checkout (a clone has only the copies)")
    names = sorted(p.name for p in shared.iterdir() if p.is_dir())
    assert names, f"{shared} has no trees"
    for name in names:
        copy = here / "tests" / "fixtures" / name
        assert _tree_files(shared / name) == _tree_files(copy), f"{copy} differs from {shared}"
