"""Label parity: upstream v0.16 ``nfd-worker -oneshot -no-publish`` vs our ``nfd export labels``.

Both get the same input: defaults only (an empty config), the same host tree, and the local
and custom directories where upstream reads them (/etc/kubernetes/node-feature-discovery,
without the host prefix). Every difference must be listed, with its reason, in the table of
docs/compatibility.md; anything else fails the test with the full list.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.compat import upstream
from tests.golden import TREES


def _check(scope: str, ours: dict[str, str], theirs: dict[str, str]) -> None:
    assert theirs, f"upstream produced no labels on {scope}"
    assert ours, f"we produced no labels on {scope}"
    missing = upstream.unexplained(scope, ours, theirs, upstream.load_allowed())
    if missing:
        listing = "\n".join(f"  {d}" for d in missing)
        pytest.fail(
            f"{len(missing)} label difference(s) on {scope} not explained in "
            f"docs/compatibility.md (add a row with the reason, or fix the code):\n{listing}",
            pytrace=False,
        )


def test_this_machine(tmp_path: Path) -> None:
    theirs = upstream.run_upstream_worker(tmp_path)
    ours = upstream.run_our_export("/", tmp_path)
    _check("host", ours, theirs)


@pytest.mark.parametrize("tree", sorted(TREES))
def test_fixture_tree(tree: str, tmp_path: Path) -> None:
    root = TREES[tree]
    assert root.is_dir(), f"fixture tree {root} is missing"
    with upstream.prefix_root(root):
        theirs = upstream.run_upstream_worker(tmp_path, prefixed=True)
    ours = upstream.run_our_export(f"{root}/", tmp_path)
    _check(tree, ours, theirs)


def test_same_labels_where_upstream_reads_the_tree(tmp_path: Path) -> None:
    """Guard against a table so broad that it hides everything: on the richest fixture, the
    sources upstream reads through its prefix must agree label for label."""
    root = TREES["host-full"]
    with upstream.prefix_root(root):
        theirs = upstream.run_upstream_worker(tmp_path, prefixed=True)
    ours = upstream.run_our_export(f"{root}/", tmp_path)
    for source in ("pci", "usb", "storage", "system", "memory", "network"):
        key = f"feature.node.kubernetes.io/{source}-"
        a = {k: v for k, v in ours.items() if k.startswith(key)}
        b = {k: v for k, v in theirs.items() if k.startswith(key)}
        assert a == b, f"{source} labels differ on host-full:\nours={a}\nupstream={b}"
