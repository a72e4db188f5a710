"""The deployment manifests on the real test control plane: every kustomize overlay, the
Helm chart (default and non-default values) and the TLS Secrets pass
`kubectl apply --dry-run=server` (admission, schema and defaulting by a real kube-apiserver),
and the default overlay, applied for real, puts a worker pod on every node, GPU-tainted
ones included.

The Prometheus Operator's ServiceMonitor/PodMonitor/PrometheusRule and OpenShift's
SecurityContextConstraints types do not exist on a plain kube-apiserver; minimal stand-in
CRDs (tests/deploy/crds/) are installed first so those overlays can be dry-run too.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import (
    NAMESPACE,
    OVERLAYS,
    REPO,
    TEST_CRDS,
    helm_template,
    kustomize,
    load_all,
)
from tests.kube.controlplane import ControlPlane, _http_ok, free_port, wait_until

pytestmark = pytest.mark.e2e

# A captured host with an NVIDIA data-centre GPU (tests/golden/host_full.py makes it).
HOST_TREE = REPO / "tests" / "fixtures" / "host-full"


@pytest.fixture(scope="module")
def cluster(control_plane: ControlPlane) -> ControlPlane:
    """The control plane with the stand-in CRDs and the nfd namespace (a namespaced server
    dry run needs its namespace to exist)."""
    control_plane.kubectl("apply", "-f", str(TEST_CRDS), check=True)
    control_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/podmonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
        "crd/securitycontextconstraints.security.openshift.io",
        check=True,
    )  # fmt: skip
    namespaces = {
        o["metadata"]["name"]: o
        for overlay in OVERLAYS
        for o in load_all(kustomize(overlay))
        if o["kind"] == "Namespace"
    }
    assert NAMESPACE in namespaces
    for namespace in namespaces.values():
        control_plane.kubectl("apply", "-f", "-", input=json.dumps(namespace), check=True)
    return control_plane


def install_nfr_crd(plane: ControlPlane) -> None:
    """The NodeFeatureRule CRD, and NodeFeature's and NodeFeatureGroup's, for real
    (idempotent; other tests may have installed them)."""
    plurals = ("nodefeaturerules", "nodefeatures", "nodefeaturegroups")
    for plural in plurals:
        crd = REPO / "deploy" / "base" / f"crd-{plural}.yaml"
        plane.kubectl("apply", "-f", str(crd), check=True)
    plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        *(f"crd/{plural}.nfd.k8s-sigs.io" for plural in plurals),
        check=True,
    )  # fmt: skip


def dry_run(plane: ControlPlane, manifests: str) -> str:
    result = plane.kubectl("apply", "--dry-run=server", "-f", "-", input=manifests)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_passes_server_dry_run(cluster: ControlPlane, overlay: str) -> None:
    manifests = kustomize(overlay)
    out = dry_run(cluster, manifests)
    # Every object was accepted (one line each).
    assert out.count("(server dry run)") == len(load_all(manifests))


def test_helm_chart_passes_server_dry_run(cluster: ControlPlane) -> None:
    default = helm_template()
    assert dry_run(cluster, default).count("(server dry run)") == len(load_all(default))
    custom = helm_template(
        "--set",
        "tls.enabled=true,openshift.enabled=true,master.replicaCount=3,gpu.marking=false,"
        "prometheus.serviceMonitor.enabled=true,master.enableTaints=true",
        "--set-json",
        'worker.config={"core":{"labelWhiteList":"^cpu"},"sources":{"local":{"hooksEnabled":false}}}',
    )
    assert dry_run(cluster, custom).count("(server dry run)") == len(load_all(custom))


def test_tls_secrets_pass_server_dry_run(cluster: ControlPlane, tmp_path: Path) -> None:
    out = tmp_path / "certs"
    subprocess.run(
        [str(REPO / "hack" / "make-certs.sh"), "--out", str(out), "node-a", "node-b"],
        check=True,
        capture_output=True,
    )
    assert "secret/nfd-worker-certs created" in dry_run(cluster, (out / "secrets.yaml").read_text())


def test_a_malformed_object_is_refused(cluster: ControlPlane) -> None:
    """The dry run is a real check: a Deployment the apiserver cannot accept fails."""
    broken = kustomize("default").replace("containerPort: 8081", "containerPort: 99999")
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=broken)
    assert result.returncode != 0 and "containerPort" in result.stderr


def test_worker_daemonset_lands_on_every_node(controller_manager: ControlPlane) -> None:
    """Applied for real (in a namespace of its own, so other tests' pods are not touched): the
    DaemonSet controller creates a worker pod for every node, tainted GPU and control-plane
    nodes included, with the host mounts and NODE_NAME in place."""
    plane = controller_manager
    suffix = secrets.token_hex(3)
    namespace = f"nfd-deploy-{suffix}"
    manifests = (
        kustomize("default")
        .replace(f"namespace: {NAMESPACE}", f"namespace: {namespace}")
        .replace(f"name: {NAMESPACE}\n", f"name: {namespace}\n")
    )
    nodes = {
        f"plain-{suffix}": [],
        f"gpu-{suffix}": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
        f"cp-{suffix}": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}],
        f"drain-{suffix}": [{"key": "example.com/maintenance", "effect": "NoExecute"}],
    }
    for name, taints in nodes.items():
        plane.register_node(name, taints=taints)
    try:
        objs = [o for o in load_all(manifests) if o["kind"] != "CustomResourceDefinition"]
        result = plane.kubectl("apply", "-f", "-", input="\n---\n".join(map(json.dumps, objs)))
        assert result.returncode == 0, result.stderr

        def pods_by_node() -> dict[str, dict[str, object]] | None:
            pods = plane.core.list_namespaced_pod(
                namespace, label_selector="app.kubernetes.io/component=worker"
            ).items
            placed = {}
            for pod in pods:
                # The DaemonSet controller pins each pod to its node by a matchFields term.
                required = pod.spec.affinity.node_affinity
                terms = required.required_during_scheduling_ignored_during_execution
                node = terms.node_selector_terms[0].match_fields[0].values[0]
                placed[node] = pod
            return placed if set(nodes) <= set(placed) else None

        placed = wait_until(pods_by_node, 60, "a worker pod on every test node")
        pod = placed[f"gpu-{suffix}"]
        c = pod.spec.containers[0]
        assert "--host-prefix=/host-" in c.args
        mounts = {m.mount_path: m.read_only for m in c.volume_mounts}
        assert mounts["/host-sys"] is True and mounts["/host-proc"] is True
        assert c.env[0].name == "NODE_NAME"
        assert pod.spec.security_context.run_as_non_root is True
    finally:
        for name in nodes:
            plane.delete_node(name, wait=False)
        plane.kubectl("delete", "daemonset", "nfd-worker", "-n", namespace, "--wait=false")


def test_the_rule_in_docs_deploy_md_is_accepted_by_the_crd(cluster: ControlPlane) -> None:
    """The NodeFeatureRule example users copy from docs/deploy.md passes the CRD's schema."""
    install_nfr_crd(cluster)
    text = (REPO / "docs" / "deploy.md").read_text()
    start = text.index("apiVersion: nfd.k8s-sigs.io/v1alpha1")
    rule = text[start : text.index("```", start)]
    assert "nodefeaturerule.nfd.k8s-sigs.io/example-accelerators created" in dry_run(cluster, rule)
    broken = rule.replace("op: Exists", "op: Sometimes", 1)
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=broken)
    assert result.returncode != 0, "the CRD accepted an unknown operator"


