"""Hostile feature files and hooks for the local source (nfd/sources/local.py).

Everything runs the source's own functions on real files and real processes; each case
sits next to a good file or hook whose features must survive.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nfd.sources.local import read_feature_files, run_hooks
from tests.reliability.recording import Record

GOOD = "good-feature=1\n"
HOOK_TIMEOUT = 1.0
LIMIT = 64 * 1024


def features_dir(tmp_path: Path) -> Path:
    d = tmp_path / "features.d"
    d.mkdir()
    (d / "zz-good").write_text(GOOD)
    return d


def read_timed(d: Path) -> tuple[dict[str, str], list[str], float]:
    began = time.monotonic()
    parsed = read_feature_files(str(d))
    return parsed.labels, parsed.warnings, time.monotonic() - began


def test_binary_garbage_feature_file(tmp_path: Path, record: Record) -> None:
    record.category, record.title = "hostile", "Feature file of binary garbage (60 KB random)"
    d = features_dir(tmp_path)
    rng = random.Random(8)
    (d / "garbage").write_bytes(bytes(rng.getrandbits(8) for _ in range(60_000)))
    labels, warnings, took = read_timed(d)
    assert labels.get("good-feature") == "1"
    assert any("garbage" in w and "not valid UTF-8" in w for w in warnings)
    # Whatever was taken from the garbage is text without NULs or undecodable bytes.
    for key, value in labels.items():
        assert "\x00" not in key + value
        (key + value).encode("utf-8")
    record.measure("lines_skipped", sum("garbage" in w for w in warnings))
    record.measure("seconds", round(took, 3))
    record.survived = 1


def test_ten_megabyte_feature_file(tmp_path: Path, record: Record) -> None:
    record.category, record.title = "hostile", "10 MB feature file"
    d = features_dir(tmp_path)
    (d / "huge").write_bytes(b"big=1\n" * (10 * 2**20 // 6))
    labels, warnings, took = read_timed(d)
    assert labels == {"good-feature": "1"}
    assert any("huge" in w and "limit" in w for w in warnings), warnings
    assert took < 1.0
    record.notes = warnings[0]
    record.survived = 1


def test_special_files_and_symlinks(tmp_path: Path, record: Record) -> None:
    record.category, record.title = (
        "hostile",
        (
            "Symlinks to /dev/zero, /dev/urandom, a FIFO, /proc/self/mem (unreadable), "
            "/proc/kcore, outside the directory, dangling; a FIFO and a directory in features.d"
        ),
    )
    d = features_dir(tmp_path)
    outside = tmp_path / "outside"
    outside.write_text("outside=1\n")
    os.mkfifo(tmp_path / "fifo")
    os.mkfifo(d / "a-fifo")  # opening it would block forever
    (d / "a-dir").mkdir()
    links = {
        "zero": "/dev/zero",
        "urandom": "/dev/urandom",
        "fifo-link": str(tmp_path / "fifo"),
        "mem": "/proc/self/mem",
        "kcore": "/proc/kcore",
        "outside": str(outside),
        "dangling": str(tmp_path / "missing"),
    }
    for name, target in links.items():
        os.symlink(target, d / name)
    labels, warnings, took = read_timed(d)
    assert labels.get("good-feature") == "1"
    assert took < 2.0
    text = "\n".join(warnings)
    assert "mem: cannot read" in text, text
    # Devices, FIFOs, directories and dangling links are refused by a stat, before any
    # open (opening the FIFO would block forever, /dev/zero never ends), each named.
    for name, kind in {
        "zero": "a character device",
        "urandom": "a character device",
        "fifo-link": "a FIFO",
        "a-fifo": "a FIFO",
        "a-dir": "a directory",
        "dangling": "does not exist",
    }.items():
        assert f"features.d/{name}: {kind}" in text, (name, text)
    # A symlink out of the directory is followed, as upstream's os.ReadFile does: the
    # directory is the admin's (root-owned in the DaemonSet), not the attacker's.
    record.measure("outside_link_followed", labels.get("outside") == "1")
    record.measure("seconds", round(took, 3))
    record.notes = "; ".join(warnings) or "special files skipped silently"
    record.runs = len(links) + 2
    record.survived = record.runs


def test_files_changing_while_read(tmp_path: Path, record: Record) -> None:
    record.category, record.title = (
        "hostile",
        ("Feature files rewritten, truncated, replaced and deleted while being read"),
    )
    d = features_dir(tmp_path)
    target = d / "churn"
    stop = threading.Event()
    writes = [0]

    def churn() -> None:
        rng = random.Random(3)
        while not stop.is_set():
            body = "".join(f"k{rng.randrange(50)}=v\n" for _ in range(rng.randrange(2000)))
            op = rng.randrange(4)
            if op == 0:
                target.write_text(body)  # truncate + write: readers may see half of it
            elif op == 1:
                tmp = d / ".tmp"
                tmp.write_text(body)
                os.replace(tmp, target)
            elif op == 2:
                target.unlink(missing_ok=True)
            else:
                with open(target, "a") as f:
                    f.write(body[: rng.randrange(len(body) + 1)])
            writes[0] += 1

    t = threading.Thread(target=churn)
    t.start()
    reads = 0
    try:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            labels, _, _ = read_timed(d)
            reads += 1
            assert labels.get("good-feature") == "1"
            # A torn read may cut lines and join pieces (an append after a cut line, a
            # read spanning a rewrite), but never yields anything that was not written.
            for key, value in labels.items():
                assert re.fullmatch(r"[kv\d]+|good-feature", key), key
                assert re.fullmatch(r"[kv\d=]*|true|1", value), value
    finally:
        stop.set()
        t.join()
    record.runs = reads
    record.survived = reads
    record.measure("concurrent_writes", writes[0])


def hook(d: Path, name: str, body: str, mode: int = 0o755) -> Path:
    path = d / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def hooks(tmp_path: Path) -> Path:
    d = tmp_path / "source.d"
    d.mkdir()
    hook(d, "zz-good", "echo good-hook=1\n")
    return d


def run(d: Path) -> tuple[dict[str, str], str, float]:
    began = time.monotonic()
    parsed = run_hooks(str(d), HOOK_TIMEOUT, LIMIT)
    return parsed.labels, "\n".join(parsed.warnings), time.monotonic() - began


def test_hooks_hostile(hooks: Path, tmp_path: Path, record: Record) -> None:
    record.category, record.title = (
        "hostile",
        (
            "Hooks: sleeping forever, printing endlessly, exiting non-zero, not executable, "
            "deleted while running, deleting the next hook, binary output"
        ),
    )
    hook(hooks, "a-sleeps", "echo never=1\nexec sleep 1000\n")
    hook(hooks, "b-floods", "exec yes flood=1\n")
    hook(hooks, "c-fails", "echo failed=1\nexit 3\n")
    hook(hooks, "d-not-executable", "echo noexec=1\n", mode=0o644)
    hook(hooks, "e-deletes-itself", 'rm -f -- "$0"\necho self-deleted=1\n')
    hook(hooks, "f-deletes-next", f'rm -f -- "{hooks}/g-deleted"\necho deleter=1\n')
    hook(hooks, "g-deleted", "echo deleted=1\n")
    hook(hooks, "h-binary", "head -c 3000 /dev/urandom\necho\necho after-binary=1\n")
    labels, warnings, took = run(hooks)
    assert labels.get("good-hook") == "1"
    assert labels.get("self-deleted") == "1" and labels.get("deleter") == "1"
    assert not {"never", "flood", "failed", "noexec", "deleted"} & set(labels)
    assert "a-sleeps: killed after 1s timeout" in warnings
    assert "b-floods: output over" in warnings
    assert "c-fails: failed with exit status 3" in warnings
    assert "d-not-executable: not executable" in warnings
    assert "g-deleted" in warnings  # gone before its turn: named, not a crash
    # Timeouts bound the whole run: one timeout plus the quick ones.
    assert took < HOOK_TIMEOUT + 3.0
    record.runs = 8
    record.survived = 8
    record.measure("seconds", round(took, 2))
    record.notes = warnings.replace("\n", "; ")


def test_hook_children_that_outlive_the_hook(hooks: Path, tmp_path: Path, record: Record) -> None:
    record.category, record.title = (
        "hostile",
        (
            "Hooks forking children that outlive them (background child with and without the "
            "hook's stdout)"
        ),
    )
    pids = tmp_path / "pids"
    pids.mkdir()
    # Child keeps the hook's stdout open: it is killed when the hook exits, so the
    # hook's output counts without waiting for the timeout.
    hook(hooks, "a-bg-stdout", f"sleep 1000 &\necho $! > {pids}/a\necho bg=1\n")
    # Child detached from stdout: the hook ends at once, the child must not survive it.
    hook(hooks, "b-bg-quiet", f"sleep 1000 >/dev/null 2>&1 &\necho $! > {pids}/b\necho quiet=1\n")
    labels, warnings, took = run(hooks)
    assert labels.get("good-hook") == "1" and labels.get("quiet") == "1"
    assert labels.get("bg") == "1"
    assert "hook a-bg-stdout: 1 process(es) it left running were killed" in warnings
    assert "hook b-bg-quiet: 1 process(es) it left running were killed" in warnings
    assert "killed after" not in warnings  # nobody waited for the timeout
    survivors = {p.name: int(p.read_text()) for p in pids.iterdir()}
    alive = [name for name, pid in survivors.items() if pid_alive(pid)]
    record.measure("children_left_running", len(alive))
    record.measure("seconds", round(took, 2))
    record.runs = record.survived = 2
    assert alive == []


def test_hook_grandchild_that_escapes_the_process_group(
    hooks: Path, tmp_path: Path, record: Record
) -> None:
    """A hook that daemonizes (setsid) leaves its process group and session; the hook's
    supervisor is its subreaper, so the daemon is reparented to it and killed."""
    record.category, record.title = (
        "hostile",
        ("Hook daemonizing a child with setsid (leaves the hook's process group)"),
    )
    pidfile = tmp_path / "daemon.pid"
    hook(
        hooks,
        "a-daemon",
        f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 1000' </dev/null >/dev/null 2>&1 &\n"
        f"while [ ! -s {pidfile} ]; do sleep 0.05; done\necho daemon=1\n",
    )
    labels, warnings, took = run(hooks)
    assert labels.get("daemon") == "1" and labels.get("good-hook") == "1"
    assert took < HOOK_TIMEOUT + 2.0
    pid = int(pidfile.read_text())
    escaped = pid_alive(pid)
    if escaped:
        os.kill(pid, 9)
    record.measure("escaped_child_survived", escaped)
    record.measure("seconds", round(took, 2))
    record.notes = "the setsid child was reparented to the hook's supervisor and killed"
    record.survived = 1
    assert not escaped
    assert "hook a-daemon: 1 process(es) it left running were killed" in warnings


def test_hooks_die_with_a_killed_worker(hooks: Path, tmp_path: Path, record: Record) -> None:
    """SIGKILL the process running the hooks (as the kubelet or the OOM killer would): the
    supervisor's parent-death signal makes it kill the hook and what the hook started."""
    record.category, record.title = (
        "hostile",
        "Worker SIGKILLed while a hook and its setsid child are running",
    )
    pids = tmp_path / "pids"
    pids.mkdir()
    hook(
        hooks,
        "a-stays",
        f"setsid sh -c 'echo $$ > {pids}/daemon; exec sleep 1000' </dev/null >/dev/null 2>&1 &\n"
        f"echo $$ > {pids}/hook\nexec sleep 1000\n",
    )
    runner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from nfd.sources.local import run_hooks; run_hooks({str(hooks)!r}, 100, 65536)",
        ]
    )
    try:
        deadline = time.monotonic() + 10
        while len(list(pids.iterdir())) < 2 or not all(p.read_text() for p in pids.iterdir()):
            assert time.monotonic() < deadline, "the hook did not start"
            time.sleep(0.02)
    finally:
        runner.kill()
        runner.wait()
    started = {p.name: int(p.read_text()) for p in pids.iterdir()}
    deadline = time.monotonic() + 5
    while any(pid_alive(pid) for pid in started.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = [name for name, pid in started.items() if pid_alive(pid)]
    for name in alive:
        os.kill(started[name], 9)
    record.measure("processes_left", len(alive))
    record.survived = 0 if alive else 1
    assert alive == []
