"""Run a real nfd-worker process and watch what it prints.

Used by the worker tests, the e2e test and bench/bench_events.py. The worker
runs in ``--no-publish`` mode (unless told otherwise) and prints one JSON object
of labels per line whenever its label set changes; a reader thread stamps each
line with ``time.monotonic()`` on arrival, so a test can measure how long the
worker took to react to something it did.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

LabelSet = dict[str, str]


@dataclass(frozen=True)
class Line:
    at: float  # time.monotonic() when the line arrived
    labels: LabelSet


class WorkerProcess:
    """``nfd-worker`` as a child process with its stdout parsed line by line."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        child_env = dict(os.environ)
        child_env.setdefault("NODE_NAME", "nfd-test-node")
        child_env["PYTHONUNBUFFERED"] = "1"
        if env:
            child_env.update(env)
        command = [sys.executable, "-c", "from nfd.cli.worker import console_main; console_main()"]
        self.proc = subprocess.Popen(
            command + self.args,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            cwd=REPO_ROOT,
            env=child_env,
        )
        self.lines: list[Line] = []
        # wait_for looks only at lines after the one the previous wait_for returned.
        self._cursor = 0
        self.bad_lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            now = time.monotonic()
            with self._cond:
                try:
                    labels = json.loads(raw)
                except ValueError:
                    self.bad_lines.append(raw)
                else:
                    self.lines.append(Line(now, labels))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def latest(self) -> LabelSet | None:
        with self._cond:
            return self.lines[-1].labels if self.lines else None

    def wait_for(
        self,
        predicate: Callable[[LabelSet], bool],
        timeout: float = 10.0,
        after: int | None = None,
        what: str = "",
    ) -> Line:
        """The first line whose labels satisfy ``predicate``.

        The search starts at index ``after``, by default just after the line the
        previous ``wait_for`` returned, so a sequence of waits follows the
        sequence of changes.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            index = self._cursor if after is None else after
            while True:
                while index < len(self.lines):
                    line = self.lines[index]
                    index += 1
                    if predicate(line.labels):
                        self._cursor = index
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and index >= len(self.lines)):
                    break
                self._cond.wait(min(remaining, 0.5))
        raise AssertionError(
            f"nfd-worker did not print {what or 'the expected labels'} within {timeout}s; "
            f"exit code {self.proc.poll()}; last labels {self.latest}\n"
            f"stderr:\n{self.stderr()[-4000:]}"
        )

    def wait_first(self, timeout: float = 30.0) -> Line:
        return self.wait_for(lambda _labels: True, timeout, what="its first label set")

    def count(self) -> int:
        with self._cond:
            return len(self.lines)

    def stderr(self) -> str:
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; return the exit code (killed if it does not exit)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"nfd-worker ignored SIGTERM for {timeout}s\n{self.stderr()[-4000:]}"
                ) from None
        self._reader.join(5)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        self._stderr.close()


@contextmanager
def running_worker(
    args: Sequence[str], env: dict[str, str] | None = None
) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(args, env)
    try:
        yield worker
    finally:
        worker.close()


def write_atomically(path: Path, text: str) -> None:
    """Write a dot-file and rename it over ``path``, as the NFD docs advise."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(3)}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def veth_names() -> tuple[str, str]:
    """A fresh, unused pair of interface names (at most 15 characters)."""
    tag = secrets.token_hex(3)
    return f"nfdt{tag}a", f"nfdt{tag}b"


def add_veth(name: str, peer: str) -> None:
    subprocess.run(
        ["ip", "link", "add", name, "type", "veth", "peer", "name", peer],
        check=True,
        capture_output=True,
        text=True,
    )


def delete_link(name: str) -> None:
    """Delete an interface (its veth peer goes with it); no error if it is gone."""
    subprocess.run(["ip", "link", "del", name], check=False, capture_output=True)


class NodeLabelWatcher:
    """Watch one Node object and stamp every label set seen with ``time.monotonic()``.

    A Kubernetes watch (not polling) so the time a label lands on the Node is
    known to within the apiserver's notification delay.
    """

    def __init__(self, core_api: Any, node: str) -> None:
        self._core = core_api
        self.node = node
        self.seen: list[tuple[float, dict[str, str]]] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from kubernetes import watch  # test-only dependency

        while not self._stop.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self._core.list_node,
                    field_selector=f"metadata.name={self.node}",
                    timeout_seconds=30,
                ):
                    now = time.monotonic()
                    labels = dict(event["object"].metadata.labels or {})
                    with self._cond:
                        self.seen.append((now, labels))
                        self._cond.notify_all()
                    if self._stop.is_set():
                        break
            except Exception:  # apiserver restarts or the test ends: watch again
                time.sleep(0.2)
            finally:
                stream.stop()

    def wait_for(
        self,
        predicate: Callable[[dict[str, str]], bool],
        timeout: float,
        what: str = "",
        since: float = 0.0,
    ) -> float:
        """The time of the first label set seen at or after ``since`` that satisfies predicate."""
        deadline = time.monotonic() + timeout
        index = 0
        with self._cond:
            while True:
                while index < len(self.seen):
                    at, labels = self.seen[index]
                    index += 1
                    if at >= since and predicate(labels):
                        return at
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    last = self.seen[-1][1] if self.seen else None
                    raise AssertionError(
                        f"node {self.node}: {what or 'expected labels'} not seen within "
                        f"{timeout}s; last labels {last}"
                    )
                self._cond.wait(min(remaining, 0.5))

    def stop(self) -> None:
        self._stop.set()