def test_upstream_v019_default_overlay_with_our_image_passes_server_dry_run(
    cluster: ControlPlane, tmp_path: Path
) -> None:
    """Upstream v0.19.0's own deployment/overlays/default (from its Go module), with only
    the image replaced by ours through a kustomize overlay on top, is accepted object by
    object: its CRDs are ours (same schema), its RBAC, Deployments and DaemonSet too."""
    from tests.compat.upstream import current_deployment
    from tests.deploy.manifests import kubectl, run

    tree = tmp_path / "deployment"
    shutil.copytree(current_deployment(), tree)
    ours = yaml.safe_load((REPO / "deploy" / "base" / "kustomization.yaml").read_text())
    image = ours["images"][0]
    overlay = tree / "overlays" / "our-image"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["../default"],
                "images": [
                    {
                        "name": "registry.k8s.io/nfd/node-feature-discovery",
                        "newName": image["newName"],
                        "newTag": image["newTag"],
                    }
                ],
            }
        )
    )
    manifests = run([kubectl(), "kustomize", overlay])
    objs = load_all(manifests)
    upstream_objs = load_all(run([kubectl(), "kustomize", tree / "overlays" / "default"]))
    # Only the image differs from upstream's own build of the overlay.
    assert len(objs) == len(upstream_objs)
    images = set()
    for mine, theirs in zip(objs, upstream_objs, strict=True):
        for c in (mine.get("spec", {}).get("template", {}).get("spec", {}) or {}).get(
            "containers", []
        ):
            images.add(c["image"])
        assert json.dumps(mine, sort_keys=True).replace(
            f"{image['newName']}:{image['newTag']}", "IMAGE"
        ) == json.dumps(theirs, sort_keys=True).replace(
            "registry.k8s.io/nfd/node-feature-discovery:v0.19.0", "IMAGE"
        )
    assert images == {f"{image['newName']}:{image['newTag']}"}
    kinds = {o["kind"] for o in objs}
    assert {"CustomResourceDefinition", "Deployment", "DaemonSet", "ClusterRole"} <= kinds
    out = dry_run(cluster, manifests)
    assert out.count("(server dry run)") == len(objs)
    # Our manifests' CRDs are the same objects: applying ours after upstream's changes no
    # schema (the server-side dry run of ours against upstream's is a no-op on the spec).
    for crd in (o for o in objs if o["kind"] == "CustomResourceDefinition"):
        plural = crd["spec"]["names"]["plural"]
        assert f"customresourcedefinition.apiextensions.k8s.io/{plural}.nfd.k8s-sigs.io" in out


