"""Results of the reliability and fuzz tests, kept in a JSON file for the report.

A test asks for the ``record`` fixture, fills in what it measured (runs, survived,
convergence times, flaps, notes) and the fixture stores the entry with the test's
outcome as soon as the test ends. Entries are merged by test id into the results file,
so running a single test updates its row and keeps the others.

The file is ``tests/reliability/results/results.json`` unless NFD_RELIABILITY_RESULTS
names another one. Both conftests (tests/reliability, tests/fuzz) import the fixture
and the report hook from here.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import time
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_RESULTS = REPO / "tests" / "reliability" / "results" / "results.json"


def results_path() -> Path:
    return Path(os.environ.get("NFD_RELIABILITY_RESULTS") or DEFAULT_RESULTS)


@dataclass
class Record:
    """One row of the report: a fault or an input class, and what happened to it."""

    id: str
    category: str = ""  # fault | hostile | fuzz
    title: str = ""
    runs: int = 1
    survived: int | None = None  # runs in which everything stayed up and correct
    bound_s: float | None = None  # the stated bound the test asserts
    convergence_s: list[float] = field(default_factory=list)
    flaps: int | None = None  # transient removals of labels that had to stay
    observations: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    outcome: str = "unknown"  # passed | failed | skipped (set by the fixture)
    duration_s: float = 0.0
    at: str = ""

    def measure(self, name: str, value: Any) -> None:
        self.observations[name] = value


def load_results(path: Path | None = None) -> dict[str, dict[str, Any]]:
    path = path or results_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return {e["id"]: e for e in data.get("results", [])}


def save_record(rec: Record, path: Path | None = None) -> None:
    """Merge one record into the results file (under a lock: xdist or parallel runs)."""
    path = path or results_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = load_results(path)
        entries[rec.id] = asdict(rec)
        doc = {
            "machine": f"{os.cpu_count()} CPUs, {platform.python_implementation()} "
            f"{platform.python_version()}, {platform.system()} {platform.release()}",
            "results": sorted(entries.values(), key=lambda e: (e["category"], e["id"])),
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Iterator[Record]:
    """A Record for this test, saved with the test's outcome when it ends."""
    module = request.node.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    rec = Record(id=f"{module}::{request.node.name}")
    began = time.monotonic()
    yield rec
    report = getattr(request.node, "_rel_call_report", None)
    if report is None:
        rec.outcome = "failed"  # setup failed: the test body never ran
    else:
        rec.outcome = report.outcome
        if report.failed and rec.survived is None:
            rec.survived = 0
        if report.failed and not rec.notes.startswith("BUG"):
            crash = getattr(report.longrepr, "reprcrash", None)
            message = getattr(crash, "message", "") or str(report.longrepr)[-300:]
            message = message.split("Failing test case:")[0]  # hypothesis repeats the record
            rec.notes = f"FAILED: {' '.join(message.split())[:400]}"
    rec.duration_s = round(time.monotonic() - began, 1)
    rec.at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rec.convergence_s = [round(x, 2) for x in rec.convergence_s]
    save_record(rec)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep the call-phase report on the item, for the ``record`` fixture's teardown."""
    report = yield
    if report.when == "call":
        item._rel_call_report = report  # type: ignore[attr-defined]
    return report
