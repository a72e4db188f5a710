"""The hostile probe, aimed at a real nfd-worker process (issue 15, item 7).

One tree holds every hostile class at once: in features.d a FIFO, a symlink loop, a
1 GiB sparse file, a file that grows without end, a link to /dev/zero, an unreadable
file, a directory named like a file; in custom.d a 50 MB rule file, a FIFO and a loop;
in source.d a hook that daemonizes with setsid, one that closes stdout and stays, one
that writes stderr without end, one that floods stdout, one that sleeps for ever. Next
to them sit good files, rules and hooks whose labels must all be there. The worker runs
as ``nfd-worker --oneshot --no-publish`` and as a daemon reacting to file events; the
tests assert a time bound, a bound on peak RSS, that no hook process survives, and the
good labels.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.reliability.recording import Record
from tests.worker.harness import REPO_ROOT, running_worker

HOOK_TIMEOUT = 1.0
# Two hooks run into their 1s timeout; the rest is start-up and the quick cases. Stated
# generously for a loaded 2-core machine.
ONESHOT_BOUND_S = 20.0
# Over the RSS of the same worker on the good files alone.
RSS_GROWTH_BOUND_MB = 40.0

GOOD_LABELS = {
    "good-file-a": "1",
    "good-file-z": "1",
    "good-rule": "true",
    "good-hook-a": "1",
    "good-hook-z": "1",
}


def hook(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def good_tree(root: Path) -> dict[str, Path]:
    dirs = {name: root / name for name in ("features.d", "custom.d", "source.d")}
    for d in dirs.values():
        d.mkdir()
    (dirs["features.d"] / "a-good").write_text("good-file-a=1\n")
    (dirs["features.d"] / "z-good").write_text("good-file-z=1\n")
    (dirs["custom.d"] / "good.yaml").write_text("- {name: good, labels: {good-rule: 'true'}}\n")
    hook(dirs["source.d"], "a-good", "echo good-hook-a=1\n")
    hook(dirs["source.d"], "z-good", "echo good-hook-z=1\n")
    return dirs


def hostile_tree(root: Path, pids: Path) -> dict[str, Path]:
    """The good tree plus every hostile class; hooks write the pids they start to ``pids``."""
    dirs = good_tree(root)
    features, rules, hooks = dirs["features.d"], dirs["custom.d"], dirs["source.d"]
    os.mkfifo(features / "fifo")
    os.symlink("loop-b", features / "loop-a")
    os.symlink("loop-a", features / "loop-b")
    with open(features / "sparse", "wb") as f:
        f.truncate(1 << 30)
    os.symlink("/dev/zero", features / "zero")
    os.symlink("/proc/self/mem", features / "unreadable")  # opens, every read fails
    (features / "dir.conf").mkdir()
    (features / "growing").write_text("grow=1\n")  # the writer is started by the test

    os.mkfifo(rules / "fifo.yaml")
    os.symlink("loop.yaml", rules / "loop.yaml")
    chunk = b"- {name: big, labels: {big: 'true'}}\n" * 28_000  # 1 MiB
    with open(rules / "huge.yaml", "wb") as f:
        for _ in range(50):
            f.write(chunk)

    hook(
        hooks,
        "b-daemon",
        f"setsid sh -c 'echo $$ > {pids}/daemon; exec sleep 1000' </dev/null >/dev/null 2>&1 &\n"
        f"while [ ! -s {pids}/daemon ]; do sleep 0.02; done\necho daemon=1\n",
    )
    hook(
        hooks,
        "c-closes-stdout",
        f"echo lost=1\nexec >&- 2>&-\nsleep 1000 &\necho $! > {pids}/closes\nexec sleep 1000\n",
    )
    hook(hooks, "d-stderr-flood", f"echo $$ > {pids}/stderr\necho lost=1\nexec yes noise >&2\n")
    hook(hooks, "e-stdout-flood", f"echo $$ > {pids}/stdout\nexec yes flood=1\n")
    hook(hooks, "f-sleeps", f"echo $$ > {pids}/sleeps\necho lost=1\nexec sleep 1000\n")
    os.mkfifo(hooks / "g-fifo")
    (hooks / "h-dir").mkdir()
    return dirs


def config(root: Path, dirs: dict[str, Path], interval: str = "0s") -> Path:
    path = root / "nfd-worker.conf"
    path.write_text(
        yaml.safe_dump(
            {
                "core": {"sleepInterval": interval},
                "sources": {
                    "local": {
                        "featuresDir": str(dirs["features.d"]),
                        "hooksDir": str(dirs["source.d"]),
                        "hookTimeout": f"{HOOK_TIMEOUT:g}s",
                    },
                    "custom": {"rules": [], "rulesDir": str(dirs["custom.d"])},
                },
            }
        )
    )
    return path


def worker_command(conf: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from nfd.cli.worker import console_main; console_main()",
        "--no-publish",
        "--metrics",
        "0",
        "--config",
        str(conf),
        "--feature-sources",
        "local",
        "--label-sources",
        "local,custom",
        *extra,
    ]


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process itself (its children not counted)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Oneshot:
    labels: dict[str, str]
    stderr: str
    seconds: float
    peak_rss_mb: float  # the worker's VmHWM
    cpu_s: float  # the worker's and everything it waited for (hooks, supervisors)


def run_oneshot(conf: Path, tmp_path: Path, timeout: float) -> Oneshot:
    """One ``nfd-worker --oneshot --no-publish`` run.

    Peak RSS is the worker's VmHWM, read until it exits: the rusage maxrss of a child
    starts from the test process's own RSS at the fork, so it says nothing here. The CPU
    time comes from ``os.wait4``: this child's, with the hooks it waited for."""
    out_path, err_path = tmp_path / "oneshot.out", tmp_path / "oneshot.err"
    began = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            worker_command(conf, "--oneshot"),
            stdout=out,
            stderr=err,
            cwd=REPO_ROOT,
            env={**os.environ, "NODE_NAME": "nfd-test-node"},
        )
    deadline = began + timeout
    peak = 0.0
    while True:
        try:
            peak = vm_hwm_mb(proc.pid)
        except (OSError, AssertionError):
            pass  # exiting: VmHWM is gone with its memory, the last reading stands
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"nfd-worker --oneshot ran past {timeout}s")
        time.sleep(0.005)
    took = time.monotonic() - began
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    stderr = err_path.read_text()
    assert proc.returncode == 0, stderr
    return Oneshot(
        json.loads(out_path.read_text()),
        stderr,
        took,
        peak,
        usage.ru_utime + usage.ru_stime,
    )