def apply_rbac_renamed(plane: ControlPlane, prefix: str) -> str:
    """Apply the base's ServiceAccounts and RBAC for real in a new namespace, with the
    cluster-scoped objects renamed, so no other test's objects are touched; return the
    namespace."""
    suffix = secrets.token_hex(3)
    namespace = f"{prefix}-{suffix}"
    plane.kubectl("create", "namespace", namespace, check=True)
    objs = []
    for obj in load_all(kustomize("default")):
        if obj["kind"] not in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                               "RoleBinding"):  # fmt: skip
            continue
        meta = obj["metadata"]
        if "namespace" in meta:
            meta["namespace"] = namespace
        if obj["kind"].startswith("Cluster"):
            meta["name"] = f"{meta['name']}-{suffix}"
        if obj["kind"] == "ClusterRoleBinding":
            obj["roleRef"]["name"] = f"{obj['roleRef']['name']}-{suffix}"
        for subject in obj.get("subjects", []):
            subject["namespace"] = namespace
        objs.append(obj)
    plane.kubectl("apply", "-f", "-", input="\n---\n".join(map(json.dumps, objs)), check=True)
    return namespace


def test_rbac_grants_the_master_exactly_what_it_uses(cluster: ControlPlane) -> None:
    """The base's RBAC applied for real (renamed, so no other test's objects are touched) and
    checked by the apiserver's RBAC authorizer, impersonating the two ServiceAccounts."""
    install_nfr_crd(cluster)
    namespace = apply_rbac_renamed(cluster, "nfd-rbac")

    def can(account: str, *args: str) -> bool:
        sa = f"system:serviceaccount:{namespace}:{account}"
        result = cluster.kubectl("auth", "can-i", "--as", sa, *args)
        assert result.stdout.strip() in ("yes", "no"), result.stderr
        return result.stdout.strip() == "yes"

    allowed = [
        ("get", "nodes"), ("list", "nodes"), ("watch", "nodes"), ("patch", "nodes"),
        ("update", "nodes"), ("patch", "nodes", "--subresource=status"),
        ("list", "nodefeaturerules.nfd.k8s-sigs.io"), ("watch", "nodefeaturerules.nfd.k8s-sigs.io"),
        ("list", "nodefeatures.nfd.k8s-sigs.io", "-A"),
        ("watch", "nodefeatures.nfd.k8s-sigs.io", "-A"),
        ("get", "nodefeatures.nfd.k8s-sigs.io", "-n", "gpu-operator"),
        ("list", "nodefeaturegroups.nfd.k8s-sigs.io", "-A"),
        ("patch", "nodefeaturegroups.nfd.k8s-sigs.io", "--subresource=status", "-n", namespace),
        ("update", "nodefeaturegroups.nfd.k8s-sigs.io", "--subresource=status", "-n", namespace),
        ("create", "leases.coordination.k8s.io", "-n", namespace),
        ("update", "leases.coordination.k8s.io", "-n", namespace),
    ]  # fmt: skip
    denied = [
        ("delete", "nodes"), ("create", "nodes"), ("list", "secrets", "-A"), ("list", "pods"),
        ("create", "nodefeaturerules.nfd.k8s-sigs.io"),
        ("delete", "nodefeaturerules.nfd.k8s-sigs.io"),
        ("create", "leases.coordination.k8s.io", "-n", "kube-system"),
        ("update", "nodes", "--subresource=status"),
        ("create", "nodefeatures.nfd.k8s-sigs.io", "-n", namespace),
        ("patch", "nodefeaturegroups.nfd.k8s-sigs.io", "-n", namespace),
    ]  # fmt: skip
    for args in allowed:
        assert can("nfd-master", *args), f"nfd-master cannot {args}"
    for args in denied:
        assert not can("nfd-master", *args), f"nfd-master can {args}"
    # The worker: its own namespace's NodeFeatures (NodeFeature mode) and reading its own
    # Pod (DaemonSet owner reference), as upstream v0.19's Role; nothing else.
    worker_allowed = [
        *(
            (verb, "nodefeatures.nfd.k8s-sigs.io", "-n", namespace)
            for verb in ("create", "get", "update", "delete")
        ),
        ("get", "pods", "-n", namespace),
    ]
    for args in worker_allowed:
        assert can("nfd-worker", *args), f"nfd-worker cannot {args}"
    worker_denied = [
        ("create", "nodefeatures.nfd.k8s-sigs.io", "-n", "default"),
        ("list", "nodefeatures.nfd.k8s-sigs.io", "-A"),
        ("patch", "nodefeatures.nfd.k8s-sigs.io", "-n", namespace),
        ("get", "pods", "-n", "default"),
        ("create", "nodefeaturerules.nfd.k8s-sigs.io"),
    ]
    for args in [a for a in allowed + denied + worker_denied if a not in worker_allowed]:
        assert not can("nfd-worker", *args), f"nfd-worker can {args}"


