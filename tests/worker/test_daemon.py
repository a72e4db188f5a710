"""The run loop in-process: partial rediscovery, real uevents, timer fallback, config reload."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import nfd.worker.daemon as daemon_module
from nfd.features import Features
from nfd.hostfs import HostFS
from nfd.worker.config import ConfigError, WorkerConfig, load_config
from nfd.worker.daemon import IncrementalDiscovery, WorkerDaemon, watch_targets
from nfd.worker.discovery import DiscoveryResult, run_discovery
from tests.fixture_paths import PROCFS
from tests.worker.harness import add_veth, delete_link

PROCFS_TREE = str(PROCFS)


def config_with(
    feature_sources: list[str], label_sources: list[str], sleep: float = 0.0
) -> WorkerConfig:
    config = WorkerConfig()
    config.core.feature_sources = feature_sources
    config.core.label_sources = label_sources
    config.core.sleep_interval = sleep
    return config


class Collected:
    """What a daemon emitted, for waiting on."""

    def __init__(self) -> None:
        self.results: queue.Queue[DiscoveryResult] = queue.Queue()
        self.all: list[DiscoveryResult] = []

    def __call__(self, result: DiscoveryResult) -> None:
        self.results.put(result)

    def wait_for(
        self, predicate: Callable[[DiscoveryResult], bool], timeout: float, what: str
    ) -> DiscoveryResult:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no emitted result with {what} within {timeout}s")
            try:
                result = self.results.get(timeout=remaining)
            except queue.Empty:
                continue
            self.all.append(result)
            if predicate(result):
                return result


@contextmanager
def running_daemon(daemon: WorkerDaemon) -> Iterator[WorkerDaemon]:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            daemon.run()
        except BaseException as err:  # surfaced in the test below
            errors.append(err)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield daemon
    finally:
        daemon.stop()
        thread.join(10)
        assert not thread.is_alive(), "the daemon did not stop within 10 s"
        if errors:
            raise errors[0]


def virtual_names(features: Features) -> set[str]:
    return {i.get("name", "") for i in features.instances.get("network.virtual", [])}


# -- incremental discovery -----------------------------------------------------------


def test_partial_rediscovery_equals_a_full_one() -> None:
    host = HostFS(PROCFS_TREE)
    config = config_with(["all"], ["all"])
    incremental = IncrementalDiscovery(host, "node-a")
    first = incremental.run(config)
    full = run_discovery(host, config, "node-a")
    assert first.features == full.features
    assert first.labels == full.labels
    again = incremental.run(config, {"network", "pci", "kernel"})
    assert again.features == full.features
    assert again.labels == full.labels


def test_partial_rediscovery_runs_only_the_named_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_get_source = daemon_module.get_source

    def counting_get_source(name: str):  # type: ignore[no-untyped-def]
        calls.append(name)
        return real_get_source(name)

    monkeypatch.setattr(daemon_module, "get_source", counting_get_source)
    incremental = IncrementalDiscovery(HostFS(PROCFS_TREE), "node-a")
    config = config_with(["network", "system", "kernel"], ["all"])
    incremental.run(config)
    assert sorted(calls) == ["kernel", "network", "system"]
    calls.clear()
    incremental.run(config, {"network", "usb"})  # usb is not enabled: not run
    assert calls == ["network"]
    # A source newly enabled by a config change is discovered on the next pass.
    calls.clear()
    incremental.run(config_with(["network", "system", "kernel", "memory"], ["all"]), {"network"})
    assert sorted(calls) == ["memory", "network"]


def test_a_failing_source_costs_only_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    real_get_source = daemon_module.get_source

    class Broken:
        name = "network"

        def discover(self, ctx):  # type: ignore[no-untyped-def]
            raise OSError("sysfs went away")

    monkeypatch.setattr(
        daemon_module,
        "get_source",
        lambda name: Broken() if name == "network" else real_get_source(name),
    )
    result = IncrementalDiscovery(HostFS(PROCFS_TREE), "n").run(
        config_with(["network", "system"], ["system"])
    )
    assert any("source network: discovery failed" in w for w in result.warnings)
    assert result.features.attributes["system.name"] == {"nodename": "n"}


# -- what is watched -------------------------------------------------------------------


def test_watch_targets_follow_the_config(tmp_path: Path) -> None:
    config = config_with(["local", "network"], ["custom", "local"])
    config.source_config("local")["featuresDir"] = str(tmp_path / "features.d")
    config.source_config("local")["hooksEnabled"] = False
    config.source_config("custom")["rulesDir"] = str(tmp_path / "custom.d")
    targets = {(t.path, t.tag, t.is_file, t.depth) for t in watch_targets(config, "/c/w.conf")}
    assert targets == {
        (str(tmp_path / "features.d"), "local", False, 0),
        (str(tmp_path / "custom.d"), "custom", False, 1),
        ("/c/w.conf", "@config", True, 0),
    }
    # Hooks only when enabled; nothing of local or custom when they are off.
    config.source_config("local")["hooksEnabled"] = True
    config.source_config("local")["hooksDir"] = str(tmp_path / "source.d")
    assert (str(tmp_path / "source.d"), "local") in {
        (t.path, t.tag) for t in watch_targets(config, None)
    }
    assert watch_targets(config_with(["network"], ["network"]), None) == []


# -- the loop with real events ---------------------------------------------------------


def test_a_veth_pair_appears_and_goes_through_uevents(veth_pair: tuple[str, str]) -> None:
    name, peer = veth_pair
    collected = Collected()
    # No timer: only the uevent can make the worker look again.
    daemon = WorkerDaemon(
        HostFS("/"), "node-a", config_with(["network"], ["network"]), collected, inotify=False
    )
    with running_daemon(daemon):
        first = collected.wait_for(lambda r: True, 10, "the initial discovery")
        assert name not in virtual_names(first.features)
        assert daemon.watching_uevents
        add_veth(name, peer)
        seen = collected.wait_for(
            lambda r: {name, peer} <= virtual_names(r.features), 5, f"{name} and {peer}"
        )
        delete_link(name)
        collected.wait_for(
            lambda r: not ({name, peer} & virtual_names(r.features)), 5, f"{name} gone"
        )
    # Adding and deleting the pair sent a dozen uevents (net + queues); debounced,
    # they gave a pass or two each.
    assert 2 <= daemon.passes.get("uevent", 0) <= 4
    assert "timer" not in daemon.passes
    attrs = next(i for i in seen.features.instances["network.virtual"] if i["name"] == name)
    assert attrs.get("mtu") == "1500"


def test_without_events_the_timer_still_finds_changes(
    veth_pair: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    name, peer = veth_pair
    collected = Collected()
    daemon = WorkerDaemon(
        HostFS("/"),
        "node-a",
        config_with(["network"], ["network"], sleep=1.0),
        collected,
        uevents=False,
        inotify=False,
    )
    with running_daemon(daemon):
        collected.wait_for(lambda r: True, 10, "the initial discovery")
        add_veth(name, peer)
        collected.wait_for(lambda r: name in virtual_names(r.features), 5, name)
    assert daemon.passes.get("timer", 0) >= 1
    assert "uevent" not in daemon.passes


def test_unavailable_event_sources_are_logged_once_and_the_timer_works(
    monkeypatch: pytest.MonkeyPatch, veth_pair: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    def no_netlink() -> None:
        raise PermissionError(1, "Operation not permitted")

    def no_inotify() -> None:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(daemon_module.UeventWatcher, "open", staticmethod(no_netlink))
    monkeypatch.setattr(daemon_module, "FileWatcher", no_inotify)
    name, peer = veth_pair
    collected = Collected()
    daemon = WorkerDaemon(
        HostFS("/"), "node-a", config_with(["network"], ["network"], sleep=1.0), collected
    )
    with caplog.at_level(logging.WARNING), running_daemon(daemon):
        collected.wait_for(lambda r: True, 10, "the initial discovery")
        add_veth(name, peer)
        collected.wait_for(lambda r: name in virtual_names(r.features), 5, name)
        time.sleep(1.2)  # another tick or two: no repeated warnings
    messages = [r.getMessage() for r in caplog.records]
    assert sum("kernel uevents unavailable" in m for m in messages) == 1
    assert sum("file watching (inotify) unavailable" in m for m in messages) == 1
    assert not daemon.watching_uevents and not daemon.watching_files


def test_config_reload_applies_good_and_rejects_broken(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conf = tmp_path / "nfd-worker.conf"
    conf.write_text("core:\n  labelSources: [system]\n  featureSources: [system]\n")

    def reload() -> WorkerConfig:
        return load_config(str(conf), must_exist=True)

    collected = Collected()
    # The real host: it has an os-release, so the system source gives labels.
    daemon = WorkerDaemon(
        HostFS("/"),
        "node-a",
        reload(),
        collected,
        reload_config=reload,
        config_path=str(conf),
        uevents=False,
    )
    id_label = "feature.node.kubernetes.io/system-os_release.ID"
    with caplog.at_level(logging.INFO), running_daemon(daemon):
        first = collected.wait_for(lambda r: True, 10, "the initial discovery")
        assert len(first.labels) > 1
        conf.write_text(
            "core:\n  labelSources: [system]\n  featureSources: [system]\n"
            "  labelWhiteList: '^system-os_release.ID$'\n"
        )
        only_id = collected.wait_for(lambda r: list(r.labels) == [id_label], 3, "whitelist")
        assert only_id.labels
        conf.write_text("core:\n  labelWhiteList: '(('\n")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and "config reload rejected" not in caplog.text:
            time.sleep(0.05)
        assert "config reload rejected, keeping the previous config" in caplog.text
        assert str(conf) in caplog.text and "labelWhiteList" in caplog.text
        assert daemon.config.core.label_whitelist == "^system-os_release.ID$"
        # Back to a good file without the whitelist: every system label returns.
        conf.write_text("core:\n  labelSources: [system]\n  featureSources: [system]\n")
        collected.wait_for(lambda r: len(r.labels) > 1, 3, "all system labels again")
    assert daemon.passes.get("config", 0) == 2


def test_identical_results_are_not_emitted_again() -> None:
    collected = Collected()
    daemon = WorkerDaemon(
        HostFS(PROCFS_TREE),
        "node-a",
        config_with(["system"], ["system"], sleep=1.0),
        collected,
        uevents=False,
        inotify=False,
    )
    with running_daemon(daemon):
        collected.wait_for(lambda r: True, 10, "the initial discovery")
        time.sleep(2.5)
    assert daemon.passes.get("timer", 0) >= 2
    assert collected.results.empty()


def test_stop_is_prompt_with_a_long_timer() -> None:
    collected = Collected()
    daemon = WorkerDaemon(
        HostFS(PROCFS_TREE), "node-a", config_with(["system"], ["system"], 3600), collected
    )
    with running_daemon(daemon):
        collected.wait_for(lambda r: True, 10, "the initial discovery")
        start = time.monotonic()
    assert time.monotonic() - start < 2


def test_reload_errors_are_config_errors() -> None:
    # The daemon keeps the old config only for ConfigError; the loaders raise exactly that.
    with pytest.raises(ConfigError):
        load_config("/nonexistent/nfd-worker.conf", must_exist=True)
