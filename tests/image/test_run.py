"""The images as containerd runs them: imported with `ctr images import` into a throwaway
containerd, run with `ctr run` (runc) under the image's own user and a read-only root,
the host given to the worker read-only at the paths the DaemonSet mounts it at."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tests.image.containerd import Containerd

REPO = Path(__file__).resolve().parents[2]
DAEMONSET = REPO / "deploy" / "base" / "worker-daemonset.yaml"
STOP_BOUND = 5.0  # seconds from SIGTERM to exit, as PID 1 (the pod's grace period is 30)


def daemonset_host_mounts(scratch: Path) -> list[str]:
    """`ctr run --mount` options for the worker DaemonSet's hostPath volumes, read-only as
    there. A DirectoryOrCreate path the host lacks becomes an empty directory, as the
    kubelet would create it (without touching the host); other missing paths are left out,
    as the kubelet leaves them empty."""
    spec = yaml.safe_load(DAEMONSET.read_text())["spec"]["template"]["spec"]
    volumes = {v["name"]: v["hostPath"] for v in spec["volumes"] if "hostPath" in v}
    (container,) = spec["containers"]
    mounts = []
    for mount in container["volumeMounts"]:
        host = volumes.get(mount["name"])
        if host is None:
            continue
        assert mount.get("readOnly"), f"{mount['name']} is not read-only in the DaemonSet"
        source = Path(host["path"])
        if not source.exists():
            if host.get("type") != "DirectoryOrCreate":
                continue
            source = scratch / mount["name"]
            source.mkdir()
        mounts += [
            "--mount",
            f"type=bind,src={source},dst={mount['mountPath']},options=rbind:ro",
        ]
    return mounts


def run(ctd: Containerd, image: str, name: str, *args: str, extra: tuple[str, ...] = ()) -> str:
    result = ctd.ctr("run", "--rm", "--read-only", *extra, image, name, *args)
    return result.stdout


def test_imported_under_the_names_deploy_and_the_sandbox_use(
    containerd: Containerd, image_name: str, pause_name: str
) -> None:
    listed = containerd.ctr("images", "ls", "-q").stdout.split()
    assert image_name in listed and pause_name in listed


def test_runs_as_nobody_on_a_read_only_root(containerd: Containerd, image_name: str) -> None:
    assert run(containerd, image_name, "id", "id").split()[0] == "uid=65534(nobody)"
    # /tmp is writable by nobody: only the read-only root stops the write.
    assert containerd.ctr("run", "--rm", image_name, "t1", "touch", "/tmp/x").returncode == 0
    probe = containerd.ctr(
        "run", "--rm", "--read-only", image_name, "t2", "touch", "/tmp/x", check=False
    )
    assert probe.returncode != 0 and "Read-only file system" in probe.stdout + probe.stderr


def test_every_entry_point_starts(containerd: Containerd, image_name: str) -> None:
    assert run(containerd, image_name, "w", "nfd-worker", "--version").split() == [
        "nfd-worker",
        "0.1.0",
    ]
    assert "usage: nfd-master" in run(containerd, image_name, "m", "nfd-master", "--help")
    assert run(containerd, image_name, "n", "nfd", "--version").split()[-1] == "0.1.0"
    assert "usage:" in run(containerd, image_name, "k", "kubectl-nfd", "--help")


def test_the_worker_in_the_image_labels_this_host_as_the_host_cli_does(
    containerd: Containerd, image_name: str
) -> None:
    """`nfd-worker --oneshot --no-publish` in the image (uid 65534, read-only root, the host
    mounted as the DaemonSet mounts it) prints the labels `nfd export labels` gives here."""
    with tempfile.TemporaryDirectory() as scratch:
        mounts = daemonset_host_mounts(Path(scratch))
        out = run(
            containerd,
            image_name,
            "worker-oneshot",
            "nfd-worker",
            "--oneshot",
            "--no-publish",
            extra=(*mounts, "--env", f"NODE_NAME={socket.gethostname()}"),
        )
    in_image = json.loads(out.strip().splitlines()[-1])
    host = subprocess.run(
        [str(Path(sys.executable).parent / "nfd"), "export", "labels"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert in_image == json.loads(host.stdout)
    assert len(in_image) > 10


def wait_running(ctd: Containerd, name: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while ctd.task_status(name) != "RUNNING":
        assert time.monotonic() < deadline, f"{name} never ran"
        time.sleep(0.1)


def stop_seconds(ctd: Containerd, process: subprocess.Popen[str], name: str) -> tuple[float, int]:
    """SIGTERM the task (its PID 1); seconds until `ctr run` returned, and its status."""
    wait_running(ctd, name)
    start = time.monotonic()
    ctd.ctr("tasks", "kill", "-s", "SIGTERM", name)
    try:
        status = process.wait(timeout=STOP_BOUND * 4)
    finally:
        if process.poll() is None:
            ctd.ctr("tasks", "kill", "-s", "SIGKILL", name, check=False)
            process.wait()
    return time.monotonic() - start, status


def test_pause_exits_at_once_on_sigterm_as_pid_1(containerd: Containerd, pause_name: str) -> None:
    process = containerd.popen("run", "--rm", "--read-only", pause_name, "pause-sigterm")
    elapsed, status = stop_seconds(containerd, process, "pause-sigterm")
    assert status == 0
    assert elapsed < STOP_BOUND


def test_the_worker_stops_promptly_on_sigterm_as_pid_1(
    containerd: Containerd, image_name: str
) -> None:
    """A pod deletion takes seconds, not the grace period: PID 1 has no default action for
    SIGTERM, so the worker must handle it."""
    with tempfile.TemporaryDirectory() as scratch:
        process = containerd.popen(
            "run",
            "--rm",
            "--read-only",
            *daemonset_host_mounts(Path(scratch)),
            image_name,
            "worker-sigterm",
            "nfd-worker",
            "--no-publish",
        )
        assert process.stdout is not None
        os.set_blocking(process.stdout.fileno(), True)
        first = process.stdout.readline()  # the first label set: discovery is done
        assert first.startswith("{"), first
        elapsed, status = stop_seconds(containerd, process, "worker-sigterm")
    assert status == 0
    assert elapsed < STOP_BOUND
