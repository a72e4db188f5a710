"""The Helm chart: lints, renders with default and non-default values, and with the defaults
renders the same objects as deploy/overlays/default."""

from __future__ import annotations

import subprocess
from typing import Any

import yaml

from tests.deploy.manifests import (
    CHART,
    REPO,
    container,
    find,
    helm,
    helm_template,
    host_mounts,
    load_all,
    objects,
    pod_spec,
    run,
)

NON_DEFAULT = (
    "--set",
    "tls.enabled=true,openshift.enabled=true,master.replicaCount=2,gpu.marking=false,"
    "prometheus.serviceMonitor.enabled=true,image.repository=registry.example.com/nfd,"
    "image.tag=9.9.9",
    "--set-json",
    'worker.config={"core":{"sleepInterval":"30s"},"sources":{"pci":{"deviceLabelFields":["vendor"]}}}',
    "--set-json",
    'worker.tolerations=[{"key":"nvidia.com/gpu","operator":"Exists","effect":"NoSchedule"}]',
    "--set-json",
    'master.resources={"requests":{"cpu":"200m","memory":"256Mi"},"limits":{"memory":"1Gi"}}',
)


def identity(obj: dict[str, Any]) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def test_helm_lint() -> None:
    out = run([helm(), "lint", "--strict", CHART])
    assert "0 chart(s) failed" in out
    run([helm(), "lint", "--strict", CHART, *NON_DEFAULT])


def test_default_values_render_the_default_overlay() -> None:
    chart = load_all(helm_template())
    overlay = [o for o in objects("default") if o["kind"] != "Namespace"]
    # Helm installs into an existing (or --create-namespace) namespace instead.
    assert sorted(map(identity, chart)) == sorted(map(identity, overlay))
    for kind, name in (("Deployment", "nfd-master"), ("DaemonSet", "nfd-worker")):
        ours, theirs = find(chart, kind, name), find(overlay, kind, name)
        assert host_mounts(ours) == host_mounts(theirs)
        spec, expected = pod_spec(ours), pod_spec(theirs)
        for key in ("securityContext", "tolerations", "serviceAccountName", "affinity"):
            assert spec.get(key) == expected.get(key), key
        c, e = container(ours), container(theirs)
        for key in ("command", "args", "env", "ports", "resources", "securityContext", "image"):
            assert c.get(key) == e.get(key), f"{kind}: {key}"
        for key in ("livenessProbe", "readinessProbe"):
            assert c.get(key) == e.get(key), key
        assert ours["spec"]["selector"] == theirs["spec"]["selector"]
    for kind, name in (
        ("ClusterRole", "nfd-master"),
        ("Role", "nfd-master"),
        ("ClusterRoleBinding", "nfd-master"),
        ("RoleBinding", "nfd-master"),
        ("Role", "nfd-worker"),
        ("RoleBinding", "nfd-worker"),
    ):
        assert find(chart, kind, name).get("rules") == find(overlay, kind, name).get("rules")
        assert find(chart, kind, name).get("subjects") == find(overlay, kind, name).get("subjects")
    assert (
        find(chart, "Service", "nfd-master")["spec"]
        == find(overlay, "Service", "nfd-master")["spec"]
    )
    assert (
        find(chart, "ConfigMap", "nfd-master-conf")["data"]
        == find(overlay, "ConfigMap", "nfd-master-conf")["data"]
    )
    # The worker config means the same (all defaults), though the overlay's is commented.
    for objs in (chart, overlay):
        text = find(objs, "ConfigMap", "nfd-worker-conf")["data"]["nfd-worker.conf"]
        assert not yaml.safe_load(text)
    for plural in ("nodefeatures", "nodefeaturerules", "nodefeaturegroups"):
        crd = REPO / "deploy" / "base" / f"crd-{plural}.yaml"
        assert find(chart, "CustomResourceDefinition", f"{plural}.nfd.k8s-sigs.io") == (
            yaml.safe_load(crd.read_text())
        )


def test_non_default_values() -> None:
    objs = load_all(helm_template(*NON_DEFAULT))
    master = find(objs, "Deployment", "nfd-master")
    c = container(master)
    assert master["spec"]["replicas"] == 2
    assert "--enable-leader-election" in c["args"] and "--enable-gpu-marking=false" in c["args"]
    assert c["image"] == "registry.example.com/nfd:9.9.9"
    # Helm merges maps with the defaults: the CPU limit stays.
    assert c["resources"] == {
        "requests": {"cpu": "200m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    # OpenShift's restricted-v2 SCC assigns the master's UID and fsGroup.
    assert "runAsUser" not in pod_spec(master)["securityContext"]
    assert "fsGroup" not in pod_spec(master)["securityContext"]
    worker = find(objs, "DaemonSet", "nfd-worker")
    assert pod_spec(worker)["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    conf = yaml.safe_load(find(objs, "ConfigMap", "nfd-worker-conf")["data"]["nfd-worker.conf"])
    assert conf == {
        "core": {"sleepInterval": "30s"},
        "sources": {"pci": {"deviceLabelFields": ["vendor"]}},
    }
    scc = find(objs, "SecurityContextConstraints", "nfd-worker")
    assert {p["pathPrefix"] for p in scc["allowedHostPaths"]} == set(host_mounts(worker))
    assert all(p["readOnly"] for p in scc["allowedHostPaths"])
    find(objs, "ServiceMonitor", "nfd-master")
    find(objs, "PodMonitor", "nfd-worker")
    secrets = {v["secret"]["secretName"] for v in pod_spec(worker)["volumes"] if "secret" in v}
    assert secrets == {"nfd-worker-certs"}


def test_helm_build_script_reuses_its_cache() -> None:
    result = subprocess.run(
        [str(REPO / "hack" / "helm.sh"), "build"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "cached" in result.stderr
    version = run([helm(), "version", "--short"])
    assert version.startswith("v3.")
