"""A throwaway containerd of the tests' own: its root, state and socket in a temporary
directory, the CRI plugin off (nothing here talks to a kubelet), stopped by its PID.

It never touches the containerd a cluster may run on the same host (different socket,
different root), so images imported here stay here."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

START_TIMEOUT = 30.0


class ContainerdError(RuntimeError):
    """containerd did not start, or a ctr command failed; the message says which and why."""


class Containerd:
    def __init__(self) -> None:
        for tool, package in (
            ("containerd", "containerd"),
            ("ctr", "containerd"),
            ("runc", "runc"),
        ):
            if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
                raise ContainerdError(f"{tool} is missing: apt-get install {package}")
        # Short path: the socket's must fit in sun_path (108 bytes).
        self.dir = Path(tempfile.mkdtemp(prefix="nfd-ctd-", dir="/tmp"))
        self.socket = self.dir / "containerd.sock"
        config = self.dir / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{self.dir / "root"}"\n'
            f'state = "{self.dir / "state"}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{self.socket}"\n'
            f'[ttrpc]\n  address = "{self.socket}.ttrpc"\n'
            f'[debug]\n  address = "{self.dir / "debug.sock"}"\n'
        )
        self.log = (self.dir / "containerd.log").open("wb")
        self.process = subprocess.Popen(
            ["containerd", "--config", str(config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while self.ctr("version", check=False).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ContainerdError(f"containerd did not start; see {self.dir}/containerd.log")
            time.sleep(0.1)

    def ctr(
        self, *args: str, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        command = ["ctr", "--address", str(self.socket), "-n", "k8s.io", *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise ContainerdError(f"{' '.join(command[3:])}: {result.stderr.strip()}")
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["ctr", "--address", str(self.socket), "-n", "k8s.io", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def task_status(self, name: str) -> str:
        for line in self.ctr("tasks", "ls").stdout.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == name:
                return fields[-1]
        return ""

    def stop(self) -> None:
        """Kill every task, stop containerd by PID, and remove its directory."""
        if self.process.poll() is None:
            for line in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
                self.ctr("tasks", "kill", "-s", "SIGKILL", line, check=False)
                self.ctr("tasks", "delete", "-f", line, check=False)
            for line in self.ctr("containers", "ls", "-q", check=False).stdout.split():
                self.ctr("containers", "delete", line, check=False)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        # Snapshot mounts are gone with their tasks; anything left is unmounted first.
        for line in Path("/proc/self/mounts").read_text().splitlines():
            target = line.split()[1]
            if target.startswith(str(self.dir) + "/"):
                subprocess.run(["umount", "-l", target], check=False, capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
