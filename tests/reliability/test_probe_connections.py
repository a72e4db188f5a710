"""A hostile probe of nfd-master's serving edge, with real master processes and real
gRPC on loopback (no Kubernetes: --no-publish):

- an update that never finishes costs its node only: other workers and the health
  checks keep being served;
- a serving loop that never gets control back turns /healthz to 503, and SIGTERM
  still ends the process within its grace, also as PID 1 of a PID namespace;
- floods of silent streams, half-open handshakes and idle HTTP/2 connections
  (2,000 each, from this machine's own address, bounded in time) while a worker on ::1
  publishes: its latency, the master's RSS and descriptors before, during, after;
- a master with few descriptors: the connection cap keeps it alive and healthy.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil
import pytest

from nfd._proto import health_pb2, health_pb2_grpc, labeler_pb2, labeler_pb2_grpc
from nfd.features import Features
from nfd.worker.publish import Publisher
from tests.kube.controlplane import free_port, wait_until
from tests.reliability.recording import Record

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FLOOD = 2000
# Stated bounds (the master's own thresholds are in nfd/master/guards.py and server.py).
STUCK_AFTER_S = 10.0  # guards.STUCK_AFTER_S
SHUTDOWN_GRACE_S = 5.0  # process.SHUTDOWN_GRACE_S
HANDSHAKE_TIMEOUT_S = 10.0  # grpc.server_handshake_timeout_ms
FIRST_MESSAGE_TIMEOUT_S = 10.0  # guards.FIRST_MESSAGE_TIMEOUT_S
LEGIT_PUBLISH_BOUND_S = 2.0
RSS_AFTER_BOUND_MB = 24  # RSS above the baseline once a flood is gone and memory released


@dataclass
class Master:
    popen: subprocess.Popen[bytes]
    log: Path
    port: int
    metrics: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def healthz(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/healthz", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as err:
            return err.code
        except OSError:
            return 0

    def rss_mb(self, pid: int | None = None) -> float:
        return psutil.Process(pid or self.pid).memory_info().rss / 2**20

    def fds(self) -> int:
        return psutil.Process(self.pid).num_fds()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)


def start_master(
    tmp: Path,
    env: dict[str, str] | None = None,
    wrap: Sequence[str] = (),
    preexec: Callable[[], None] | None = None,
) -> Master:
    """nfd-master --no-publish; with ``env``, under the test hooks of hooked_master."""
    port, metrics = free_port(), free_port()
    flags = ["--no-publish", f"--port={port}", f"--metrics={metrics}", "--resync-period=0"]
    if env:
        argv = [sys.executable, "-m", "tests.reliability.hooked_master", *flags]
    else:
        argv = [str(BIN / "nfd-master"), *flags]
    log = tmp / f"master-{port}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            [*wrap, *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            preexec_fn=preexec,
        )
    m = Master(popen, log, port, metrics)
    try:
        wait_until(lambda: m.healthz() == 200 or popen.poll() is not None, 30, "master up")
    except TimeoutError:
        m.stop()
        raise AssertionError(m.text()) from None
    assert popen.poll() is None, m.text()
    return m


@pytest.fixture
def masters(tmp_path: Path) -> Iterator[list[Master]]:
    started: list[Master] = []
    yield started
    for m in started:
        m.stop()


def set_labels(address: str, node: str, timeout: float = 5) -> None:
    with grpc.insecure_channel(address) as ch:
        labeler_pb2_grpc.LabelerStub(ch).SetLabels(
            labeler_pb2.SetLabelsRequest(node_name=node, labels={"probe": "1"}), timeout=timeout
        )


def health_status(address: str, timeout: float = 2) -> str:
    with grpc.insecure_channel(address) as ch:
        try:
            resp = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.RpcError as err:
            return err.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


def stop_and_time(m: Master, pid: int | None = None) -> tuple[float, int]:
    began = time.monotonic()
    os.kill(pid or m.pid, signal.SIGTERM)
    try:
        code = m.popen.wait(SHUTDOWN_GRACE_S + 10)
    except subprocess.TimeoutExpired:
        code = -999
    return time.monotonic() - began, code


# -- stuck updates and a stuck loop -----------------------------------------------------


def test_stuck_update_does_not_stall_other_workers_or_health(
    masters: list[Master], tmp_path: Path, record: Record
) -> None:
    record.category, record.title = (
        "hostile",
        "Updates that never finish (as a never-ending rule) for 3 nodes, while 20 other "
        "workers publish and the probes are asked",
    )
    m = start_master(tmp_path, {"NFD_TEST_STUCK_NODE_PREFIX": "stuck-"})
    masters.append(m)
    address = f"127.0.0.1:{m.port}"
    stuck = []
    for i in range(3):
        ch = grpc.insecure_channel(address)
        req = labeler_pb2.SetLabelsRequest(node_name=f"stuck-{i}", labels={"a": "1"})
        stuck.append((ch, labeler_pb2_grpc.LabelerStub(ch).SetLabels.future(req, timeout=60)))
    time.sleep(0.5)
    latencies = []
    for i in range(20):
        began = time.monotonic()
        Publisher(address, f"worker-{i}").publish_once({"probe": str(i)}, Features(), timeout=10)
        latencies.append(time.monotonic() - began)
    assert health_status(address) == "SERVING"
    assert m.healthz() == 200
    assert not any(call.done() for _, call in stuck)
    record.bound_s = LEGIT_PUBLISH_BOUND_S
    record.measure("publish_median_s", round(statistics.median(latencies), 3))
    record.measure("publish_max_s", round(max(latencies), 3))
    record.notes = "stuck nodes hold 3 of 8 update threads; the others and health are served"
    for ch, call in stuck:
        call.cancel()
        ch.close()
    assert max(latencies) < LEGIT_PUBLISH_BOUND_S, latencies
    record.survived = 1


def _freeze_loop(m: Master) -> tuple[grpc.Channel, grpc.Future]:
    """An update for the hooked node: the serving loop spins from then on. The caller
    keeps the call: a collected one is cancelled, maybe before it was sent."""
    ch = grpc.insecure_channel(f"127.0.0.1:{m.port}")
    req = labeler_pb2.SetLabelsRequest(node_name="freeze-loop", labels={})
    return ch, labeler_pb2_grpc.LabelerStub(ch).SetLabels.future(req, timeout=60)


@pytest.mark.parametrize("mode", ["spin", "sleep"])
def test_frozen_loop_fails_healthz_and_sigterm_still_stops_it(
    masters: list[Master], tmp_path: Path, record: Record, mode: str
) -> None:
    where = {"spin": "in Python code", "sleep": "in a blocking system call"}[mode]
    record.category, record.title = (
        "hostile",
        f"The gRPC serving loop stuck {where}: /healthz and gRPC health, then SIGTERM",
    )
    env = {"NFD_TEST_FREEZE_NODE": "freeze-loop", "NFD_TEST_FREEZE_MODE": mode}
    m = start_master(tmp_path, env)
    masters.append(m)
    assert m.healthz() == 200
    began = time.monotonic()
    ch, call = _freeze_loop(m)
    wait_until(lambda: m.healthz() == 503, STUCK_AFTER_S + 30, "/healthz 503")
    to_503 = time.monotonic() - began
    grpc_health = health_status(f"127.0.0.1:{m.port}")
    assert grpc_health == "DEADLINE_EXCEEDED"  # a stuck loop cannot answer at all
    took, code = stop_and_time(m)
    call.cancel()
    ch.close()
    record.bound_s = SHUTDOWN_GRACE_S + 2
    record.measure("healthz_503_after_s", round(to_503, 1))
    record.measure("sigterm_exit_s", round(took, 2))
    record.measure("exit_code", code)
    record.notes = (
        f"/healthz 503 after {to_503:.1f} s (threshold {STUCK_AFTER_S:g} s), gRPC health "
        f"{grpc_health}; SIGTERM: exit {code} after {took:.1f} s, stacks dumped"
    )
    assert code == 1 and took < SHUTDOWN_GRACE_S + 2, (code, took, m.text()[-3000:])
    assert "unhealthy" not in m.text()  # the log has the stacks, not the probe body
    assert "check_node_name" in m.text()  # faulthandler's dump names the stuck frame
    record.survived = 1


def _unshare_usable() -> bool:
    if shutil.which("unshare") is None:
        return False
    done = subprocess.run(
        ["unshare", "-Urpf", "--mount-proc", "true"], capture_output=True, timeout=10
    )
    return done.returncode == 0


def test_sigterm_stops_a_frozen_master_as_pid1(
    masters: list[Master], tmp_path: Path, record: Record
) -> None:
    record.category, record.title = (
        "hostile",
        "SIGTERM to a frozen nfd-master that is PID 1 of its PID namespace (as in a container)",
    )
    if not _unshare_usable():
        pytest.skip("no user and PID namespaces here (unshare -Urpf)")
    wrap = ["unshare", "-Urpf", "--mount-proc"]
    m = start_master(tmp_path, {"NFD_TEST_FREEZE_NODE": "freeze-loop"}, wrap=wrap)
    masters.append(m)
    (pid1,) = psutil.Process(m.pid).children()
    status = Path(f"/proc/{pid1.pid}/status").read_text().splitlines()
    (nspid,) = [line.split()[1:] for line in status if line.startswith("NSpid:")]
    assert nspid[-1] == "1", nspid  # its pid inside the new namespace
    ch, call = _freeze_loop(m)
    wait_until(lambda: m.healthz() == 503, STUCK_AFTER_S + 30, "/healthz 503")
    took, code = stop_and_time(m, pid1.pid)
    call.cancel()
    ch.close()
    record.bound_s = SHUTDOWN_GRACE_S + 2
    record.measure("sigterm_exit_s", round(took, 2))
    record.notes = f"PID 1 in its namespace: exit {code} after {took:.1f} s"
    assert took < SHUTDOWN_GRACE_S + 2, (code, took, m.text()[-3000:])
    record.survived = 1


# -- floods ---------------------------------------------------------------------------


@dataclass
class Flood:
    mode: str
    hold_s: float
    title: str


FLOODS = [
    Flood(
        "silent-streams",
        FIRST_MESSAGE_TIMEOUT_S + 5,
        f"{FLOOD} FeatureStream calls that never send a message, from one address",
    ),
    Flood(
        "tcp",
        HANDSHAKE_TIMEOUT_S + 5,
        f"{FLOOD} TCP connections that never send a byte (half-open handshakes)",
    ),
    Flood(
        "h2-idle",
        12,
        f"{FLOOD} HTTP/2 connections that send the preface and SETTINGS, then nothing",
    ),
]


def own_address() -> str | None:
    """This machine's own non-loopback IPv4 address: traffic to it stays on the machine,
    but the master sees a remote peer (loopback peers have no per-peer cap)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 9))  # picks the source address; sends nothing
            address: str = sock.getsockname()[0]
        except OSError:
            try:
                address = socket.gethostbyname(socket.gethostname())
            except OSError:
                return None
    return None if address.startswith("127.") else address


