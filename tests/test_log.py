"""Logging is configured once, at each command's start: INFO by default, DEBUG with -v."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.golden import TREES

BIN = Path(sys.executable).parent
# LOG_FORMAT of nfd/cli/common.py: "<date> <time>,<ms> LEVEL logger: message".
RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) [\w.-]+: ")


def worker(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    empty = tmp_path / "empty.d"
    empty.mkdir(exist_ok=True)
    config = tmp_path / "nfd-worker.conf"
    config.write_text("core:\n  noSuchOption: 1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NFD_")}
    env["NODE_NAME"] = "log-test"
    argv = [str(BIN / "nfd-worker"), "--oneshot", "--no-publish", "--metrics=0"]
    argv += [f"--config={config}", f"--host-prefix={TREES['cpu-only']}/"]
    argv += [f"--features-dir={empty}", f"--hooks-dir={empty}", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)


def records(stderr: str) -> list[str]:
    lines = stderr.splitlines()
    assert all(RECORD.match(line) for line in lines), stderr
    return lines


def test_warnings_reach_stderr_in_the_log_format(tmp_path):
    proc = worker(tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = records(proc.stderr)
    assert any("WARNING" in line and "core.noSuchOption: unknown option" in line for line in lines)
    assert not any(" DEBUG " in line for line in lines)


def test_verbose_turns_on_debug_records(tmp_path):
    proc = worker(tmp_path, "-v")
    assert proc.returncode == 0, proc.stderr
    assert any(" DEBUG " in line for line in records(proc.stderr))
