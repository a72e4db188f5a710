"""Runs every atheris target (tests/fuzz/atheris_driver.py) for a bounded number of
coverage-guided inputs, each in a child process with capped memory."""

from __future__ import annotations

import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.atheris_driver import TARGETS
from tests.reliability.recording import REPO, Record

RUNS = 10000
MEMORY = 2 << 30


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_atheris_target(target: str, record: Record, tmp_path: Path) -> None:
    record.category, record.title = "fuzz", f"atheris (coverage-guided): {target}"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz.atheris_driver",
            target,
            f"-runs={RUNS}",
            "-timeout=10",
            "-seed=8",
            f"-artifact_prefix={tmp_path}/",  # crash inputs go here, not into the repo
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        preexec_fn=_limit,
    )
    output = proc.stdout + proc.stderr
    done = re.search(r"Done (\d+) runs", output)
    cov = re.findall(r"cov: (\d+)", output)
    record.runs = int(done.group(1)) if done else RUNS
    record.measure("edges_covered", int(cov[-1]) if cov else 0)
    if proc.returncode != 0:
        crash = [line for line in output.splitlines() if "Error" in line or "Exception" in line]
        record.notes = "BUG: " + " | ".join(crash[-3:])[:400]
    assert proc.returncode == 0, output[-3000:]
