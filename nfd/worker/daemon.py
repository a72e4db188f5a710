"""The nfd-worker run loop: discover, publish, then wait for a reason to look again.

Reasons to look again, cheapest first:

- a kernel uevent (device hotplug, driver bind, module load) rediscovers only
  the sources that event can change (``events.UEVENT_SOURCES``);
- a file change in features.d, source.d or custom.d rediscovers the local or
  custom source; a change of the worker config reloads it (a broken one is
  rejected and the old one stays in force) and then rediscovers everything;
- the ``core.sleepInterval`` timer rediscovers everything, a safety net for
  whatever no event reports (and the only trigger where events are
  unavailable).

Events are debounced: a burst gives one rediscovery. Labels are recomputed
from all features after every rediscovery, because custom rules may read any
feature. Results go to ``emit`` only when labels or features changed.

The loop is one thread blocked in ``select`` on the event file descriptors and
a wake-up pipe, so an idle worker costs nothing until an event or the timer.
"""

from __future__ import annotations

import logging
import os
import selectors
import time
from collections.abc import Callable
from typing import Any

from nfd.features import Features
from nfd.hostfs import HostFS
from nfd.sources import SourceContext, get_source, select_sources
from nfd.worker.config import ConfigError, WorkerConfig
from nfd.worker.discovery import DiscoveryResult, compute_labels
from nfd.worker.events import (
    ALL_SOURCES,
    Debouncer,
    FileWatcher,
    UeventWatcher,
    WatchTarget,
)

log = logging.getLogger(__name__)

# Upstream's container paths; used when a source's config does not name them.
DEFAULT_FEATURES_DIR = "/etc/kubernetes/node-feature-discovery/features.d/"
DEFAULT_HOOKS_DIR = "/etc/kubernetes/node-feature-discovery/source.d/"
DEFAULT_RULES_DIR = "/etc/kubernetes/node-feature-discovery/custom.d"

# Debouncer items besides source names.
CONFIG_CHANGED = "@config"


class IncrementalDiscovery:
    """Discovery that keeps each source's features, so one source can be redone alone."""

    def __init__(self, host: HostFS, node_name: str) -> None:
        self.host = host
        self.node_name = node_name
        self._per_source: dict[str, Features] = {}

    def run(self, config: WorkerConfig, refresh: set[str] | None = None) -> DiscoveryResult:
        """Rediscover the sources in ``refresh`` (all when None), reuse the rest.

        Sources run in the same order as a full discovery and each sees the
        features of the sources before it, so a partial pass gives the same
        result as a full one would.
        """
        names = select_sources(config.core.feature_sources, "featureSources")
        for stale in set(self._per_source) - set(names):
            del self._per_source[stale]
        warnings: list[str] = []
        durations: dict[str, float] = {}
        features = Features()
        for name in names:
            if refresh is None or name in refresh or name not in self._per_source:
                self._per_source[name] = self._discover_one(
                    name, config, features, warnings, durations
                )
            features.merge(self._per_source[name])
        labels = compute_labels(features, self.host, config, self.node_name, warnings)
        return DiscoveryResult(features, labels, warnings, durations)

    def _discover_one(
        self,
        name: str,
        config: WorkerConfig,
        so_far: Features,
        warnings: list[str],
        durations: dict[str, float],
    ) -> Features:
        source = get_source(name)
        ctx = SourceContext(self.host, config.source_config(name), self.node_name, so_far)
        start = time.perf_counter()
        try:
            return source.discover(ctx)
        except Exception as err:  # a broken source must not stop the others
            message = f"source {name}: discovery failed: {type(err).__name__}: {err}"
            log.warning(message)
            warnings.append(message)
            return Features()
        finally:
            durations[name] = time.perf_counter() - start


