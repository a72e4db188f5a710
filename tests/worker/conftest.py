"""Fixtures for the worker tests: a temporary veth pair, always removed."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.worker.harness import delete_link, veth_names


@pytest.fixture
def veth_pair() -> Iterator[tuple[str, str]]:
    """Names for a veth pair the test creates; deleted afterwards whatever happens.

    The test creates the pair itself (with ``add_veth``), because creating it is
    the event under test.
    """
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("the veth tests need root and iproute2's `ip` (the suite runs as root)")
    name, peer = veth_names()
    try:
        yield name, peer
    finally:
        delete_link(name)
        delete_link(peer)
