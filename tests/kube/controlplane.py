"""Run etcd and kube-apiserver (and optionally kube-controller-manager) on 127.0.0.1 for tests.

This is the Python counterpart of controller-runtime's envtest: real binaries, built by
`hack/control-plane.sh build`, on free loopback ports with a temporary data directory, a static
admin bearer token and a generated kubeconfig. No kubelet and no scheduler run; Nodes are plain
API objects created by `register_node`.

Every child runs in its own process group, is killed when the Python process dies (Linux
PR_SET_PDEATHSIG), and is stopped by an atexit hook, so a crashed or interrupted test run leaves
no etcd or apiserver behind.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "control-plane.sh"
INSTALL_HINT = "run `make install` (hack/control-plane.sh build)"

# The DaemonSet controller ignores Node conditions, but kubectl and humans look at them, and the
# scheduler (if a test ever runs one) needs allocatable pods > 0.
DEFAULT_CAPACITY: Mapping[str, str] = {
    "cpu": "4",
    "memory": "8Gi",
    "pods": "110",
    "ephemeral-storage": "100Gi",
}

T = TypeVar("T")


class ControlPlaneError(RuntimeError):
    """A binary is missing or a component did not come up; the message says what to do."""


class KubectlError(subprocess.CalledProcessError):
    """kubectl failed; unlike CalledProcessError, the message includes kubectl's stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stderr}"


@dataclass(frozen=True)
class Binaries:
    """Paths of the executables the harness runs."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path


def _cached_binary(name: str) -> Path:
    """Ask the build script where `name` is cached; NFD_CP_<NAME> overrides it."""
    override = os.environ.get("NFD_CP_" + name.upper().replace("-", "_"))
    if override:
        path = Path(override)
        if not os.access(path, os.X_OK):
            raise ControlPlaneError(f"{name}: {path} (from NFD_CP_*) is not executable")
        return path
    result = subprocess.run(
        [str(BUILD_SCRIPT), "path", name], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        # The script's message already names the version and the install hint.
        raise ControlPlaneError(result.stderr.strip() or f"{name} is not built: {INSTALL_HINT}")
    return Path(result.stdout.strip())


def find_binaries() -> Binaries:
    """Locate all binaries, raising ControlPlaneError with the install hint if any is missing."""
    try:
        kubectl = _cached_binary("kubectl")
    except ControlPlaneError:
        # A packaged kubectl is an acceptable fallback: the harness only uses get/apply/patch.
        system_kubectl = shutil.which("kubectl")
        if system_kubectl is None:
            raise
        kubectl = Path(system_kubectl)
    return Binaries(
        etcd=_cached_binary("etcd"),
        kube_apiserver=_cached_binary("kube-apiserver"),
        kube_controller_manager=_cached_binary("kube-controller-manager"),
        kubectl=kubectl,
    )


def free_port() -> int:
    """A currently free port (the usual bind-to-0 trick; racy but fine for tests).

    Free on IPv4 and IPv6 alike where the host has both: a server that binds "[::]"
    falls back to IPv4 only, silently, when another process holds the port there on
    IPv4 alone, and a client dialling "localhost" then gets refused on ::1."""
    if socket.has_ipv6:
        try:
            with socket.socket(socket.AF_INET6) as sock:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                sock.bind(("::", 0))
                port: int = sock.getsockname()[1]
                return port
        except OSError:
            pass  # no IPv6 on this host
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """preexec_fn: have the kernel SIGKILL the child when the test process dies."""
    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except OSError:
        pass  # not glibc Linux: the atexit hook and explicit stop() still apply


def wait_until(
    check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2
) -> T:
    """Poll `check` until it returns something other than None/False, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class _Component:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    argv: list[str] = field(default_factory=list)  # to start it again (start_component)

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the component's process group, then SIGKILL it if it lingers."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=timeout)
                return
            except subprocess.TimeoutExpired:
                continue


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


_ACTIVE: list[ControlPlane] = []


def active_control_planes() -> list[ControlPlane]:
    """Control planes started and not yet stopped (for pytest hooks that attach logs)."""
    return list(_ACTIVE)


@atexit.register
def _stop_all() -> None:
    for plane in list(_ACTIVE):
        plane.stop()


