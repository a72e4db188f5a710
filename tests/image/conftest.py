"""Fixtures for the image tests: the nfd and pause images built by hack/image.sh (cached
under ~/.cache/nfd/images, so only the first run after a change builds), their unpacked
rootfs, and a throwaway containerd with both imported.

Building needs root (mmdebstrap, chroot) as CI has; a build that fails fails the test with
the script's own message (never a skip). Tests that build or run images are marked `e2e`."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.image.containerd import Containerd, ContainerdError

REPO = Path(__file__).resolve().parents[2]
IMAGE_SCRIPT = REPO / "hack" / "image.sh"


def image_script(*args: str, timeout: float = 1200) -> str:
    """The last line `hack/image.sh ARGS` prints; fails the test with its stderr if it fails."""
    if os.geteuid() != 0:
        pytest.fail("building images needs root (mmdebstrap and chroot), as in CI")
    result = subprocess.run(
        [str(IMAGE_SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        pytest.fail(f"hack/image.sh {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return lines[-1]


@pytest.fixture(scope="session")
def image_archive() -> Path:
    return Path(image_script("build"))


@pytest.fixture(scope="session")
def image_name() -> str:
    return image_script("name")


@pytest.fixture(scope="session")
def image_rootfs(image_archive: Path) -> Path:
    return Path(image_script("rootfs"))


@pytest.fixture(scope="session")
def pause_archive() -> Path:
    return Path(image_script("pause"))


@pytest.fixture(scope="session")
def pause_name() -> str:
    return image_script("pause-name")


@pytest.fixture(scope="module")
def containerd(
    image_archive: Path, image_name: str, pause_archive: Path, pause_name: str
) -> Iterator[Containerd]:
    """Both images imported with `ctr images import`, as the cluster loads them."""
    try:
        ctd = Containerd()
    except ContainerdError as err:
        pytest.fail(str(err))
    try:
        for archive in (image_archive, pause_archive):
            ctd.ctr("images", "import", str(archive))
        yield ctd
    finally:
        ctd.stop()


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here not in item.path.parents:
            continue
        # hack/image.sh and containerd are shared with tests/cluster: the same xdist worker.
        item.add_marker(pytest.mark.xdist_group("node"))
        needs = set(getattr(item, "fixturenames", ())) & {"image_archive", "pause_archive"}
        if needs:
            item.add_marker(pytest.mark.e2e)