def watch_targets(config: WorkerConfig, config_path: str | None) -> list[WatchTarget]:
    """The files and directories whose changes the worker reacts to."""
    features = set(select_sources(config.core.feature_sources, "featureSources"))
    labels = set(select_sources(config.core.label_sources, "labelSources"))
    targets: list[WatchTarget] = []
    if "local" in features:
        local = config.source_config("local")
        targets.append(WatchTarget(str(local.get("featuresDir") or DEFAULT_FEATURES_DIR), "local"))
        if _is_true(local.get("hooksEnabled")):
            targets.append(WatchTarget(str(local.get("hooksDir") or DEFAULT_HOOKS_DIR), "local"))
    if "custom" in features or "custom" in labels:
        rules_dir = config.source_config("custom")
        path = rules_dir.get("rulesDir") if isinstance(rules_dir, dict) else None
        # custom.d reads first-level sub-directories as well.
        targets.append(WatchTarget(str(path or DEFAULT_RULES_DIR), "custom", depth=1))
    if config_path:
        targets.append(WatchTarget(config_path, CONFIG_CHANGED, is_file=True))
    return targets


def _is_true(value: object) -> bool:
    # YAML gives a bool; a string from --options or an env-built config may say "true".
    return value is True or str(value).strip().lower() == "true"