@pytest.mark.parametrize("flood", FLOODS, ids=[f.mode for f in FLOODS])
def test_flood_while_a_legitimate_worker_publishes(
    masters: list[Master], tmp_path: Path, record: Record, flood: Flood
) -> None:
    record.category, record.title = "hostile", f"{flood.title}, while a worker on ::1 publishes"
    flood_from = own_address()
    if flood_from is None:
        pytest.skip("no non-loopback address to flood from")
    m = start_master(tmp_path)
    masters.append(m)
    legit = f"[::1]:{m.port}"  # another peer address than the flood's
    Publisher(legit, "legit").publish_once({"probe": "0"}, Features())
    time.sleep(1)
    rss_before, fds_before = m.rss_mb(), m.fds()
    client = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "tests" / "reliability" / "flood_client.py"),
            flood.mode,
            f"--host={flood_from}",
            f"--port={m.port}",
            f"--count={FLOOD}",
            f"--hold={flood.hold_s}",
        ],
        stdout=subprocess.PIPE,
        cwd=REPO,
    )
    latencies, failures, rss_peak, fds_peak = [], [], rss_before, fds_before
    try:
        while client.poll() is None:
            began = time.monotonic()
            try:
                Publisher(legit, "legit").publish_once(
                    {"probe": str(len(latencies))}, Features(), timeout=10
                )
            except Exception as err:  # noqa: BLE001 - counted and reported
                failures.append(str(err))
            latencies.append(time.monotonic() - began)
            rss_peak, fds_peak = max(rss_peak, m.rss_mb()), max(fds_peak, m.fds())
            time.sleep(0.2)
        out, _ = client.communicate(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
    summary = json.loads(out)
    # Freed buffers go back to the kernel within one release interval (20 s).
    try:
        wait_until(
            lambda: m.rss_mb() - rss_before < RSS_AFTER_BOUND_MB and m.fds() <= fds_before + 8,
            45,
            "memory and descriptors back",
            interval=1,
        )
    except TimeoutError:
        pass
    rss_after, fds_after = m.rss_mb(), m.fds()
    record.bound_s = LEGIT_PUBLISH_BOUND_S
    for name, value in [
        ("legit_publishes", len(latencies)),
        ("legit_failures", len(failures)),
        ("legit_median_s", round(statistics.median(latencies), 3)),
        ("legit_max_s", round(max(latencies), 3)),
        ("rss_before_mb", round(rss_before, 1)),
        ("rss_peak_mb", round(rss_peak, 1)),
        ("rss_after_mb", round(rss_after, 1)),
        ("fds_before", fds_before),
        ("fds_peak", fds_peak),
        ("fds_after", fds_after),
        ("flood", summary),
    ]:
        record.measure(name, value)
    record.notes = f"flood: {json.dumps(summary, sort_keys=True)}"
    assert not failures, failures[:3]
    assert max(latencies) < LEGIT_PUBLISH_BOUND_S, latencies
    assert rss_after - rss_before < RSS_AFTER_BOUND_MB, (rss_before, rss_after)
    assert fds_after <= fds_before + 8, (fds_before, fds_after)
    if flood.mode == "silent-streams":
        outcomes = summary["outcomes"]
        assert outcomes.get("held", 0) == 0, summary  # none outlives the first-update deadline
        assert outcomes.get("RESOURCE_EXHAUSTED", 0) >= FLOOD // 2, summary
        assert outcomes.get("DEADLINE_EXCEEDED", 0) <= 32, summary  # the per-peer cap
    elif flood.mode == "tcp":
        assert summary["still_open"] == 0, summary  # the handshake timeout closed them all
        assert summary["max_s"] < HANDSHAKE_TIMEOUT_S + 3, summary
    assert m.popen.poll() is None
    record.survived = 1


def test_connection_cap_keeps_descriptors_for_the_master(
    masters: list[Master], tmp_path: Path, record: Record
) -> None:
    record.category, record.title = (
        "hostile",
        "1,000 half-open TCP connections against a master limited to 768 descriptors",
    )
    fd_limit = 768

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    m = start_master(tmp_path, preexec=low_limit)
    masters.append(m)
    legit = f"[::1]:{m.port}"
    client = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "tests" / "reliability" / "flood_client.py"),
            "tcp",
            f"--port={m.port}",
            "--count=1000",
            "--hold=6",
        ],
        stdout=subprocess.PIPE,
        cwd=REPO,
    )
    fds_peak, healthz, refused_during = 0, set(), 0
    while client.poll() is None:
        fds_peak = max(fds_peak, m.fds())
        healthz.add(m.healthz())
        try:
            Publisher(legit, "legit").publish_once({"probe": "1"}, Features(), timeout=3)
        except Exception:  # noqa: BLE001 - counted: the cap is shared by every peer
            refused_during += 1
        time.sleep(0.3)
    summary = json.loads(client.communicate(timeout=30)[0])
    began = time.monotonic()
    wait_until(
        lambda: _publishes(legit), HANDSHAKE_TIMEOUT_S + 5, "a worker served after the flood"
    )
    recovered = time.monotonic() - began
    record.measure("fds_peak", fds_peak)
    record.measure("legit_refused_during", refused_during)
    record.measure("served_again_after_s", round(recovered, 2))
    record.measure("flood", summary)
    record.notes = (
        f"descriptors peaked at {fds_peak} of {fd_limit}; /healthz {sorted(healthz)}; the "
        f"connection cap (limit - 512) is shared by all peers: {refused_during} worker "
        "publishes refused while it was full"
    )
    assert fds_peak < fd_limit, fds_peak
    assert healthz == {200}, healthz
    assert summary["closed_by_master"] >= 1000 - (fd_limit - 512), summary
    assert m.popen.poll() is None
    record.survived = 1


def _publishes(address: str) -> bool:
    try:
        Publisher(address, "legit").publish_once({"probe": "2"}, Features(), timeout=3)
    except Exception:  # noqa: BLE001 - not yet
        return False
    return True
