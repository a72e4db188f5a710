"""What the worker imports: never the Kubernetes client, never the master.

The worker runs on every node with a service account that may not talk to the
API server; the client library (and the master, which uses it) stays out of
every worker mode. Read from real processes with ``python -X importtime``, so it
holds for the installed entry point, not just for an import in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.golden import TREES

BIN = Path(sys.executable).parent
FORBIDDEN = ("kubernetes", "nfd.master")


def imported_modules(stderr: str) -> set[str]:
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name)
    return names


def forbidden(names: set[str]) -> list[str]:
    return sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in FORBIDDEN))


def test_oneshot_worker_imports_no_kubernetes_client(tmp_path):
    empty = tmp_path / "empty.d"
    empty.mkdir()
    config = tmp_path / "nfd-worker.conf"
    config.write_text("core:\n  labelWhiteList: '.'\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NFD_")}
    env["NODE_NAME"] = "startup-test"
    argv = [sys.executable, "-X", "importtime", str(BIN / "nfd-worker")]
    argv += ["--oneshot", "--no-publish", "--metrics=0", f"--config={config}"]
    argv += [f"--host-prefix={TREES['host-full']}/", f"--features-dir={empty}"]
    argv += [f"--hooks-dir={empty}"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)  # real labels came out
    names = imported_modules(proc.stderr)
    assert "nfd.worker.discovery" in names
    assert not forbidden(names)


def test_worker_daemon_and_publisher_import_no_kubernetes_client():
    code = "import nfd.cli.worker, nfd.worker.daemon, nfd.worker.publish, nfd.worker.metrics"
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = imported_modules(proc.stderr)
    assert "grpc" in names and "nfd.worker.publish" in names
    assert not forbidden(names)


def _worker_argv(tmp_path: Path, *extra: str) -> list[str]:
    empty = tmp_path / "empty.d"
    empty.mkdir(exist_ok=True)
    argv = [sys.executable, "-X", "importtime", str(BIN / "nfd-worker"), "--config=/dev/null"]
    argv += [f"--host-prefix={TREES['host-full']}/", f"--features-dir={empty}"]
    return [*argv, f"--hooks-dir={empty}", *extra]


def test_running_grpc_worker_imports_no_kubernetes_client(tmp_path):
    """A real daemon in gRPC mode (our manifests' --server), publisher running."""
    import signal
    import socket

    with socket.socket() as s:  # a port nobody listens on: the publisher keeps retrying
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "NODE_NAME": "startup-test"}
    argv = _worker_argv(tmp_path, f"--server=127.0.0.1:{port}", "--metrics=0")
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(4)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    names = imported_modules(stderr)
    assert "nfd.worker.publish" in names and "nfd.worker.daemon" in names, stderr[-3000:]
    assert "nfd.worker.nodefeature" not in names
    assert not forbidden(names)


def test_nodefeature_mode_alone_loads_the_kubernetes_client(tmp_path):
    """v0.19's command line (no --server): the NodeFeature publisher and the client load;
    a kubeconfig that is not there is a clear start-up error (exit 2)."""
    env = {**os.environ, "NODE_NAME": "startup-test", "KUBERNETES_NAMESPACE": "nfd"}
    argv = _worker_argv(tmp_path, "--oneshot", "--port=0", f"--kubeconfig={tmp_path}/none")
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "cannot load a Kubernetes client config (--kubeconfig" in proc.stderr
    names = imported_modules(proc.stderr)
    assert "nfd.worker.nodefeature" in names and "kubernetes" in names
    assert "nfd.worker.publish" not in names and "grpc" not in names
