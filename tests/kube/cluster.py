"""A real one-node Kubernetes cluster on this host: `make cluster`, and tests/cluster's fixture.

Everything with a network address runs inside one network namespace of our own (NETNS): etcd,
kube-apiserver, kube-controller-manager, kube-scheduler, containerd (and so the CNI bridge and
every pod's veth), the kubelet, kube-proxy and CoreDNS. The node's address (NODE_IP, on the
namespace's loopback device), the pod range and the Service range exist only in there, so no
test packet can leave it. The host reaches the API server through one relay: socat on
127.0.0.1:<port> on the host forwards to a unix socket in the state directory, where a second
socat, inside the namespace, connects to the API server. Filesystem, PID and mount namespaces
are the host's: the kubelet and the worker pods see the real /sys, /proc and
/etc/kubernetes/node-feature-discovery.

The processes are daemons (their own sessions, PIDs in <state>/pids), so the cluster outlives
`make cluster`; `down()` stops them by PID and removes the shims, mounts, the namespace (with the
bridge), the kubepods cgroups and the state directory. See docs/control-plane.md.

    python -m tests.kube.cluster up [--image ARCHIVE ...]   # prints the kubeconfig path last
    python -m tests.kube.cluster down
    python -m tests.kube.cluster status
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.kube.controlplane import (
    REPO_ROOT,
    ControlPlaneError,
    KubectlError,
    _cached_binary,
    _http_ok,
    _tail,
    wait_until,
)

log = logging.getLogger("nfd.cluster")

NETNS = "nfd-cluster"
NODE_IP = "10.250.0.1"  # on NETNS's loopback device: the API server, DNS, the kubelet
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/24"
KUBERNETES_SERVICE_IP = "10.96.0.1"  # the first address of SERVICE_CIDR
CLUSTER_DOMAIN = "cluster.local"
APISERVER_PORT = 6443  # inside NETNS
BRIDGE = "nfd-cni0"
DEFAULT_STATE_DIR = Path("/var/lib/nfd-cluster")
IMAGE_SCRIPT = REPO_ROOT / "hack" / "image.sh"

# Started in this order, stopped in the reverse one.
COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "apiserver-relay-netns",
    "apiserver-relay-host",
    "kube-controller-manager",
    "kube-scheduler",
    "containerd",
    "coredns",
    "kube-proxy",
    "kubelet",
)


class ClusterError(RuntimeError):
    """The cluster did not come up or could not be torn down; the message says why."""


@dataclass(frozen=True)
class Images:
    """OCI archives to import and the references the manifests use for them."""

    nfd_archive: Path
    nfd_name: str
    pause_archive: Path
    pause_name: str


def normalized_reference(name: str) -> str:
    """The name containerd's CRI stores an image under: `nfd:0.1.0` is
    `docker.io/library/nfd:0.1.0`, as the kubelet looks it up."""
    first, _, rest = name.partition("/")
    if not rest:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    if ":" not in name.rsplit("/", 1)[-1] and "@" not in name:
        name += ":latest"
    return name


def images_from_script(script: Path = IMAGE_SCRIPT) -> Images:
    """Build (or reuse) the nfd and pause images with hack/image.sh and say where they are.

    NFD_IMAGE_ARCHIVE / NFD_IMAGE_NAME / NFD_PAUSE_ARCHIVE / NFD_PAUSE_NAME override it."""
    env = os.environ

    def ask(*args: str) -> str:
        if not os.access(script, os.X_OK):
            raise ClusterError(f"{script} is missing: it builds the nfd and pause images")
        result = subprocess.run(
            [str(script), *args], stdout=subprocess.PIPE, text=True, check=False
        )
        lines = result.stdout.strip().splitlines()
        if result.returncode != 0 or not lines:
            raise ClusterError(f"`{script.name} {' '.join(args)}` failed ({result.returncode})")
        return lines[-1].strip()

    nfd_archive = env.get("NFD_IMAGE_ARCHIVE") or ask("build")
    pause_archive = env.get("NFD_PAUSE_ARCHIVE") or ask("pause")
    return Images(
        nfd_archive=Path(nfd_archive),
        nfd_name=env.get("NFD_IMAGE_NAME") or ask("name"),
        pause_archive=Path(pause_archive),
        pause_name=env.get("NFD_PAUSE_NAME") or ask("pause-name"),
    )


def _which(name: str, package: str) -> str:
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if path is None:
        raise ClusterError(f"{name} is not installed: run `make install` (Debian {package})")
    return path


def node_name() -> str:
    """The Node's name: this host's name if it is a valid one, else `nfd-node`."""
    name = socket.gethostname().lower()
    valid = all(part.isalnum() or "-" in part for part in name.split("."))
    return name if name and valid and len(name) <= 63 and name[0].isalnum() else "nfd-node"


@dataclass
class Cluster:
    """The one-node cluster whose state lives in `state_dir` (see the module docstring)."""

    state_dir: Path = DEFAULT_STATE_DIR

    @classmethod
    def from_env(cls) -> Cluster:
        return cls(Path(os.environ.get("NFD_CLUSTER_DIR", str(DEFAULT_STATE_DIR))))

    # ------------------------------------------------------------------------- paths

    @property
    def kubeconfig(self) -> Path:
        """The host's admin kubeconfig (https://127.0.0.1:<relay port>)."""
        return self.state_dir / "kubeconfig"

    @property
    def node_kubeconfig(self) -> Path:
        """The same identity for the components inside NETNS (https://NODE_IP:6443)."""
        return self.state_dir / "node.kubeconfig"

    @property
    def containerd_socket(self) -> Path:
        return self.state_dir / "containerd" / "containerd.sock"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def node(self) -> str:
        path = self.state_dir / "node-name"
        return path.read_text().strip() if path.exists() else node_name()

    @property
    def server(self) -> str:
        return json.loads(self.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]

    @property
    def token(self) -> str:
        return (self.state_dir / "token").read_text().strip()

    def _netns_path(self) -> str:
        return f"/run/netns/{NETNS}"

    def in_netns(self, argv: Sequence[str]) -> list[str]:
        """argv run inside NETNS only (mounts, PIDs and files stay the host's)."""
        return [_which("nsenter", "util-linux"), f"--net={self._netns_path()}", "--", *argv]

    # ------------------------------------------------------------------------- processes

    def _pid_file(self, name: str) -> Path:
        return self.state_dir / "pids" / name

    def pid(self, name: str) -> int | None:
        """The PID of component `name` if it is running (and still is that component: the
        recorded start time guards against a reused PID)."""
        try:
            pid, started = self._pid_file(name).read_text().split()[:2]
        except (FileNotFoundError, ValueError):
            return None
        state = _process_state(int(pid))
        if state is None or state[1] != started or state[0] in "ZX":
            return None
        return int(pid)

    def _spawn(self, name: str, argv: list[str]) -> int:
        """Start a daemon: own session, output to logs/<name>.log, PID in pids/<name>."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        with open(self.logs_dir / f"{name}.log", "ab") as out:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.state_dir,
            )
        state = _process_state(process.pid)
        started = state[1] if state else "gone"
        self._pid_file(name).parent.mkdir(exist_ok=True)
        self._pid_file(name).write_text(f"{process.pid}\n{started}\n")
        return process.pid

    def _alive(self, name: str) -> bool:
        if self.pid(name) is None:
            raise ClusterError(f"{name} exited:\n{self.logs([name])}")
        return True

    def stop_component(self, name: str, timeout: float = 20.0) -> None:
        """SIGTERM a component, SIGKILL it after `timeout`; wait until it is gone."""
        pid = self.pid(name)
        if pid is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            try:
                wait_until(lambda: self.pid(name) is None, timeout, f"{name} to stop")
                break
            except TimeoutError:
                continue
        self._pid_file(name).unlink(missing_ok=True)

    def start_component(self, name: str, timeout: float = 120.0) -> None:
        """Start a stopped component again with the arguments it was first started with."""
        argv = json.loads((self.state_dir / "argv" / f"{name}.json").read_text())
        self._spawn(name, argv)
        time.sleep(0.5)
        self._alive(name)

    def _start(self, name: str, argv: list[str]) -> None:
        (self.state_dir / "argv").mkdir(exist_ok=True)
        (self.state_dir / "argv" / f"{name}.json").write_text(json.dumps(argv))
        self._spawn(name, argv)

    def logs(self, names: Sequence[str] = COMPONENTS, lines: int = 30) -> str:
        return "".join(
            f"--- {name} ---\n{_tail(self.logs_dir / f'{name}.log', lines)}\n" for name in names
        )

    # ------------------------------------------------------------------------- status

    def running(self) -> bool:
        """Every component alive and the API server answering through the relay."""
        if not self.kubeconfig.exists():
            return False
        if any(self.pid(name) is None for name in COMPONENTS):
            return False
        return _http_ok(f"{self.server}/readyz", self.token)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = False, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(_cached_binary("kubectl")), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, check=False, timeout=timeout
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [_which("ctr", "containerd"), f"--address={self.containerd_socket}"]
        argv += ["--namespace=k8s.io", *args]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
        if check and result.returncode != 0:
            raise ClusterError(f"{' '.join(argv)}: {result.stderr.strip()}")
        return result

    # ------------------------------------------------------------------------- up

    def up(self, images: Images | None = None, timeout: float = 300.0) -> Path:
        """Bring the cluster up, or reuse the one running; import `images`; return the
        kubeconfig path."""
        if os.geteuid() != 0:
            raise ClusterError("a real node needs root (containerd, kubelet, a network namespace)")
        began = time.monotonic()
        if self.running():
            log.info("reusing the cluster in %s", self.state_dir)
        else:
            if self.state_dir.exists() or Path(self._netns_path()).exists():
                log.info("removing a cluster that is not fully running")
                self.down()
            try:
                self._bring_up(images.pause_name if images else "nfd-pause:latest", timeout)
            except (ClusterError, TimeoutError, OSError, subprocess.CalledProcessError) as err:
                message = f"the cluster did not come up: {err}\n{self.logs()}"
                self.down()
                raise ClusterError(message) from err
        if images is not None:
            self.import_images(images)
        log.info("cluster ready in %.1fs; kubeconfig %s", time.monotonic() - began, self.kubeconfig)
        return self.kubeconfig

    def _bring_up(self, sandbox_image: str, timeout: float) -> None:
        binaries = {
            name: str(_cached_binary(name))
            for name in (
                "etcd",
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kubelet",
                "kube-proxy",
                "coredns",
            )
        }
        for tool, package in (
            ("containerd", "containerd"),
            ("runc", "runc"),
            ("socat", "socat"),
            ("iptables", "iptables"),
            ("conntrack", "conntrack"),
        ):
            _which(tool, package)
        if not Path("/usr/lib/cni/bridge").exists():
            raise ClusterError(
                "/usr/lib/cni/bridge is missing: apt-get install containernetworking-plugins"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "node-name").write_text(node_name() + "\n")
        self._record_preexisting_cgroups()
        self._make_netns()
        pki = self._make_pki()
        token = secrets.token_hex(16)
        (self.state_dir / "token").write_text(token + "\n")
        (self.state_dir / "tokens.csv").write_text(
            f'{token},nfd-admin,nfd-admin,"system:masters"\n'
        )
        relay_port = _free_host_port()
        self._write_kubeconfig(self.kubeconfig, f"https://127.0.0.1:{relay_port}", token, pki)
        self._write_kubeconfig(
            self.node_kubeconfig, f"https://{NODE_IP}:{APISERVER_PORT}", token, pki
        )

        self._start("etcd", self.in_netns(self._etcd_argv(binaries["etcd"])))
        self._start("kube-apiserver", self.in_netns(self._apiserver_argv(binaries, pki)))
        relay_socket = self.state_dir / "apiserver.sock"
        self._start(
            "apiserver-relay-netns",
            self.in_netns(
                [
                    _which("socat", "socat"),
                    f"UNIX-LISTEN:{relay_socket},fork,unlink-early,mode=600",
                    f"TCP:{NODE_IP}:{APISERVER_PORT}",
                ]
            ),
        )
        self._start(
            "apiserver-relay-host",
            [
                _which("socat", "socat"),
                f"TCP-LISTEN:{relay_port},bind=127.0.0.1,fork,reuseaddr",
                f"UNIX-CONNECT:{relay_socket}",
            ],
        )
        wait_until(
            lambda: (
                all(self._alive(n) for n in COMPONENTS[:4])
                and _http_ok(f"{self.server}/readyz", token)
            ),
            timeout,
            "kube-apiserver /readyz through the relay",
            interval=0.5,
        )
        self._start("kube-controller-manager", self.in_netns(self._kcm_argv(binaries, pki)))
        self._start(
            "kube-scheduler",
            self.in_netns(
                [
                    binaries["kube-scheduler"],
                    f"--kubeconfig={self.node_kubeconfig}",
                    f"--authentication-kubeconfig={self.node_kubeconfig}",
                    f"--authorization-kubeconfig={self.node_kubeconfig}",
                    "--leader-elect=false",
                    "--bind-address=127.0.0.1",
                ]
            ),
        )
        config = self._containerd_config(normalized_reference(sandbox_image))
        containerd = _which("containerd", "containerd")
        self._start("containerd", self.in_netns([containerd, f"--config={config}"]))
        wait_until(
            lambda: self._alive("containerd") and self.ctr("version", check=False).returncode == 0,
            60,
            "containerd to answer",
        )
        self._start("coredns", self.in_netns(self._coredns_argv(binaries["coredns"])))
        self._start(
            "kube-proxy",
            self.in_netns([binaries["kube-proxy"], f"--config={self._kube_proxy_config()}"]),
        )
        self._write_cni_config()
        self._start("kubelet", self.in_netns(self._kubelet_argv(binaries["kubelet"])))
        self.wait_node_ready(timeout)
        wait_until(
            lambda: self.kubectl("get", "serviceaccount", "default").returncode == 0,
            60,
            "the default ServiceAccount",
        )

    def wait_node_ready(self, timeout: float = 120.0) -> None:
        wait_until(
            lambda: all(self._alive(n) for n in COMPONENTS) and self._node_ready(),
            timeout,
            f"node {self.node} to be Ready",
            interval=1.0,
        )

    def _node_ready(self) -> bool:
        result = self.kubectl(
            "get",
            "node",
            self.node,
            "-o",
            'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
        )
        return result.returncode == 0 and result.stdout.strip() == "True"

    def import_images(self, images: Images) -> None:
        """Import both archives into containerd's k8s.io namespace under the names the
        manifests (and containerd's sandbox_image) use."""
        for archive, name in (
            (images.pause_archive, images.pause_name),
            (images.nfd_archive, images.nfd_name),
        ):
            self.ctr("images", "import", "--no-unpack=false", str(archive))
            imported = normalized_reference(name)
            if not self.ctr("images", "ls", "-q", f"name=={imported}").stdout.strip():
                raise ClusterError(f"{archive} did not import as {imported}")

    # ------------------------------------------------------------------------- pieces

    def _make_netns(self) -> None:
        def ip(*args: str) -> None:
            subprocess.run(["ip", *args], check=True, capture_output=True)

        if not Path(self._netns_path()).exists():
            ip("netns", "add", NETNS)
        (self.state_dir / "netns").write_text(NETNS + "\n")
        ip("-n", NETNS, "link", "set", "lo", "up")
        # The node's address sits on the namespace's loopback device (this kernel has no dummy
        # links); it is not a loopback address, so pods and the kubelet can use it.
        addresses = subprocess.run(
            ["ip", "-n", NETNS, "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True
        ).stdout
        if f" {NODE_IP}/32 " not in addresses:
            ip("-n", NETNS, "addr", "add", f"{NODE_IP}/32", "dev", "lo")
        # The namespace has no default route: give processes in it (tests, CoreDNS's clients)
        # a route to the Service range, which kube-proxy's OUTPUT DNAT then redirects to a pod.
        routes = subprocess.run(
            ["ip", "-n", NETNS, "route", "show", SERVICE_CIDR], capture_output=True, text=True
        ).stdout
        if not routes.strip():
            ip("-n", NETNS, "route", "add", SERVICE_CIDR, "dev", "lo", "src", NODE_IP)
        # Pod -> Service -> pod on the same bridge needs the bridge's traffic to go through
        # iptables (kube-proxy's DNAT); both settings are per network namespace.
        subprocess.run(
            self.in_netns(
                [
                    "sysctl",
                    "-q",
                    "-w",
                    "net.ipv4.ip_forward=1",
                    "net.bridge.bridge-nf-call-iptables=1",
                    "net.ipv4.conf.all.route_localnet=1",
                ]
            ),
            check=True,
            capture_output=True,
        )

    def _make_pki(self) -> dict[str, Path]:
        """A CA, the API server's serving certificate (valid for every address it is reached
        by: the relay, NODE_IP, the kubernetes Service) and the service-account key."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        pki = self.state_dir / "pki"
        pki.mkdir(exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)

        def key_pem(key: rsa.RSAPrivateKey) -> bytes:
            return key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )

        def cert(subject: str, key: rsa.RSAPrivateKey, issuer: Any, signer: Any, ca: bool) -> Any:
            builder = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                .issuer_name(issuer)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            )
            if not ca:
                names = [
                    "kubernetes",
                    "kubernetes.default",
                    "kubernetes.default.svc",
                    f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
                    "localhost",
                ]
                addresses = ["127.0.0.1", NODE_IP, KUBERNETES_SERVICE_IP]
                builder = builder.add_extension(
                    x509.SubjectAlternativeName(
                        [x509.DNSName(n) for n in names]
                        + [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
                    ),
                    critical=False,
                )
            return builder.sign(signer, hashes.SHA256())

        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nfd-cluster-ca")])
        ca_cert = cert("nfd-cluster-ca", ca_key, ca_name, ca_key, ca=True)
        server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        server_cert = cert("kube-apiserver", server_key, ca_name, ca_key, ca=False)
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        paths = {
            "ca.crt": ca_cert.public_bytes(serialization.Encoding.PEM),
            "apiserver.crt": server_cert.public_bytes(serialization.Encoding.PEM),
            "apiserver.key": key_pem(server_key),
            "sa.key": key_pem(sa_key),
            "sa.pub": sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        }
        for name, data in paths.items():
            (pki / name).write_bytes(data)
            (pki / name).chmod(0o600)
        return {name.replace(".", "_"): pki / name for name in paths}

    def _write_kubeconfig(self, path: Path, server: str, token: str, pki: dict[str, Path]) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "nfd",
                    "cluster": {"server": server, "certificate-authority": str(pki["ca_crt"])},
                }
            ],
            "users": [{"name": "admin", "user": {"token": token}}],
            "contexts": [{"name": "nfd", "context": {"cluster": "nfd", "user": "admin"}}],
            "current-context": "nfd",
        }
        path.write_text(json.dumps(config, indent=2) + "\n")
        path.chmod(0o600)

    def _etcd_argv(self, etcd: str) -> list[str]:
        return [
            etcd,
            "--name=nfd-cluster",
            f"--data-dir={self.state_dir / 'etcd'}",
            "--listen-client-urls=http://127.0.0.1:2379",
            "--advertise-client-urls=http://127.0.0.1:2379",
            "--listen-peer-urls=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--initial-cluster=nfd-cluster=http://127.0.0.1:2380",
            "--unsafe-no-fsync=true",  # a throw-away test cluster
            "--log-level=warn",
        ]

    def _apiserver_argv(self, binaries: dict[str, str], pki: dict[str, Path]) -> list[str]:
        return [
            binaries["kube-apiserver"],
            "--etcd-servers=http://127.0.0.1:2379",
            "--bind-address=0.0.0.0",  # inside NETNS: its loopback, NODE_IP
            f"--advertise-address={NODE_IP}",
            f"--secure-port={APISERVER_PORT}",
            f"--tls-cert-file={pki['apiserver_crt']}",
            f"--tls-private-key-file={pki['apiserver_key']}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
            f"--service-account-key-file={pki['sa_pub']}",
            f"--service-account-signing-key-file={pki['sa_key']}",
            f"--token-auth-file={self.state_dir / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def _kcm_argv(self, binaries: dict[str, str], pki: dict[str, Path]) -> list[str]:
        return [
            binaries["kube-controller-manager"],
            f"--kubeconfig={self.node_kubeconfig}",
            f"--authentication-kubeconfig={self.node_kubeconfig}",
            f"--authorization-kubeconfig={self.node_kubeconfig}",
            # The default set: daemonset, deployment, replicaset, serviceaccount(-token),
            # garbage collector, namespace, endpoints/endpointslice, node lifecycle (the
            # kubelet heartbeats, so it lifts the not-ready taint), job, ...
            "--controllers=*",
            f"--service-account-private-key-file={pki['sa_key']}",
            f"--root-ca-file={pki['ca_crt']}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
        ]

    def _containerd_config(self, sandbox: str) -> Path:
        root = self.state_dir / "containerd"
        root.mkdir(exist_ok=True)
        path = root / "config.toml"
        path.write_text(
            f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{self.containerd_socket}.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{root / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox}"
  # No CAP_SYS_RESOURCE here: a negative oom_score_adj for the sandbox would kill runc.
  restrict_oom_score_adj = true
  # The pods' network namespaces live in our state directory, not /run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{self.state_dir / "cni" / "net.d"}"
"""
        )
        return path

    def _write_cni_config(self) -> None:
        conf_dir = self.state_dir / "cni" / "net.d"
        conf_dir.mkdir(parents=True, exist_ok=True)
        conflist = {
            "cniVersion": "0.4.0",
            "name": "nfd-pods",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.state_dir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (conf_dir / "10-nfd.conflist").write_text(json.dumps(conflist, indent=2) + "\n")

    def _coredns_argv(self, coredns: str) -> list[str]:
        # Only the cluster's own zones: no forwarding, so no query leaves NETNS.
        corefile = self.state_dir / "Corefile"
        corefile.write_text(
            f"""{CLUSTER_DOMAIN}:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {NODE_IP}
    errors
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {self.node_kubeconfig}
    }}
}}
.:53 {{
    bind {NODE_IP}
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""
        )
        return [coredns, "-conf", str(corefile)]

    def _kube_proxy_config(self) -> Path:
        path = self.state_dir / "kube-proxy.yaml"
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.node_kubeconfig)},
            "hostnameOverride": self.node,
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            # Leave the conntrack sysctls alone (not all are writable in a namespace).
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
        }
        path.write_text(json.dumps(config, indent=2) + "\n")
        return path

    def _kubelet_argv(self, kubelet: str) -> list[str]:
        root = self.state_dir / "kubelet"
        root.mkdir(exist_ok=True)
        resolv = self.state_dir / "resolv.conf"
        resolv.write_text(f"nameserver {NODE_IP}\n")  # no host resolver inside the pods
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "cgroupDriver": "cgroupfs",
            "failSwapOn": False,
            "failCgroupV1": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "authentication": {
                "anonymous": {"enabled": True},  # test cluster: kubectl logs/exec need no cert
                "webhook": {"enabled": False},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "clusterDNS": [NODE_IP],
            "clusterDomain": CLUSTER_DOMAIN,
            "resolvConf": str(resolv),
            "podLogsDir": str(self.state_dir / "pod-logs"),
            "healthzBindAddress": "127.0.0.1",
            "evictionHard": {
                "memory.available": "50Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            # Imported images cannot be pulled again: never garbage-collect them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "shutdownGracePeriod": "0s",
        }
        path = self.state_dir / "kubelet.yaml"
        path.write_text(json.dumps(config, indent=2) + "\n")
        return [
            kubelet,
            f"--config={path}",
            f"--kubeconfig={self.node_kubeconfig}",
            f"--root-dir={root}",
            f"--cert-dir={root / 'pki'}",
            f"--hostname-override={self.node}",
            f"--node-ip={NODE_IP}",
            "--v=1",
        ]

    def _record_preexisting_cgroups(self) -> None:
        """Remember which kubepods cgroups existed already, so down() removes only ours."""
        existing = [str(path) for path in Path("/sys/fs/cgroup").glob("*/kubepods")]
        existing += [str(p) for p in Path("/sys/fs/cgroup").glob("kubepods")]
        (self.state_dir / "preexisting-cgroups.json").write_text(json.dumps(existing))

    # ------------------------------------------------------------------------- down

    def down(self) -> None:
        """Stop and remove everything up() started; safe to run on a half-started cluster."""
        if not self.state_dir.exists() and not Path(self._netns_path()).exists():
            return
        # The kubelet first, so that it restarts nothing; then every container process. The
        # state is thrown away: a component gets 5 s to stop on SIGTERM, then SIGKILL.
        began = time.monotonic()
        self.stop_component("kubelet", timeout=5)
        pod_cgroups = self._our_kubepods_cgroups()
        _kill_cgroup_processes(pod_cgroups)
        for pid in _processes_mentioning(str(self.containerd_socket)):
            _kill(pid, signal.SIGKILL)  # containerd-shim-runc-v2 -address <our socket>
        for name in reversed(COMPONENTS):
            stopping = time.monotonic()
            self.stop_component(name, timeout=5)
            log.debug("%s stopped in %.1fs", name, time.monotonic() - stopping)
        # Every component names the state directory in its arguments: whatever is left
        # (a lost PID file, a crashed up()) is found by that.
        for pid in _processes_mentioning(f"{self.state_dir}/"):
            _kill(pid, signal.SIGKILL)
        _unmount_below(self.state_dir)
        _remove_cgroups(pod_cgroups)
        if Path(self._netns_path()).exists():
            subprocess.run(["ip", "netns", "delete", NETNS], check=False, capture_output=True)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        try:
            wait_until(lambda: not self.leftovers(pod_cgroups), 10, "the cluster to be gone")
        except TimeoutError:
            raise ClusterError(f"down left: {'; '.join(self.leftovers(pod_cgroups))}") from None
        log.info("cluster removed in %.1fs", time.monotonic() - began)

    def leftovers(self, cgroups: Sequence[Path] = ()) -> list[str]:
        """What of this cluster still exists on the host (empty after a clean down())."""
        found = [f"process {pid}" for pid in _processes_mentioning(f"{self.state_dir}/")]
        found += [f"mount {point}" for point in _mounts_below(self.state_dir)]
        found += [f"cgroup {group}" for group in cgroups if group.exists()]
        if Path(self._netns_path()).exists():
            found.append(f"network namespace {NETNS}")
        if self.state_dir.exists():
            found.append(f"directory {self.state_dir}")
        return found

    def _our_kubepods_cgroups(self) -> list[Path]:
        recorded = self.state_dir / "preexisting-cgroups.json"
        preexisting = set(json.loads(recorded.read_text())) if recorded.exists() else set()
        found = list(Path("/sys/fs/cgroup").glob("*/kubepods"))
        found += list(Path("/sys/fs/cgroup").glob("kubepods"))
        return [path for path in found if str(path) not in preexisting]


def _process_state(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks) of a process, from /proc/<pid>/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return fields[0], fields[19]


def _free_host_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _processes_mentioning(text: str) -> list[int]:
    """PIDs (not ours) with an argument that contains `text` (e.g. a shim's -address)."""
    wanted = os.fsencode(text)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            arguments = entry.joinpath("cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(wanted in argument for argument in arguments):
            found.append(int(entry.name))
    return found


def _cgroup_tree(root: Path) -> list[Path]:
    """`root` and every cgroup below it, deepest first."""
    return sorted((p for p in [root, *root.rglob("*")] if p.is_dir()), key=lambda p: -len(p.parts))


def _kill_cgroup_processes(roots: Sequence[Path]) -> None:
    for _ in range(20):
        pids = {
            int(line)
            for root in roots
            for group in _cgroup_tree(root)
            for line in _read_lines(group / "cgroup.procs")
        }
        if not pids:
            return
        for pid in pids:
            _kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def _remove_cgroups(roots: Sequence[Path]) -> None:
    for root in roots:
        for group in _cgroup_tree(root):
            try:
                group.rmdir()
            except OSError:
                pass


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []


def _mounts_below(directory: Path) -> list[str]:
    """Mount points at or below `directory`, deepest first."""
    prefix = str(directory)
    points = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # Field 5 is the mount point, with spaces etc. escaped as octal.
        point = line.split()[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            points.add(point)
    return sorted(points, key=len, reverse=True)


def _unmount_below(directory: Path) -> None:
    """Unmount everything at or below `directory` (lazily, so a busy mount does not stop the
    rest)."""
    for point in _mounts_below(directory):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.kube.cluster", description=__doc__)
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument(
        "--no-images",
        action="store_true",
        help="do not build or import the nfd and pause images (hack/image.sh)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[cluster] %(message)s", stream=sys.stderr)
    cluster = Cluster.from_env()
    try:
        if args.action == "down":
            cluster.down()
            log.info("cluster in %s removed", cluster.state_dir)
            return 0
        if args.action == "status":
            running = cluster.running()
            print("running" if running else "not running")
            return 0 if running else 1
        images = None if args.no_images else images_from_script()
        print(cluster.up(images))
        return 0
    except (ClusterError, ControlPlaneError) as err:
        log.error("%s", err)
        return 1


if __name__ == "__main__":
    sys.exit(main())
