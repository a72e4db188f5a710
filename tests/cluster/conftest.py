"""Fixtures for the end-to-end tests on a real one-node cluster (tests/kube/cluster.py).

- `cluster` (session): the node of `make cluster`: reused when one is running (and then left
  running), else brought up for this session and removed at its end. The nfd and pause images
  come from hack/image.sh (NFD_IMAGE_ARCHIVE etc. override it).
- `node_labels` (function): a recorder of every label change of the Node (a watch).

A cluster that does not come up fails the tests (never skips), with the component logs.
"""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from tests.cluster.nodewatch import NodeLabelWatch  # noqa: E402
from tests.kube.cluster import Cluster, ClusterError, Images, images_from_script  # noqa: E402
from tests.kube.controlplane import ControlPlaneError  # noqa: E402


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything here needs the real control plane and node: mark it `e2e`."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.e2e)
            # One node for the session: under pytest-xdist all of it runs in one worker.
            item.add_marker(pytest.mark.xdist_group("node"))


@pytest.fixture(scope="session")
def images() -> Images:
    """The nfd and pause images (hack/image.sh builds them, or reuses its cache)."""
    try:
        return images_from_script()
    except ClusterError as err:
        failure = str(err)
    pytest.fail(failure, pytrace=False)


@pytest.fixture(scope="session")
def cluster(images: Images) -> Iterator[Cluster]:
    node = Cluster.from_env()
    reused = node.running()
    try:
        node.up(images)
    except (ClusterError, ControlPlaneError) as err:
        failure = str(err)
    else:
        failure = ""
    if failure:
        pytest.fail(failure, pytrace=False)
    try:
        yield node
    finally:
        if not reused:
            node.down()


@pytest.fixture
def node_labels(cluster: Cluster) -> Iterator[NodeLabelWatch]:
    watch = NodeLabelWatch(cluster.kubeconfig, cluster.node)
    watch.start()
    try:
        yield watch
    finally:
        watch.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the component log tails to the report of a failing cluster test."""
    report: pytest.TestReport = yield
    if report.failed and "cluster" in getattr(item, "fixturenames", ()):
        report.sections.append(("cluster logs", Cluster.from_env().logs(lines=40)))
    return report