@dataclass(eq=False)  # identity semantics: each instance owns its own processes
class ControlPlane:
    """etcd + kube-apiserver on loopback; see the module docstring.

    Attributes set by start(): `server` (https URL), `token` (admin bearer token, group
    system:masters), `kubeconfig` (path of a kubeconfig using both), `startup_seconds`.
    """

    binaries: Binaries
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="nfd-kcp.")))
    keep_workdir: bool = False
    server: str = ""
    token: str = ""
    kubeconfig: Path = Path()
    startup_seconds: float = 0.0
    apiserver_args: tuple[str, ...] = ()  # appended to kube-apiserver's command line
    _components: dict[str, _Component] = field(default_factory=dict)
    _api_client: Any = None
    _etcd_url: str = ""

    # ----------------------------------------------------------------------------- lifecycle

    @classmethod
    def start_new(cls, timeout: float = 120.0, apiserver_args: Sequence[str] = ()) -> ControlPlane:
        """Find the binaries, start etcd and the apiserver, and wait until both are ready."""
        plane = cls(binaries=find_binaries(), apiserver_args=tuple(apiserver_args))
        plane.start(timeout=timeout)
        return plane

    def start(self, timeout: float = 120.0) -> None:
        """Start etcd then kube-apiserver; raise ControlPlaneError (with log tails) on failure."""
        began = time.monotonic()
        _ACTIVE.append(self)
        try:
            etcd_url = self._start_etcd(timeout)
            self._start_apiserver(etcd_url, timeout)
        except (ControlPlaneError, TimeoutError, OSError) as err:
            message = f"control plane did not come up: {err}\n{self.logs()}"
            self.stop()
            raise ControlPlaneError(message) from err
        self.startup_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop every component (newest first) and remove the work directory."""
        self._close_client()
        for component in reversed(list(self._components.values())):
            component.stop()
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def start_controller_manager(
        self, controllers: Sequence[str] = ("daemonset",), timeout: float = 60.0
    ) -> None:
        """Run kube-controller-manager with only `controllers` (idempotent).

        No serving port, no leader election; it uses the admin kubeconfig. Controllers that
        need node heartbeats (nodelifecycle) would taint kubelet-less Nodes, so leave them out.
        """
        if "kube-controller-manager" in self._components:
            return
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={self.kubeconfig}",
                f"--controllers={','.join(controllers)}",
                "--leader-elect=false",
                "--secure-port=0",
                "--v=2",
            ],
        )

        # KCM has no serving port here, so readiness is read from its log: each controller
        # logs "Controller starting..." and then its informers log "Caches are synced".
        def started() -> bool:
            log = self._log_text("kube-controller-manager")
            started_at = log.find("Controller starting...")
            return started_at >= 0 and "Caches are synced" in log[started_at:]

        try:
            wait_until(
                lambda: self._check_alive("kube-controller-manager") and started(),
                timeout,
                "kube-controller-manager to start its controllers",
            )
        except (TimeoutError, ControlPlaneError) as err:
            raise ControlPlaneError(f"{err}\n{self.logs()}") from err

    # ----------------------------------------------------------------------------- faults

    def stop_component(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Stop one component ("etcd", "kube-apiserver", ...) to simulate an outage.

        SIGTERM lets it shut down gracefully (SIGKILL after 10 s); pass SIGKILL for a crash.
        """
        component = self._components[name]
        if sig == signal.SIGTERM:
            component.stop()
            return
        try:
            os.killpg(component.process.pid, sig)
        except ProcessLookupError:
            pass
        component.process.wait(timeout=10)

    def start_component(self, name: str, timeout: float = 90.0) -> None:
        """Start a stopped component again with its original arguments: same ports, same data
        directory, so clients and kubeconfigs keep working. Waits until it is ready."""
        previous = self._components[name]
        if previous.running():
            raise ControlPlaneError(f"{name} is still running")
        self._spawn(name, previous.argv)
        wait_until(
            lambda: self._check_alive(name) and self._ready(name),
            timeout,
            f"{name} to be ready again",
        )

    def restart_component(
        self, name: str, down_seconds: float = 0.0, sig: int = signal.SIGTERM, timeout: float = 90.0
    ) -> None:
        """stop_component, stay down for `down_seconds`, then start_component."""
        self.stop_component(name, sig)
        time.sleep(down_seconds)
        self.start_component(name, timeout)

    def _ready(self, name: str) -> bool:
        if name == "etcd":
            return _http_ok(f"{self._etcd_url}/health")
        if name == "kube-apiserver":
            return _http_ok(f"{self.server}/readyz", self.token)
        return True  # kube-controller-manager serves nothing here; running is all we can see

    # ----------------------------------------------------------------------------- processes

    def _spawn(self, name: str, argv: list[str]) -> _Component:
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: killpg reaches any helpers too
                preexec_fn=_die_with_parent,
            )
        component = _Component(name, process, log_path, argv)
        self._components[name] = component
        return component

    def _check_alive(self, name: str) -> bool:
        component = self._components[name]
        if not component.running():
            # Callers append the log tails (self.logs()) to the final error.
            raise ControlPlaneError(f"{name} exited with status {component.process.returncode}")
        return True

    def _start_etcd(self, timeout: float) -> str:
        client_port, peer_port = free_port(), free_port()
        client_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=nfd-test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=nfd-test={peer_url}",
                # Test data is throw-away; fsync dominates etcd latency on CI disks.
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        wait_until(
            lambda: self._check_alive("etcd") and _http_ok(f"{client_url}/health"),
            timeout,
            "etcd /health",
        )
        self._etcd_url = client_url
        return client_url

    def _start_apiserver(self, etcd_url: str, timeout: float) -> None:
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        self.token = secrets.token_hex(16)
        cert_dir = self.workdir / "pki"
        cert_dir.mkdir(exist_ok=True)
        sa_key = self._write_service_account_key()
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.token},nfd-test-admin,nfd-test-admin,"system:masters"\n')
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={cert_dir}",
                "--service-cluster-ip-range=10.0.0.0/24",
                f"--service-account-issuer={self.server}",
                f"--service-account-key-file={sa_key}",
                f"--service-account-signing-key-file={sa_key}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                # ServiceAccount: no token controller runs, so pods would be rejected.
                # TaintNodesByCondition: it taints every new Node not-ready:NoSchedule, which
                # DaemonSet pods do not tolerate, and no node lifecycle controller removes it.
                "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
                *self.apiserver_args,
            ],
        )
        ready = f"{self.server}/readyz"
        wait_until(
            lambda: self._check_alive("kube-apiserver") and _http_ok(ready, self.token),
            timeout,
            "kube-apiserver /readyz",
            interval=0.5,
        )
        self.kubeconfig = self._write_kubeconfig(cert_dir / "apiserver.crt")
        namespace = f"{self.server}/api/v1/namespaces/default"
        wait_until(lambda: _http_ok(namespace, self.token), 30, "the default namespace")

    def _write_service_account_key(self) -> Path:
        """An RSA key for signing/verifying service-account tokens (required flags)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path = self.workdir / "sa.key"
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        return path

    def _write_kubeconfig(self, serving_cert: Path) -> Path:
        """Write an admin kubeconfig that trusts the apiserver's self-signed serving cert.

        kube-apiserver writes apiserver.crt as serving cert + its self-signed CA, valid for
        127.0.0.1 and localhost, so it works as a CA bundle.
        """
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "nfd-test",
                    "cluster": {"server": self.server, "certificate-authority": str(serving_cert)},
                }
            ],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "nfd-test", "context": {"cluster": "nfd-test", "user": "admin"}}],
            "current-context": "nfd-test",
        }
        path = self.workdir / "kubeconfig"
        path.write_text(json.dumps(kubeconfig, indent=2))  # JSON is valid YAML
        return path

    # ----------------------------------------------------------------------------- access

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = False, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane; output is captured as text."""
        argv = [str(self.binaries.kubectl), f"--kubeconfig={self.kubeconfig}", *args]
        deadline = time.monotonic() + timeout
        while True:
            result = subprocess.run(
                argv, input=input, capture_output=True, text=True, check=False, timeout=timeout
            )
            # `kubectl wait --for=condition=...` on an object created a moment ago fails at
            # once while its status has no conditions yet, instead of waiting: ask again.
            if (
                args[:1] == ("wait",)
                and result.returncode != 0
                and ".status.conditions accessor error" in result.stderr
                and time.monotonic() < deadline
            ):
                time.sleep(0.2)
                continue
            break
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result

    @property
    def api_client(self) -> Any:
        """A `kubernetes.client.ApiClient` for this control plane (created on first use)."""
        if self._api_client is None:
            from kubernetes import config  # test-only dependency, imported lazily

            self._api_client = config.new_client_from_config(config_file=str(self.kubeconfig))
        return self._api_client

    @property
    def core(self) -> Any:
        """`kubernetes.client.CoreV1Api` bound to this control plane."""
        from kubernetes import client

        return client.CoreV1Api(self.api_client)

    @property
    def apps(self) -> Any:
        """`kubernetes.client.AppsV1Api` bound to this control plane."""
        from kubernetes import client

        return client.AppsV1Api(self.api_client)

    def _close_client(self) -> None:
        if self._api_client is not None:
            self._api_client.close()
            self._api_client = None

    # ----------------------------------------------------------------------------- logs

    def _log_text(self, name: str) -> str:
        component = self._components.get(name)
        return component.log_path.read_text(errors="replace") if component else ""

    def pids(self) -> dict[str, int]:
        """Component name -> process id (also of components that have exited)."""
        return {name: c.process.pid for name, c in self._components.items()}

    def log_paths(self) -> dict[str, Path]:
        """Component name -> log file path."""
        return {name: c.log_path for name, c in self._components.items()}

    def logs(self, lines: int = 40, names: Iterable[str] | None = None) -> str:
        """The last `lines` lines of each component's log (all components by default)."""
        selected = list(names) if names is not None else list(self._components)
        parts = []
        for name in selected:
            component = self._components.get(name)
            if component is not None:
                parts.append(f"--- {name} ({component.log_path}) ---\n")
                parts.append(_tail(component.log_path, lines) + "\n")
        return "".join(parts)

    # ----------------------------------------------------------------------------- nodes

    def register_node(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        capacity: Mapping[str, str] | None = None,
        taints: Sequence[Mapping[str, str]] = (),
    ) -> Any:
        """Create a Node the way a kubelet registers itself; return the created V1Node.

        The object carries the kubelet's well-known labels, status.capacity/allocatable, a Ready
        condition, addresses and nodeInfo. Nodes accept status on create, so one POST suffices.
        """
        from kubernetes import client

        body = client.V1Node.from_dict(node_manifest(name, labels, capacity, taints))
        return self.core.create_node(body=body)

    def delete_node(self, name: str, wait: bool = True) -> None:
        """Delete a Node (no error if it is already gone); optionally wait until it is gone."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.delete_node(name)
        except ApiException as err:
            if err.status != 404:
                raise
        if wait:
            wait_until(lambda: not self._node_exists(name), 30, f"node {name} to be deleted")

    def _node_exists(self, name: str) -> bool:
        result = self.kubectl("get", "node", name, "-o", "name")
        return result.returncode == 0

    def bind_pod(self, namespace: str, pod: str, node: str) -> None:
        """Set a pod's spec.nodeName through the binding subresource, as kube-scheduler would."""
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        # The generated client has trouble with the Binding response
        # (kubernetes-client/python#825); kubectl's raw POST does not.
        self.kubectl(
            "create",
            "--raw",
            f"/api/v1/namespaces/{namespace}/pods/{pod}/binding",
            "-f",
            "-",
            input=json.dumps(binding),
            check=True,
        )


def node_manifest(
    name: str,
    labels: Mapping[str, str] | None = None,
    capacity: Mapping[str, str] | None = None,
    taints: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """The Node object a kubelet would POST on registration (pure; useful on its own)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    resources = dict(capacity if capacity is not None else DEFAULT_CAPACITY)
    all_labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        **(labels or {}),
    }
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "fake kubelet: registered by the test harness",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": all_labels},
        "spec": {"taints": [dict(t) for t in taints]} if taints else {},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [ready],
            "addresses": [{"type": "Hostname", "address": name}],
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "osImage": "nfd test node",
                "kernelVersion": os.uname().release,
                "kubeletVersion": "v0.0.0-fake",
                "kubeProxyVersion": "",
                "containerRuntimeVersion": "fake://0",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    }


def _http_ok(url: str, token: str | None = None) -> bool:
    """True if GET url answers 2xx. TLS is not verified: this only probes readiness."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False
