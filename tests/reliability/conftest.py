"""Fixtures for the reliability suite: an own control plane (faults restart it), the
results recorder, and the `e2e` marker for everything here that needs Kubernetes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from tests.kube.controlplane import (  # noqa: E402
    ControlPlane,
    ControlPlaneError,
)
from tests.reliability.recording import pytest_runtest_makereport, record  # noqa: E402,F401

E2E_MODULES = {
    "test_faults",
    "test_workers",
    "test_slow_api",
    "test_hostile_master",
    "test_rules_restart",
    "test_ha",
}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here not in item.path.parents:
            continue
        # One control plane (its tests restart it) and one results file: one xdist worker.
        item.add_marker(pytest.mark.xdist_group("reliability"))
        if item.path.stem in E2E_MODULES:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver for the reliability suite alone: its tests restart them."""
    try:
        cp = ControlPlane.start_new()
    except ControlPlaneError as err:
        failure = str(err)
    else:
        try:
            yield cp
        finally:
            cp.stop()
        return
    pytest.fail(failure, pytrace=False)