def start_growing(path: Path) -> subprocess.Popen[bytes]:
    """A writer that appends to ``path`` without end (the test kills it)."""
    return subprocess.Popen(["sh", "-c", f"while :; do echo grow=1; done >> {path}"])


def processes_in(directory: Path) -> list[int]:
    """Live processes whose working directory is ``directory`` (every hook's is)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{name}/cwd")
            state = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if cwd == str(directory) and state != "Z":
            found.append(int(name))
    return found


def survivors(pids: Path) -> dict[str, int]:
    alive = {}
    for entry in pids.iterdir():
        pid = int(entry.read_text())
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive[entry.name] = pid
    return alive


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


EXPECTED_WARNINGS = [
    "features.d/fifo: a FIFO, not a regular file",
    "features.d/loop-a: symlink loop",
    f"features.d/sparse: {1 << 30} bytes is over the 65536 byte limit",
    "features.d/growing:",
    "features.d/zero: a character device",
    "features.d/unreadable: cannot read",
    "features.d/dir.conf: a directory",
    "custom.d/fifo.yaml: a FIFO",
    "custom.d/loop.yaml: symlink loop",
    "custom.d/huge.yaml:",
    "hook b-daemon: 1 process(es) it left running were killed",
    "hook c-closes-stdout: killed after 1s timeout",
    "hook d-stderr-flood: stderr over 1048576 bytes",
    "hook e-stdout-flood: output over 65536 bytes",
    "hook f-sleeps: killed after 1s timeout",
    "hook g-fifo: a FIFO, not a regular file",
    "hook h-dir: a directory, not a regular file",
]


def assert_warned(stderr: str) -> None:
    for warning in EXPECTED_WARNINGS:
        assert warning in stderr, f"no log line with {warning!r}:\n{stderr[-6000:]}"


def test_oneshot_worker_on_every_hostile_class_at_once(tmp_path: Path, record: Record) -> None:
    record.category = "hostile"
    record.title = (
        "nfd-worker --oneshot --no-publish on features.d, custom.d and source.d holding every "
        "hostile class at once (FIFOs, loops, 1 GiB sparse, growing, 50 MB rules, daemonizing "
        "and flooding hooks)"
    )
    record.bound_s = ONESHOT_BOUND_S
    (tmp_path / "baseline").mkdir()
    baseline_dirs = good_tree(tmp_path / "baseline")
    baseline = run_oneshot(config(tmp_path / "baseline", baseline_dirs), tmp_path, 60)
    assert baseline.labels == GOOD_LABELS

    root, pids = tmp_path / "hostile", tmp_path / "pids"
    root.mkdir()
    pids.mkdir()
    dirs = hostile_tree(root, pids)
    writer = start_growing(dirs["features.d"] / "growing")
    try:
        time.sleep(0.2)  # past the 64 KiB cap before the worker looks
        hostile = run_oneshot(config(root, dirs), tmp_path, ONESHOT_BOUND_S)
    finally:
        writer.kill()
        writer.wait()
    left = survivors(pids)
    stray = processes_in(dirs["source.d"])
    kill_all(list(left.values()) + stray)

    record.measure("seconds_good_tree", round(baseline.seconds, 2))
    record.measure("seconds_hostile_tree", round(hostile.seconds, 2))
    record.measure("peak_rss_mb_good_tree", round(baseline.peak_rss_mb, 1))
    record.measure("peak_rss_mb_hostile_tree", round(hostile.peak_rss_mb, 1))
    record.measure("cpu_s_good_tree", round(baseline.cpu_s, 2))
    record.measure("cpu_s_hostile_tree", round(hostile.cpu_s, 2))
    record.measure("hook_processes_left", len(left) + len(stray))
    record.runs = len(EXPECTED_WARNINGS)
    assert hostile.labels == {**GOOD_LABELS, "daemon": "1"}
    assert_warned(hostile.stderr)
    assert left == {} and stray == []
    assert hostile.peak_rss_mb < baseline.peak_rss_mb + RSS_GROWTH_BOUND_MB
    assert hostile.seconds < ONESHOT_BOUND_S
    record.survived = record.runs
    record.notes = (
        f"{hostile.seconds:.1f}s (good tree alone {baseline.seconds:.1f}s), peak RSS "
        f"{hostile.peak_rss_mb:.0f} MB (good tree {baseline.peak_rss_mb:.0f} MB), "
        "no hook process left, every good label there"
    )


def test_daemon_worker_keeps_serving_events_on_every_hostile_class(
    tmp_path: Path, record: Record
) -> None:
    record.category = "hostile"
    record.title = (
        "nfd-worker daemon (file events) on the same hostile tree, with a file that grows "
        "without end and new hostile entries arriving"
    )
    record.bound_s = ONESHOT_BOUND_S
    root, pids = tmp_path / "hostile", tmp_path / "pids"
    root.mkdir()
    pids.mkdir()
    dirs = hostile_tree(root, pids)
    features = dirs["features.d"]
    writer = start_growing(features / "growing")
    try:
        with running_worker(worker_command(config(root, dirs))[3:]) as worker:
            began = time.monotonic()
            first = worker.wait_for(
                lambda labels: GOOD_LABELS.items() <= labels.items(),
                ONESHOT_BOUND_S,
                what="the good labels",
            )
            first_s = first.at - began
            # More hostile entries and one good file arrive while it runs: the good
            # label follows within the bound, whatever the growing file keeps doing.
            os.mkfifo(features / "late-fifo")
            os.symlink("late-loop", features / "late-loop")
            added = time.monotonic()
            (features / "late-good").write_text("late-good=1\n")
            late = worker.wait_for(
                lambda labels: labels.get("late-good") == "1",
                ONESHOT_BOUND_S,
                what="the label of a file added later",
            )
            reaction_s = late.at - added
            rss = vm_hwm_mb(worker.proc.pid)
            cpu_s = cpu_seconds(worker.proc.pid)
            wall_s = time.monotonic() - began
            assert worker.stop() == 0
            stderr = worker.stderr()
    finally:
        writer.kill()
        writer.wait()
    left = survivors(pids)
    stray = processes_in(dirs["source.d"])
    kill_all(list(left.values()) + stray)
    record.measure("seconds_to_first_labels", round(first_s, 2))
    record.measure("seconds_to_react_to_a_new_file", round(reaction_s, 2))
    record.measure("peak_rss_mb", round(rss, 1))
    record.measure("worker_cpu_s", round(cpu_s, 2))
    record.measure("wall_s", round(wall_s, 2))
    record.measure("hook_processes_left", len(left) + len(stray))
    assert_warned(stderr)
    assert "features.d/late-fifo: a FIFO" in stderr and "late-loop: symlink loop" in stderr
    assert left == {} and stray == []
    record.survived = 1
    record.notes = (
        f"first labels after {first_s:.1f}s, a new file's label after {reaction_s:.1f}s, "
        f"peak RSS {rss:.0f} MB, worker CPU {cpu_s:.1f}s in {wall_s:.1f}s, no hook process left"
    )


# 41 templates, each calling the one below twice: 2^40 calls that emit nothing.
FAN_OUT = (
    '{{define "t0"}}{{end}}'
    + "".join(
        f'{{{{define "t{i}"}}}}{{{{template "t{i - 1}"}}}}{{{{template "t{i - 1}"}}}}{{{{end}}}}'
        for i in range(1, 41)
    )
    + '{{template "t40"}}'
)


def test_oneshot_worker_with_a_never_ending_template(tmp_path: Path, record: Record) -> None:
    """Needs the rules engine's default execution budget (the rules branch)."""
    record.category = "hostile"
    record.title = "nfd-worker --oneshot with a custom.d rule whose template fans out 2^40 times"
    record.bound_s = ONESHOT_BOUND_S
    dirs = good_tree(tmp_path)
    rule = {
        "name": "fan-out",
        "labelsTemplate": FAN_OUT,
        "matchFeatures": [{"feature": "local.label", "matchExpressions": {"good-file-a": "1"}}],
    }
    (dirs["custom.d"] / "fan-out.yaml").write_text(yaml.safe_dump([rule]))
    result = run_oneshot(config(tmp_path, dirs), tmp_path, ONESHOT_BOUND_S)
    record.measure("seconds", round(result.seconds, 2))
    record.measure("peak_rss_mb", round(result.peak_rss_mb, 1))
    assert result.labels == GOOD_LABELS
    assert "custom: rule skipped:" in result.stderr and "'fan-out'" in result.stderr
    record.survived = 1
