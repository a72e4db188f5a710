"""The event sources on their own: uevent mapping, inotify watches, debouncing."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest

from nfd.filewatch import (
    IN_CREATE,
    IN_DELETE,
    IN_ISDIR,
    IN_MODIFY,
    FileWatcher,
    WatchTarget,
    parse_inotify_events,
    tags_for_event,
)
from nfd.worker.events import ALL_SOURCES, Debouncer, UeventWatcher, sources_for_uevent
from tests.worker.harness import add_veth, delete_link, write_atomically

# -- uevent mapping ---------------------------------------------------------------


def test_uevent_mapping_per_subsystem() -> None:
    assert sources_for_uevent("add", "net", "eth7") == {"network"}
    assert sources_for_uevent("remove", "block", "sdb") == {"storage"}
    assert sources_for_uevent("bind", "pci", "0000:01:00.0") == {"pci", "gpu", "iommu", "kernel"}
    assert sources_for_uevent("unbind", "usb", "1-1") == {"usb", "kernel"}
    assert sources_for_uevent("change", "drm", "card0") == {"gpu"}


def test_uevent_module_loads() -> None:
    assert sources_for_uevent("add", "module", "veth") == {"kernel"}
    assert sources_for_uevent("add", "module", "nvidia") == {"kernel", "gpu"}
    assert sources_for_uevent("remove", "module", "nvidia_uvm") == {"kernel", "gpu"}


def test_uevent_ignored() -> None:
    # Per-queue events come with every NIC; they change no feature.
    assert sources_for_uevent("add", "queues", "rx-0") == set()
    assert sources_for_uevent("online", "cpu", "cpu1") == set()
    assert sources_for_uevent(None, "net", "eth0") == set()
    assert sources_for_uevent("add", None, "x") == set()


def test_uevent_watcher_sees_a_veth_pair(veth_pair: tuple[str, str]) -> None:
    name, peer = veth_pair
    watcher = UeventWatcher.open()
    try:
        add_veth(name, peer)
        delete_link(name)
        affected: set[str] = set()
        deadline = time.monotonic() + 5
        while "network" not in affected and time.monotonic() < deadline:
            time.sleep(0.05)
            affected |= watcher.read()
        assert "network" in affected
        assert ALL_SOURCES not in affected
    finally:
        watcher.close()


# -- inotify parsing and mapping ---------------------------------------------------


def _raw_event(wd: int, mask: int, name: str) -> bytes:
    encoded = name.encode()
    padded = encoded + b"\0" * (16 - len(encoded) % 16) if encoded else b""
    return struct.pack("iIII", wd, mask, 0, len(padded)) + padded


def test_parse_inotify_events() -> None:
    buffer = (
        _raw_event(1, IN_CREATE, "gpu-ready")
        + _raw_event(2, IN_DELETE, "")
        + _raw_event(1, IN_MODIFY, "a-very-long-file-name-more-than-sixteen")
    )
    events = parse_inotify_events(buffer)
    assert [(e.wd, e.mask, e.name) for e in events] == [
        (1, IN_CREATE, "gpu-ready"),
        (2, IN_DELETE, ""),
        (1, IN_MODIFY, "a-very-long-file-name-more-than-sixteen"),
    ]


def test_tags_for_event() -> None:
    targets = [
        WatchTarget("/etc/nfd/features.d", "local"),
        WatchTarget("/etc/nfd/custom.d", "custom", depth=1),
        WatchTarget("/etc/nfd/nfd-worker.conf", "@config", is_file=True),
    ]
    assert tags_for_event(targets, "/etc/nfd/features.d", "x", IN_MODIFY) == {"local"}
    assert tags_for_event(targets, "/etc/nfd/custom.d/team-a", "r.yaml", IN_MODIFY) == {"custom"}
    assert tags_for_event(targets, "/etc/nfd", "nfd-worker.conf", IN_MODIFY) == {"@config"}
    # Another file next to the config is no reason to reload it.
    assert tags_for_event(targets, "/etc/nfd", "other.conf", IN_MODIFY) == set()
    # A ConfigMap volume swaps its ..data link.
    assert tags_for_event(targets, "/etc/nfd", "..data", IN_CREATE) == {"@config"}
    # A missing directory's parent: the directory (or a parent of it) appears.
    assert tags_for_event(targets, "/etc/nfd", "features.d", IN_CREATE | IN_ISDIR) == {"local"}
    assert tags_for_event(targets, "/etc", "nfd", IN_CREATE | IN_ISDIR) == {
        "local",
        "custom",
        "@config",
    }
    assert tags_for_event(targets, "/etc", "passwd", IN_CREATE) == set()


# -- inotify for real ---------------------------------------------------------------


def _wait_tags(watcher: FileWatcher, timeout: float = 3.0) -> set[str]:
    deadline = time.monotonic() + timeout
    tags: set[str] = set()
    while time.monotonic() < deadline:
        tags |= watcher.read()
        if tags:
            # Collect the rest of the burst.
            time.sleep(0.05)
            return tags | watcher.read()
        time.sleep(0.02)
    return tags


def test_file_watcher_feature_dir(tmp_path: Path) -> None:
    features = tmp_path / "features.d"
    features.mkdir()
    watcher = FileWatcher()
    try:
        watcher.set_targets([WatchTarget(str(features), "local")])
        (features / "a").write_text("x=1\n")
        assert _wait_tags(watcher) == {"local"}
        with open(features / "a", "a") as f:
            f.write("y=2\n")
        assert _wait_tags(watcher) == {"local"}
        write_atomically(features / "a", "x=3\n")
        assert _wait_tags(watcher) == {"local"}
        os.chmod(features / "a", 0o600)
        assert _wait_tags(watcher) == {"local"}
        (features / "a").unlink()
        assert _wait_tags(watcher) == {"local"}
        # Reading the directory is no change.
        list(features.iterdir())
        assert _wait_tags(watcher, 0.3) == set()
    finally:
        watcher.close()


def test_file_watcher_waits_for_a_missing_directory(tmp_path: Path) -> None:
    features = tmp_path / "etc" / "nfd" / "features.d"
    watcher = FileWatcher()
    try:
        watcher.set_targets([WatchTarget(str(features), "local")])
        assert list(watcher.watched) == [str(tmp_path)]
        (tmp_path / "unrelated").write_text("")
        assert _wait_tags(watcher, 0.3) == set()
        features.mkdir(parents=True)
        assert _wait_tags(watcher) == {"local"}
        # Now the directory itself is watched, and files in it are seen.
        assert str(features) in watcher.watched
        (features / "b").write_text("b\n")
        assert _wait_tags(watcher) == {"local"}
        # Removing it falls back to watching the parent, and recreating it is seen.
        (features / "b").unlink()
        features.rmdir()
        assert _wait_tags(watcher) == {"local"}
        assert str(features) not in watcher.watched
        features.mkdir()
        (features / "c").write_text("c\n")
        assert "local" in _wait_tags(watcher)
    finally:
        watcher.close()


def test_file_watcher_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "nfd-worker.conf"
    conf.write_text("core: {}\n")
    watcher = FileWatcher()
    try:
        watcher.set_targets([WatchTarget(str(conf), "@config", is_file=True)])
        (tmp_path / "neighbour.txt").write_text("x")
        assert _wait_tags(watcher, 0.3) == set()
        write_atomically(conf, "core: {sleepInterval: 5s}\n")
        assert _wait_tags(watcher) == {"@config"}
        conf.write_text("core: {sleepInterval: 7s}\n")
        assert _wait_tags(watcher) == {"@config"}
        conf.unlink()
        assert _wait_tags(watcher) == {"@config"}
    finally:
        watcher.close()


def test_file_watcher_configmap_symlink_swap(tmp_path: Path) -> None:
    """A Kubernetes ConfigMap volume: nfd-worker.conf -> ..data/nfd-worker.conf."""
    mount = tmp_path / "config"
    mount.mkdir()
    first = mount / "..2026_01_01"
    first.mkdir()
    (first / "nfd-worker.conf").write_text("core: {}\n")
    (mount / "..data").symlink_to(first.name)
    (mount / "nfd-worker.conf").symlink_to("..data/nfd-worker.conf")
    watcher = FileWatcher()
    try:
        watcher.set_targets([WatchTarget(str(mount / "nfd-worker.conf"), "@config", is_file=True)])
        second = mount / "..2026_01_02"
        second.mkdir()
        (second / "nfd-worker.conf").write_text("core: {sleepInterval: 9s}\n")
        (mount / "..data_tmp").symlink_to(second.name)
        os.replace(mount / "..data_tmp", mount / "..data")
        assert _wait_tags(watcher) == {"@config"}
    finally:
        watcher.close()


def test_file_watcher_custom_d_subdirectories(tmp_path: Path) -> None:
    rules = tmp_path / "custom.d"
    rules.mkdir()
    watcher = FileWatcher()
    try:
        watcher.set_targets([WatchTarget(str(rules), "custom", depth=1)])
        (rules / "team-a").mkdir()
        assert _wait_tags(watcher) == {"custom"}
        (rules / "team-a" / "rules.yaml").write_text("[]\n")
        assert _wait_tags(watcher) == {"custom"}
    finally:
        watcher.close()


def test_file_watcher_same_directory_twice(tmp_path: Path) -> None:
    """featuresDir and the config in one directory share one watch."""
    conf = tmp_path / "nfd-worker.conf"
    watcher = FileWatcher()
    try:
        watcher.set_targets(
            [WatchTarget(str(tmp_path), "local"), WatchTarget(str(conf), "@config", is_file=True)]
        )
        assert list(watcher.watched) == [str(tmp_path)]
        conf.write_text("core: {}\n")
        assert _wait_tags(watcher) == {"local", "@config"}
        watcher.set_targets([WatchTarget(str(conf), "@config", is_file=True)])
        (tmp_path / "feature").write_text("x\n")
        assert _wait_tags(watcher, 0.3) == set()
    finally:
        watcher.close()


# -- debouncing ----------------------------------------------------------------------


def test_debouncer_coalesces_a_burst() -> None:
    debouncer = Debouncer(quiet=0.1, max_delay=0.5)
    assert debouncer.deadline() is None
    assert debouncer.take(100.0) == set()
    debouncer.add({"network"}, 100.0)
    debouncer.add({"network", "kernel"}, 100.05)
    assert debouncer.deadline() == pytest.approx(100.15)
    assert debouncer.take(100.1) == set()
    assert debouncer.take(100.16) == {"network", "kernel"}
    assert debouncer.deadline() is None
    assert debouncer.take(101.0) == set()


def test_debouncer_bounds_the_delay_of_a_steady_stream() -> None:
    debouncer = Debouncer(quiet=0.1, max_delay=0.5)
    now = 10.0
    for _ in range(20):
        debouncer.add({"usb"}, now)
        now += 0.05
    assert debouncer.deadline() == pytest.approx(10.5)
    assert debouncer.take(10.51) == {"usb"}


def test_debouncer_ignores_empty_adds() -> None:
    debouncer = Debouncer()
    debouncer.add(set(), 1.0)
    assert debouncer.deadline() is None
