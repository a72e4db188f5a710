"""hack/make-certs.sh: a CA, a master certificate and per-node worker certificates that
really work for mutual TLS, and Secrets that carry them."""

from __future__ import annotations

import base64
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.deploy.manifests import REPO

SCRIPT = REPO / "hack" / "make-certs.sh"
BIN = Path(sys.executable).parent  # the venv's console scripts


def make_certs(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "--out", str(out), *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs") / "nfd-certs"
    result = make_certs(out, "node-a", "gpu-1.example.com")
    assert result.returncode == 0, result.stderr
    return out


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_certificates_have_the_names_verify_node_name_checks(certs: Path) -> None:
    ca = cert(certs / "ca.crt")
    for name in ("node-a", "gpu-1.example.com"):
        worker = cert(certs / "workers" / f"{name}.crt")
        worker.verify_directly_issued_by(ca)
        assert worker.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        san = worker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [name]
        eku = worker.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    master = cert(certs / "master.crt")
    master.verify_directly_issued_by(ca)
    san = master.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "nfd-master" in san.get_values_for_type(x509.DNSName)
    assert "nfd-master.node-feature-discovery.svc" in san.get_values_for_type(x509.DNSName)
    assert (certs / "ca.key").stat().st_mode & 0o077 == 0


def test_secrets_carry_the_files(certs: Path) -> None:
    docs = list(yaml.safe_load_all((certs / "secrets.yaml").read_text()))
    secrets = {d["metadata"]["name"]: d for d in docs}
    assert set(secrets) == {"nfd-master-cert", "nfd-worker-certs"}
    for secret in secrets.values():
        assert secret["metadata"]["namespace"] == "node-feature-discovery"
    master = {k: base64.b64decode(v) for k, v in secrets["nfd-master-cert"]["data"].items()}
    assert master["tls.crt"] == (certs / "master.crt").read_bytes()
    assert master["ca.crt"] == (certs / "ca.crt").read_bytes()
    worker = {k: base64.b64decode(v) for k, v in secrets["nfd-worker-certs"]["data"].items()}
    assert set(worker) == {
        "ca.crt", "node-a.crt", "node-a.key", "gpu-1.example.com.crt", "gpu-1.example.com.key"
    }  # fmt: skip
    assert worker["node-a.key"] == (certs / "workers" / "node-a.key").read_bytes()


def handshake(certs: Path, client_cert: Path, client_key: Path) -> str:
    """Mutual TLS over loopback: the server (master cert) requires a client certificate from
    the CA; return the client's CN as the server saw it, or raise ssl.SSLError."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certs / "master.crt", certs / "master.key")
    server_ctx.load_verify_locations(certs / "ca.crt")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(certs / "ca.crt")
    client_ctx.load_cert_chain(client_cert, client_key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: dict[str, object] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                peer = tls.getpeercert()
                seen["cn"] = dict(x[0] for x in peer["subject"])["commonName"]
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as err:
            seen["error"] = err

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            # The worker dials nfd-master:8080: the master certificate must carry that name.
            with client_ctx.wrap_socket(raw, server_hostname="nfd-master") as tls:
                tls.recv(2)
    finally:
        thread.join(10)
        listener.close()
    if "error" in seen:
        raise ssl.SSLError(str(seen["error"]))
    return str(seen["cn"])


def test_mutual_tls_works_with_the_made_certificates(certs: Path) -> None:
    workers = certs / "workers"
    assert handshake(certs, workers / "node-a.crt", workers / "node-a.key") == "node-a"


def test_a_certificate_from_another_ca_is_refused(certs: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert make_certs(other, "node-a").returncode == 0
    with pytest.raises((ssl.SSLError, OSError)):
        handshake(certs, other / "workers" / "node-a.crt", other / "workers" / "node-a.key")


def test_adding_a_node_keeps_the_ca(certs: Path, tmp_path: Path) -> None:
    out = tmp_path / "c"
    assert make_certs(out, "node-a").returncode == 0
    ca_before = (out / "ca.crt").read_bytes()
    node_a_before = (out / "workers" / "node-a.crt").read_bytes()
    result = make_certs(out, "node-b")
    assert result.returncode == 0 and "reusing the CA" in result.stderr
    assert (out / "ca.crt").read_bytes() == ca_before
    cert(out / "workers" / "node-b.crt").verify_directly_issued_by(cert(out / "ca.crt"))
    secret = list(yaml.safe_load_all((out / "secrets.yaml").read_text()))[1]
    assert {"node-a.crt", "node-b.crt"} <= set(secret["data"])
    assert (out / "workers" / "node-a.crt").read_bytes() != b"" and node_a_before


@pytest.mark.parametrize("args", [["Bad_Name"], [], ["--days", "x", "n1"], ["--bogus"]])
def test_bad_input_is_refused_with_a_message(tmp_path: Path, args: list[str]) -> None:
    result = make_certs(tmp_path / "x", *args)
    assert result.returncode == 2
    assert "make-certs:" in result.stderr
    assert not (tmp_path / "x" / "ca.key").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def master_with_made_certs(certs: Path, tmp_path: Path) -> Iterator[int]:
    """The real nfd-master, as the tls overlay runs it (--verify-node-name), but with
    --no-publish so it needs no Kubernetes API; yields its gRPC port."""
    port, metrics = _free_port(), _free_port()
    log = (tmp_path / "master.log").open("wb")
    master = subprocess.Popen(
        [
            str(BIN / "nfd-master"), "--no-publish", f"--port={port}", f"--metrics={metrics}",
            f"--ca-file={certs / 'ca.crt'}", f"--cert-file={certs / 'master.crt'}",
            f"--key-file={certs / 'master.key'}", "--verify-node-name",
        ],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/healthz", timeout=1):
                    break
            except OSError:
                if master.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"nfd-master did not start:\n{(tmp_path / 'master.log').read_text()}"
                    )
                time.sleep(0.2)
        yield port
    finally:
        master.terminate()
        master.wait(10)
        log.close()


def run_worker(port: int, node: str, certs: Path, cert_name: str, tmp_path: Path) -> Any:
    host = tmp_path / "host"
    (host / "etc").mkdir(parents=True, exist_ok=True)
    (host / "etc" / "os-release").write_text('ID=ubuntu\nVERSION_ID="22.04"\n')
    return subprocess.run(
        [
            str(BIN / "nfd-worker"), "--oneshot", f"--host-prefix={host}/",
            "--label-sources=system", "--feature-sources=system", "--config=/dev/null",
            f"--server=127.0.0.1:{port}", f"--ca-file={certs / 'ca.crt'}",
            f"--cert-file={certs / 'workers' / (cert_name + '.crt')}",
            f"--key-file={certs / 'workers' / (cert_name + '.key')}",
        ],
        env={"NODE_NAME": node, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_real_master_and_worker_with_the_made_certificates(
    master_with_made_certs: int, certs: Path, tmp_path: Path
) -> None:
    """A worker publishes with its own node's certificate; with another node's certificate
    the master refuses it (--verify-node-name), as the tls overlay deploys them."""
    ok = run_worker(master_with_made_certs, "node-a", certs, "node-a", tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "published" in ok.stderr
    impostor = run_worker(master_with_made_certs, "gpu-1.example.com", certs, "node-a", tmp_path)
    assert impostor.returncode != 0
    assert "PERMISSION_DENIED" in impostor.stderr
