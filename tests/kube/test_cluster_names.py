"""The pure parts of tests/kube/cluster.py (no cluster needed)."""

from __future__ import annotations

import pytest

from tests.kube.cluster import normalized_reference


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("nfd:0.1.0", "docker.io/library/nfd:0.1.0"),
        ("nfd", "docker.io/library/nfd:latest"),
        ("docker.io/library/nfd-pause:1.0", "docker.io/library/nfd-pause:1.0"),
        ("example/nfd:1", "docker.io/example/nfd:1"),
        ("registry.example.com/nfd:1", "registry.example.com/nfd:1"),
        ("localhost/nfd", "localhost/nfd:latest"),
        ("registry:5000/nfd", "registry:5000/nfd:latest"),
    ],
)
def test_normalized_reference_is_what_the_cri_stores(name: str, stored: str) -> None:
    assert normalized_reference(name) == stored
