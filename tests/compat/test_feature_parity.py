"""Raw-feature parity: what upstream v0.16's worker sends over gRPC (SetLabels.features)
against our ``nfd export features``, same input. NodeFeatureRules match on these, so "same
rules" needs them equal; every difference must be covered by the feature table in
docs/compatibility.md.

The capture also checks the label path twice: the labels upstream sends must equal the ones
it logs with -no-publish (what the label parity test parses).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.compat import upstream
from tests.golden import TREES


def _check(scope: str, ours: dict, theirs: dict) -> None:
    missing = upstream.feature_differences(scope, ours, theirs, upstream.load_allowed_features())
    if missing:
        listing = "\n".join(f"  {m}" for m in missing)
        pytest.fail(
            f"{len(missing)} raw-feature difference(s) on {scope} not explained in "
            f"docs/compatibility.md (feature table):\n{listing}",
            pytrace=False,
        )


def test_this_machine(tmp_path: Path) -> None:
    labels, theirs = upstream.capture_upstream_request(tmp_path)
    assert labels == upstream.run_upstream_worker(tmp_path), "sent labels != logged labels"
    _check("host", upstream.run_our_features("/", tmp_path), theirs)


@pytest.mark.parametrize("tree", sorted(TREES))
def test_fixture_tree(tree: str, tmp_path: Path) -> None:
    root = TREES[tree]
    with upstream.prefix_root(root):
        labels, theirs = upstream.capture_upstream_request(tmp_path, prefixed=True)
        assert labels == upstream.run_upstream_worker(tmp_path, prefixed=True)
    _check(tree, upstream.run_our_features(f"{root}/", tmp_path), theirs)
