"""Record every label change of one Node through a watch, to count transient removals."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LabelEvent:
    """One observed state of the Node's labels (monotonic time of arrival)."""

    at: float
    labels: Mapping[str, str]


@dataclass(eq=False)
class NodeLabelWatch:
    """A background watch on the Node `node`; `events` holds every labels state seen."""

    kubeconfig: Path
    node: str
    events: list[LabelEvent] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _started: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"watch-{self.node}", daemon=True)
        self._thread.start()
        if not self._started.wait(30):
            raise TimeoutError(f"the watch on node {self.node} did not start")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        from kubernetes import client, config, watch

        api = client.CoreV1Api(config.new_client_from_config(config_file=str(self.kubeconfig)))
        selector = f"metadata.name={self.node}"
        version = ""
        while not self._stop.is_set():
            if not version:
                listed = api.list_node(field_selector=selector)
                assert listed.metadata is not None
                version = str(listed.metadata.resource_version)
                for item in listed.items:
                    self._record(item)
                self._started.set()
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    api.list_node,
                    field_selector=selector,
                    resource_version=version,
                    timeout_seconds=5,
                ):
                    obj = event["object"]
                    version = obj.metadata.resource_version
                    self._record(obj)
                    if self._stop.is_set():
                        break
            except Exception as err:  # noqa: BLE001 - a 410 Gone or a dropped connection
                if getattr(err, "status", None) == 410:
                    version = ""
                time.sleep(0.2)
            finally:
                stream.stop()

    def _record(self, node: Any) -> None:
        labels = dict(node.metadata.labels or {})
        with self._lock:
            if not self.events or self.events[-1].labels != labels:
                self.events.append(LabelEvent(time.monotonic(), labels))

    def current(self) -> dict[str, str]:
        with self._lock:
            return dict(self.events[-1].labels) if self.events else {}

    def mark(self) -> int:
        """An index into `events`: removals are counted from here on."""
        with self._lock:
            return len(self.events)

    def removals(self, since: int, keys: Callable[[str], bool]) -> list[tuple[str, float]]:
        """(label, time) for each label matching `keys` that disappeared after event `since`
        (a transient removal if the label is back later)."""
        with self._lock:
            states = self.events[max(since - 1, 0) :]
        removed = []
        for before, after in zip(states, states[1:], strict=False):
            for key in before.labels:
                if keys(key) and key not in after.labels:
                    removed.append((key, after.at))
        return removed

    def wait_for(
        self,
        check: Callable[[Mapping[str, str]], bool],
        timeout: float,
        what: str,
        since: int = 0,
    ) -> float:
        """Wait until an event from index `since` on satisfies `check`; return the monotonic
        time that event arrived."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                matching = [e.at for e in self.events[since:] if check(e.labels)]
            if matching:
                return matching[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.05)
