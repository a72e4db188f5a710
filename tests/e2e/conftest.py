"""Fixtures for end-to-end tests against a real kube-apiserver (see tests/kube/controlplane.py).

- `control_plane` (session): etcd + kube-apiserver, shared by every test in the run.
- `controller_manager` (session): the same object, with kube-controller-manager running only the
  DaemonSet controller.
- `namespace` (function): a fresh namespace name created for one test.

A missing binary or a control plane that does not come up fails the test (never skips): the
message says to run `make install` (hack/control-plane.sh build). When a test fails, the tails
of the component logs are attached to its report.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

# `tests.kube` is imported as a package from the repository root; make that work also when
# pytest is started as a script (which puts only this directory on sys.path).
_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from tests.kube.controlplane import (  # noqa: E402
    ControlPlane,
    ControlPlaneError,
    active_control_planes,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e needs the control plane: mark it `e2e` (see `make e2e`)."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.e2e)


def _start_or_fail() -> ControlPlane:
    try:
        return ControlPlane.start_new()
    except ControlPlaneError as err:
        failure = str(err)  # fail outside the except block, so the report is not chained
    pytest.fail(failure, pytrace=False)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver on loopback for the whole test session."""
    plane = _start_or_fail()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def controller_manager(control_plane: ControlPlane) -> ControlPlane:
    """The control plane with kube-controller-manager running only the DaemonSet controller."""
    try:
        control_plane.start_controller_manager(["daemonset"])
        return control_plane
    except ControlPlaneError as err:
        failure = str(err)
    pytest.fail(failure, pytrace=False)


@pytest.fixture
def namespace(control_plane: ControlPlane) -> str:
    """A new namespace for one test. It is not deleted: no namespace controller runs, so a
    deleted namespace would stay Terminating; unique names keep tests apart instead."""
    name = f"test-{secrets.token_hex(4)}"
    control_plane.kubectl("create", "namespace", name, check=True)
    return name


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the control-plane log tails to the report of a failing test."""
    report = yield
    if report.failed:
        for plane in active_control_planes():
            report.sections.append(("control-plane logs", plane.logs(lines=60)))
    return report