def _expand(args: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' $(VAR) expansion of container args."""
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in args]


def _replace_flag(args: list[str], flag: str, value: str) -> list[str]:
    out = [a for a in args if not a.startswith(flag + "=")]
    return [*out, f"{flag}={value}"]


CERTS_MOUNT = "/etc/kubernetes/node-feature-discovery/certs"


def secret_volume(secret: dict[str, object], where: Path) -> Path:
    """Lay a Secret's keys out as files, as the kubelet does for a secret volume."""
    where.mkdir(parents=True)
    data = secret["data"]
    assert isinstance(data, dict)
    for key, value in data.items():
        (where / key).write_bytes(base64.b64decode(value))
    return where


@pytest.mark.parametrize("overlay", ["default", "tls", "gpu"])
def test_the_overlay_runs_with_its_own_rbac_and_config(
    cluster: ControlPlane, tmp_path: Path, overlay: str
) -> None:
    """nfd-master and nfd-worker started with exactly the args, ConfigMap values, worker
    config (and, for tls, Secrets made by hack/make-certs.sh) of the overlay, the master
    authenticated as the nfd-master ServiceAccount (so with nothing but the manifests' RBAC):
    a node gets its labels and the GPU marking. Only what a pod would get from Kubernetes is
    substituted: the host tree, the master's address, free ports, the API server's address
    and where the Secret volumes are."""
    install_nfr_crd(cluster)
    namespace = apply_rbac_renamed(cluster, "nfd-run")
    node = f"deploy-run-{secrets.token_hex(3)}"
    cluster.register_node(node)
    objs = load_all(kustomize(overlay))

    def named(kind: str, name: str) -> dict[str, Any]:
        return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)

    master_conf = named("ConfigMap", "nfd-master-conf")["data"]
    worker_conf = named("ConfigMap", "nfd-worker-conf")["data"]
    master_c = named("Deployment", "nfd-master")["spec"]["template"]["spec"]["containers"][0]
    worker_c = named("DaemonSet", "nfd-worker")["spec"]["template"]["spec"]["containers"][0]
    master_certs = worker_certs = CERTS_MOUNT
    if overlay == "tls":
        out = tmp_path / "certs"
        subprocess.run(
            [str(REPO / "hack" / "make-certs.sh"), "--out", str(out), node],
            check=True,
            capture_output=True,
        )
        made = {
            d["metadata"]["name"]: d for d in yaml.safe_load_all((out / "secrets.yaml").read_text())
        }
        master_certs = str(secret_volume(made["nfd-master-cert"], tmp_path / "master-certs"))
        worker_certs = str(secret_volume(made["nfd-worker-certs"], tmp_path / "worker-certs"))

    # The in-cluster identity of the master pod: its ServiceAccount's token.
    token = cluster.kubectl(
        "create", "token", "nfd-master", "-n", namespace, "--duration=1h", check=True
    ).stdout.strip()
    kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())
    kubeconfig["users"] = [{"name": "nfd-master", "user": {"token": token}}]
    kubeconfig["contexts"][0]["context"]["user"] = "nfd-master"
    sa_kubeconfig = tmp_path / "nfd-master.kubeconfig"
    sa_kubeconfig.write_text(json.dumps(kubeconfig))

    port, metrics = free_port(), free_port()
    master_args = _expand(master_c["args"], master_conf)
    master_args = [a.replace(CERTS_MOUNT, master_certs) for a in master_args]
    master_args = _replace_flag(master_args, "--port", str(port))
    master_args = _replace_flag(master_args, "--metrics", str(metrics))
    bin_dir = Path(sys.executable).parent
    log = (tmp_path / "master.log").open("wb")
    master = subprocess.Popen(
        [str(bin_dir / master_c["command"][0]), *master_args, f"--kubeconfig={sa_kubeconfig}",
         f"--namespace={namespace}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until(
            lambda: master.poll() is None and _http_ok(f"http://127.0.0.1:{metrics}/healthz"),
            60,
            "nfd-master /healthz",
        )
        conf = tmp_path / "nfd-worker.conf"
        conf.write_text(worker_conf["nfd-worker.conf"])
        worker_args = _expand(worker_c["args"], {"NODE_NAME": node})
        worker_args = [a.replace(CERTS_MOUNT, worker_certs) for a in worker_args]
        # The master certificate names nfd-master, localhost and 127.0.0.1.
        worker_args = _replace_flag(worker_args, "--server", f"127.0.0.1:{port}")
        worker_args = _replace_flag(worker_args, "--host-prefix", f"{HOST_TREE}/")
        worker_args = _replace_flag(worker_args, "--config", str(conf))
        worker_args = _replace_flag(worker_args, "--metrics", "0")
        worker = subprocess.run(
            [str(bin_dir / worker_c["command"][0]), "--oneshot", *worker_args],
            env={"NODE_NAME": node, "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert worker.returncode == 0, worker.stderr

        def labelled() -> dict[str, str] | None:
            labels = cluster.core.read_node(node).metadata.labels or {}
            return labels if "nvidia.com/gpu.present" in labels else None

        labels = wait_until(labelled, 60, f"labels on {node}")
        assert labels["feature.node.kubernetes.io/system-os_release.ID"] == "ubuntu"
        # The gpu overlay uses the GPU Operator's vendor-only PCI label names.
        pci = "pci-10de.present" if overlay == "gpu" else "pci-0302_10de.present"
        assert labels[f"feature.node.kubernetes.io/{pci}"] == "true"
        assert labels["nvidia.com/gpu.present"] == "true"
        assert labels["nvidia.com/gpu.deploy.driver"] == "true"
    finally:
        master.terminate()
        master.wait(15)
        log.close()
        cluster.delete_node(node, wait=False)
    master_log = (tmp_path / "master.log").read_text()
    assert "Forbidden" not in master_log
    if overlay == "tls":
        assert "(mTLS)" in master_log
