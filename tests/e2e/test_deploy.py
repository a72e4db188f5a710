"""The deployment manifests on the real test control plane: every kustomize overlay, the
Helm chart (default and non-default values) and the TLS Secrets pass
`kubectl apply --dry-run=server` (admission, schema and defaulting by a real kube-apiserver),
and the default overlay, applied for real, puts a worker pod on every node, GPU-tainted
ones included.

The Prometheus Operator's ServiceMonitor/PodMonitor and OpenShift's SecurityContextConstraints
types do not exist on a plain kube-apiserver; minimal stand-in CRDs (tests/deploy/crds/) are
installed first so those overlays can be dry-run too.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import pytest

from tests.deploy.manifests import (
    NAMESPACE,
    OVERLAYS,
    REPO,
    TEST_CRDS,
    helm_template,
    kustomize,
    load_all,
)
from tests.kube.controlplane import ControlPlane, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(control_plane: ControlPlane) -> ControlPlane:
    """The control plane with the stand-in CRDs and the nfd namespace (a namespaced server
    dry run needs its namespace to exist)."""
    control_plane.kubectl("apply", "-f", str(TEST_CRDS), check=True)
    control_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/podmonitors.monitoring.coreos.com",
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
    """The NodeFeatureRule CRD for real (idempotent; other tests may have installed it)."""
    crd = REPO / "deploy" / "base" / "crd-nodefeaturerules.yaml"
    plane.kubectl("apply", "-f", str(crd), check=True)
    plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/nodefeaturerules.nfd.k8s-sigs.io",
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


def test_rbac_grants_the_master_exactly_what_it_uses(cluster: ControlPlane) -> None:
    """The base's RBAC applied for real (renamed, so no other test's objects are touched) and
    checked by the apiserver's RBAC authorizer, impersonating the two ServiceAccounts."""
    install_nfr_crd(cluster)
    suffix = secrets.token_hex(3)
    namespace = f"nfd-rbac-{suffix}"
    cluster.kubectl("create", "namespace", namespace, check=True)
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
    cluster.kubectl("apply", "-f", "-", input="\n---\n".join(map(json.dumps, objs)), check=True)

    def can(account: str, *args: str) -> bool:
        sa = f"system:serviceaccount:{namespace}:{account}"
        result = cluster.kubectl("auth", "can-i", "--as", sa, *args)
        assert result.stdout.strip() in ("yes", "no"), result.stderr
        return result.stdout.strip() == "yes"

    allowed = [
        ("get", "nodes"), ("list", "nodes"), ("watch", "nodes"), ("patch", "nodes"),
        ("update", "nodes"), ("patch", "nodes", "--subresource=status"),
        ("list", "nodefeaturerules.nfd.k8s-sigs.io"), ("watch", "nodefeaturerules.nfd.k8s-sigs.io"),
        ("create", "leases.coordination.k8s.io", "-n", namespace),
        ("update", "leases.coordination.k8s.io", "-n", namespace),
    ]  # fmt: skip
    denied = [
        ("delete", "nodes"), ("create", "nodes"), ("list", "secrets", "-A"), ("list", "pods"),
        ("create", "nodefeaturerules.nfd.k8s-sigs.io"),
        ("delete", "nodefeaturerules.nfd.k8s-sigs.io"),
        ("create", "leases.coordination.k8s.io", "-n", "kube-system"),
        ("update", "nodes", "--subresource=status"),
    ]  # fmt: skip
    for args in allowed:
        assert can("nfd-master", *args), f"nfd-master cannot {args}"
    for args in denied:
        assert not can("nfd-master", *args), f"nfd-master can {args}"
    for args in allowed + denied:
        assert not can("nfd-worker", *args), f"nfd-worker can {args}"