def _read_fingerprint(path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


class WorkerDaemon:
    """Discover, emit, and rediscover on events and on the timer until stopped."""

    def __init__(
        self,
        host: HostFS,
        node_name: str,
        config: WorkerConfig,
        emit: Callable[[DiscoveryResult], None],
        *,
        reload_config: Callable[[], WorkerConfig] | None = None,
        config_path: str | None = None,
        metrics: Any = None,
        uevents: bool = True,
        inotify: bool = True,
        quiet: float = 0.1,
        max_delay: float = 0.5,
    ) -> None:
        self.host = host
        self.node_name = node_name
        self.config = config
        self._emit = emit
        self._reload_config = reload_config
        self._config_path = config_path
        self._config_fingerprint = _read_fingerprint(config_path)
        self._metrics = metrics
        self._want_uevents = uevents
        self._want_inotify = inotify
        self._discovery = IncrementalDiscovery(host, node_name)
        self._debouncer = Debouncer(quiet, max_delay)
        self._triggers: set[str] = set()
        self._last: tuple[dict[str, str], Features] | None = None
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stopping = False
        self._uevents: UeventWatcher | None = None
        self._files: FileWatcher | None = None
        self.last_result: DiscoveryResult | None = None
        # For tests and the benchmark: how many passes of each kind ran.
        self.passes: dict[str, int] = {}

    # -- control ---------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish; safe from signal handlers and other threads."""
        self._stopping = True
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass

    @property
    def watching_uevents(self) -> bool:
        return self._uevents is not None

    @property
    def watching_files(self) -> bool:
        return self._files is not None

    # -- main loop -------------------------------------------------------------

    def run(self) -> None:
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        self._open_watchers()
        try:
            self._rediscover(None, "initial")
            next_tick = self._next_tick()
            while not self._stopping:
                deadlines = [d for d in (next_tick, self._debouncer.deadline()) if d is not None]
                timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
                for key, _mask in self._selector.select(timeout):
                    key.data()
                if self._stopping:
                    break
                now = time.monotonic()
                due = self._debouncer.take(now)
                if due:
                    if self._handle_due(due):
                        next_tick = self._next_tick()
                if next_tick is not None and time.monotonic() >= next_tick:
                    self._rediscover(None, "timer")
                    next_tick = self._next_tick()
        finally:
            self._close()

    def _next_tick(self) -> float | None:
        interval = self.config.core.sleep_interval
        return time.monotonic() + interval if interval > 0 else None

    def _handle_due(self, items: set[str]) -> bool:
        """Act on debounced events; True when the config (and so the timer) changed."""
        triggers = ",".join(sorted(self._triggers)) or "event"
        self._triggers.clear()
        reloaded = False
        if CONFIG_CHANGED in items:
            items.discard(CONFIG_CHANGED)
            reloaded = self._maybe_reload_config()
        if reloaded:
            self._rediscover(None, "config")
        elif ALL_SOURCES in items:
            self._rediscover(None, triggers)
        elif items:
            self._rediscover(items, triggers)
        return reloaded

    def _rediscover(self, refresh: set[str] | None, trigger: str) -> None:
        start = time.perf_counter()
        result = self._discovery.run(self.config, refresh)
        elapsed = time.perf_counter() - start
        self.passes[trigger] = self.passes.get(trigger, 0) + 1
        what = "all sources" if refresh is None else ",".join(sorted(refresh))
        log.debug("rediscovery (%s: %s) took %.3fs", trigger, what, elapsed)
        interval = self.config.core.sleep_interval
        if refresh is None and interval > 0 and elapsed > interval / 2:
            log.warning(
                "feature discovery took %.1fs, more than half of core.sleepInterval (%.0fs)",
                elapsed,
                interval,
            )
        if self._metrics is not None:
            self._metrics.observe_discovery(self.node_name, elapsed, trigger)
            self._metrics.label_count(self.node_name, len(result.labels))
        self.last_result = result
        current = (result.labels, result.features)
        same = self._last is not None and self._last == current
        # Where the local labels came from is not a feature but is sent too: a label
        # that moved to another features.d file is an update.
        if same and self._last is not None and self._last[1].origins == result.features.origins:
            return
        self._last = (dict(result.labels), result.features.copy())
        if self._metrics is not None and not same:
            self._metrics.label_set_changed()
        self._emit(result)

    # -- config ----------------------------------------------------------------

    def _maybe_reload_config(self) -> bool:
        """Reload the config if its file changed; keep the old one if the new is broken."""
        fingerprint = _read_fingerprint(self._config_path)
        if fingerprint == self._config_fingerprint or self._reload_config is None:
            return False
        self._config_fingerprint = fingerprint
        try:
            config = self._reload_config()
        except ConfigError as err:
            log.error("config reload rejected, keeping the previous config: %s", err)
            if self._metrics is not None:
                self._metrics.config_reload_failed()
            return False
        log.info("config %s reloaded", self._config_path)
        for key, attr in (
            ("noPublish", "no_publish"),
            ("ownerRefs", "owner_refs"),
            ("noOwnerRefs", "no_owner_refs"),
            ("noPublishFeatures", "no_publish_features"),
        ):
            if getattr(config.core, attr) != getattr(self.config.core, attr):
                log.warning("core.%s changed in the config: takes effect after a restart", key)
        self.config = config
        if self._files is not None:
            self._files.set_targets(watch_targets(config, self._config_path))
        return True

    # -- event sources ---------------------------------------------------------

    def _open_watchers(self) -> None:
        if self._want_uevents:
            try:
                self._uevents = UeventWatcher.open()
                self._selector.register(
                    self._uevents.fileno(), selectors.EVENT_READ, self._on_uevents
                )
            except Exception as err:  # no netlink, no libudev, or not permitted
                log.warning(
                    "kernel uevents unavailable (%s: %s); device changes are seen only on "
                    "the core.sleepInterval timer",
                    type(err).__name__,
                    err,
                )
                self._uevents = None
        if self._want_inotify:
            try:
                self._files = FileWatcher()
                self._files.set_targets(watch_targets(self.config, self._config_path))
                self._selector.register(self._files.fileno(), selectors.EVENT_READ, self._on_files)
            except Exception as err:
                log.warning(
                    "file watching (inotify) unavailable (%s: %s); feature file and config "
                    "changes are seen only on the core.sleepInterval timer",
                    type(err).__name__,
                    err,
                )
                self._files = None

    def _on_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _on_uevents(self) -> None:
        assert self._uevents is not None
        try:
            affected = self._uevents.read()
        except Exception as err:
            log.warning("kernel uevents stopped (%s); falling back to the timer", err)
            self._selector.unregister(self._uevents.fileno())
            self._uevents.close()
            self._uevents = None
            return
        if affected:
            self._triggers.add("uevent")
            self._debouncer.add(affected, time.monotonic())

    def _on_files(self) -> None:
        assert self._files is not None
        try:
            tags = self._files.read()
        except Exception as err:
            log.warning("file watching stopped (%s); falling back to the timer", err)
            self._selector.unregister(self._files.fileno())
            self._files.close()
            self._files = None
            return
        if tags:
            self._triggers.add("config" if tags == {CONFIG_CHANGED} else "file")
            self._debouncer.add(tags, time.monotonic())

    def _close(self) -> None:
        for watcher in (self._uevents, self._files):
            if watcher is not None:
                watcher.close()
        self._uevents = self._files = None
        self._selector.close()
        wake_r, wake_w = self._wake_r, self._wake_w
        # Marked closed first, so a late stop() cannot write to a reused fd number.
        self._wake_r = self._wake_w = -1
        for fd in (wake_r, wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
