"""The kustomize base and overlays: what an operator applies, checked object by object."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from nfd.sources import SOURCE_NAMES, get_source
from nfd.worker.config import build_config, parse_config_text
from tests.deploy.manifests import (
    DEPLOY,
    NAMESPACE,
    OVERLAYS,
    container,
    find,
    host_mounts,
    objects,
    pod_spec,
)

# host path -> mount path: what the worker reads, under --host-prefix=/host-.
WORKER_HOST_MOUNTS = {
    "/sys": "/host-sys",
    "/proc": "/host-proc",
    "/etc/os-release": "/host-etc/os-release",
    "/boot": "/host-boot",
    "/lib/modules": "/host-lib/modules",
    "/usr/lib": "/host-usr/lib",
    "/usr/share": "/host-usr/share",
    "/etc/kubernetes/node-feature-discovery/features.d": (
        "/etc/kubernetes/node-feature-discovery/features.d"
    ),
    "/etc/kubernetes/node-feature-discovery/source.d": (
        "/etc/kubernetes/node-feature-discovery/source.d"
    ),
    "/etc/kubernetes/node-feature-discovery/custom.d": (
        "/etc/kubernetes/node-feature-discovery/custom.d"
    ),
}


def rules(obj: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    """(apiGroup, resource, resourceName, verb) for every rule of a Role/ClusterRole."""
    out = set()
    for rule in obj["rules"]:
        for group in rule.get("apiGroups", []):
            for resource in rule["resources"]:
                for name in rule.get("resourceNames", ["*"]):
                    for verb in rule["verbs"]:
                        out.add((group, resource, name, verb))
    return out


def assert_hardened(spec: dict[str, Any]) -> None:
    """Non-root, no privileges, no host namespaces, read-only root filesystem."""
    assert spec["securityContext"]["runAsNonRoot"] is True
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key), key
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert not sc.get("privileged")
        assert c["resources"]["requests"] and c["resources"]["limits"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_builds_and_is_namespaced(overlay: str) -> None:
    objs = objects(overlay)
    ns = find(objs, "Namespace", NAMESPACE)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    cluster_scoped = {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "SecurityContextConstraints",
    }
    for obj in objs:
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"].get("namespace"), f"{obj['kind']}/{obj['metadata']['name']}"
    for plural in ("nodefeatures", "nodefeaturerules", "nodefeaturegroups"):
        find(objs, "CustomResourceDefinition", f"{plural}.nfd.k8s-sigs.io")


def test_master_rbac_is_least_privilege() -> None:
    objs = objects("default")
    assert rules(find(objs, "ClusterRole", "nfd-master")) == {
        *{("", "nodes", "*", v) for v in ("get", "list", "watch", "patch", "update")},
        ("", "nodes/status", "*", "patch"),
        # restrictions.nodeFeatureNamespaceSelector, as upstream v0.19's ClusterRole.
        *{("", "namespaces", "*", v) for v in ("list", "watch")},
        *{
            ("nfd.k8s-sigs.io", resource, "*", v)
            for resource in ("nodefeatures", "nodefeaturerules", "nodefeaturegroups")
            for v in ("get", "list", "watch")
        },
        *{("nfd.k8s-sigs.io", "nodefeaturegroups/status", "*", v) for v in ("update", "patch")},
        ("nfd.k8s-sigs.io", "nodefeatures", "*", "delete"),
    }
    role = find(objs, "Role", "nfd-master")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert {r[:2] for r in rules(role)} == {("coordination.k8s.io", "leases"), ("", "events")}
    assert {r[3] for r in rules(role) if r[1] == "events"} == {"create"}
    for binding in (
        find(objs, "ClusterRoleBinding", "nfd-master"),
        find(objs, "RoleBinding", "nfd-master"),
    ):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "nfd-master", "namespace": NAMESPACE}
        ]
    # The worker may write NodeFeatures in its own namespace (NodeFeature mode) and read
    # its own Pod (DaemonSet owner reference), as upstream v0.19's Role; nothing else.
    find(objs, "ServiceAccount", "nfd-worker")
    worker_role = find(objs, "Role", "nfd-worker")
    assert worker_role["metadata"]["namespace"] == NAMESPACE
    assert rules(worker_role) == {
        *(
            ("nfd.k8s-sigs.io", "nodefeatures", "*", v)
            for v in ("create", "get", "update", "delete")
        ),
        ("", "pods", "*", "get"),
    }
    bound = set()
    for obj in objs:
        for subject in obj.get("subjects", []):
            if subject["name"] == "nfd-worker":
                bound.add((obj["kind"], obj["roleRef"]["kind"], obj["roleRef"]["name"]))
    assert bound == {("RoleBinding", "Role", "nfd-worker")}


def test_master_deployment() -> None:
    objs = objects("default")
    master = find(objs, "Deployment", "nfd-master")
    spec = pod_spec(master)
    assert spec["serviceAccountName"] == "nfd-master"
    assert_hardened(spec)
    c = container(master, "nfd-master")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": 8080, "metrics": 8081}
    assert "--port=8080" in c["args"] and "--metrics=8081" in c["args"]
    assert "--enable-gpu-marking" in c["args"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["port"] == "metrics"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    service = find(objs, "Service", "nfd-master")
    labels = spec_labels = master["spec"]["template"]["metadata"]["labels"]
    assert all(spec_labels.get(k) == v for k, v in service["spec"]["selector"].items())
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == ports
    assert labels


def test_master_flag_values_come_from_its_configmap() -> None:
    objs = objects("default")
    conf = find(objs, "ConfigMap", "nfd-master-conf")["data"]
    c = container(find(objs, "Deployment", "nfd-master"))
    env = {e["name"]: e.get("valueFrom", {}) for e in c["env"]}
    used = set()
    for arg in c["args"]:
        for var in re.findall(r"\$\((\w+)\)", arg):
            assert var in env, f"{arg}: no env {var}"
            used.add(var)
    from_conf = {
        name: ref["configMapKeyRef"]["key"] for name, ref in env.items() if "configMapKeyRef" in ref
    }
    assert set(from_conf.values()) == set(conf) == used
    # Every key is documented by a comment right above it in the source file.
    text = (DEPLOY / "base" / "master-config.yaml").read_text()
    for key in conf:
        above = text.split(f"\n  {key}:")[0].rstrip().splitlines()[-1]
        assert above.strip().startswith("#"), f"{key} has no comment"
    # Every flag nfd-master has is documented there.
    from nfd.cli.master import build_parser

    for action in build_parser()._actions:
        flag = max(action.option_strings, key=len)
        if flag not in ("--help", "--version", "--verbose", "--featurerules-controller"):
            assert re.search(rf"{flag}\b", text), f"{flag} not documented in master-config.yaml"


def test_worker_daemonset() -> None:
    objs = objects("default")
    worker = find(objs, "DaemonSet", "nfd-worker")
    spec = pod_spec(worker)
    assert_hardened(spec)
    assert spec["serviceAccountName"] == "nfd-worker"
    assert spec["automountServiceAccountToken"] is False
    # Tolerates every taint: GPU nodes (nvidia.com/gpu:NoSchedule), control plane, ...
    assert {"operator": "Exists"} in spec["tolerations"]
    c = container(worker, "nfd-worker")
    assert "--host-prefix=/host-" in c["args"]
    assert "--server=nfd-master:8080" in c["args"]
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    # /metrics and /healthz on 8081, probed there.
    assert "--metrics=8081" in c["args"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"metrics": 8081}
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    mounts = host_mounts(worker)
    assert {host: path for host, (path, _) in mounts.items()} == WORKER_HOST_MOUNTS
    assert all(read_only for _, read_only in mounts.values())
    # Config from the ConfigMap, at the path the worker reads by default.
    conf_volume = next(v for v in spec["volumes"] if v["name"] == "nfd-worker-conf")
    assert conf_volume["configMap"]["name"] == "nfd-worker-conf"
    conf_mount = next(m for m in c["volumeMounts"] if m["name"] == "nfd-worker-conf")
    assert conf_mount["mountPath"] == "/etc/kubernetes/node-feature-discovery"
    assert "--config=/etc/kubernetes/node-feature-discovery/nfd-worker.conf" in c["args"]
    find(objs, "ConfigMap", "nfd-worker-conf")


def _worker_conf(overlay: str) -> str:
    return str(find(objects(overlay), "ConfigMap", "nfd-worker-conf")["data"]["nfd-worker.conf"])


def test_worker_config_as_shipped_is_the_defaults() -> None:
    text = _worker_conf("default")
    config = parse_config_text(text, "nfd-worker.conf")
    assert config.warnings == []
    assert config == build_config({}, "defaults")


def test_worker_config_documents_real_options() -> None:
    """Uncomment every option line: the result parses, and every key is one the worker
    knows (no "unknown option" warning) with the documented default."""
    text = _worker_conf("default")
    option_lines = [line[1:] for line in text.splitlines() if re.match(r"#(?!#)", line)]
    data = yaml.safe_load("\n".join(option_lines))
    config = build_config(data, "uncommented nfd-worker.conf")
    assert config.warnings == []
    assert config == build_config({}, "defaults")
    # ... and every option of every source is there (fake is a test-only source).
    for name in SOURCE_NAMES:
        defaults = get_source(name).default_config()
        if name == "fake" or not defaults:
            continue
        documented = data["sources"][name]
        assert keys(documented) == keys(defaults), f"sources.{name}"


def keys(tree: Any, prefix: str = "") -> set[str]:
    """Every key path of nested mappings (``cpuid.attributeBlacklist``)."""
    out = set()
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.add(prefix + key)
            out |= keys(value, prefix + key + ".")
    return out


def test_oneshot_runs_the_worker_as_a_job_with_the_same_mounts() -> None:
    objs = objects("oneshot")
    assert not [o for o in objs if o["kind"] == "DaemonSet"]
    job = find(objs, "Job", "nfd-worker")
    daemonset = find(objects("default"), "DaemonSet", "nfd-worker")
    assert host_mounts(job) == host_mounts(daemonset)
    c = container(job)
    assert c["args"][0] == "--oneshot"
    assert c["args"][1:] == container(daemonset)["args"]
    assert c["env"] == container(daemonset)["env"]
    anti = pod_spec(job)["affinity"]["podAntiAffinity"]
    assert anti["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] == (
        "kubernetes.io/hostname"
    )
    assert_hardened(pod_spec(job))


def test_tls_overlay() -> None:
    objs = objects("tls")
    master = container(find(objs, "Deployment", "nfd-master"))
    certs = "/etc/kubernetes/node-feature-discovery/certs"
    for arg in (f"--ca-file={certs}/ca.crt", f"--cert-file={certs}/tls.crt", "--verify-node-name"):
        assert arg in master["args"]
    worker_ds = find(objs, "DaemonSet", "nfd-worker")
    worker = container(worker_ds)
    # Each worker picks its own node's certificate.
    assert f"--cert-file={certs}/$(NODE_NAME).crt" in worker["args"]
    assert f"--key-file={certs}/$(NODE_NAME).key" in worker["args"]
    secrets = {v["secret"]["secretName"] for v in pod_spec(worker_ds)["volumes"] if "secret" in v}
    assert secrets == {"nfd-worker-certs"}
    assert pod_spec(worker_ds)["securityContext"]["fsGroup"] == 65534
    # Everything else as in the default overlay.
    assert host_mounts(worker_ds) == host_mounts(
        find(objects("default"), "DaemonSet", "nfd-worker")
    )


def test_gpu_overlay() -> None:
    objs = objects("gpu")
    assert "--enable-gpu-marking" in container(find(objs, "Deployment", "nfd-master"))["args"]
    conf = parse_config_text(_worker_conf("gpu"), "gpu nfd-worker.conf")
    assert conf.warnings == []
    assert conf.sources["pci"]["deviceLabelFields"] == ["vendor"]
    selectors = {}
    for obj in objs:
        if obj["kind"] == "DaemonSet" and obj["metadata"]["name"].startswith("nvidia-driver"):
            assert obj["metadata"]["namespace"] == "nvidia-gpu-driver"
            selectors[obj["metadata"]["name"]] = pod_spec(obj)["nodeSelector"]
    assert {"nvidia.com/gpu.deploy.driver": "true"} in selectors.values()
    assert {"nvidia.com/gpu.present": "true"} in selectors.values()
    find(objs, "Namespace", "nvidia-gpu-driver")


def test_prometheus_servicemonitor_targets_the_metrics_port() -> None:
    objs = objects("prometheus")
    monitor = find(objs, "ServiceMonitor", "nfd-master")
    service = find(objs, "Service", "nfd-master")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert all(service["metadata"]["labels"].get(k) == v for k, v in selector.items())
    ports = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    # Workers have no Service: a PodMonitor picks their pods' metrics port.
    pods = find(objs, "PodMonitor", "nfd-worker")
    worker = find(objs, "DaemonSet", "nfd-worker")
    pod_labels = worker["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in pods["spec"]["selector"]["matchLabels"].items())
    ports = {p["name"] for p in container(worker)["ports"]}
    assert {e["port"] for e in pods["spec"]["podMetricsEndpoints"]} <= ports
    assert pods["metadata"]["namespace"] == NAMESPACE


def test_openshift_scc_allows_exactly_the_worker_host_paths() -> None:
    objs = objects("openshift")
    scc = find(objs, "SecurityContextConstraints", "nfd-worker")
    worker = find(objs, "DaemonSet", "nfd-worker")
    allowed = {p["pathPrefix"]: p["readOnly"] for p in scc["allowedHostPaths"]}
    assert allowed == {host: True for host in host_mounts(worker)}
    assert scc["allowHostDirVolumePlugin"] is True
    for key in (
        "allowPrivilegedContainer",
        "allowPrivilegeEscalation",
        "allowHostNetwork",
        "allowHostPID",
        "allowHostIPC",
        "allowHostPorts",
    ):
        assert scc[key] is False, key
    assert scc["requiredDropCapabilities"] == ["ALL"] and not scc["allowedCapabilities"]
    assert scc["readOnlyRootFilesystem"] is True
    assert scc["runAsUser"]["type"] == "MustRunAsNonRoot"
    used_volumes = {k for v in pod_spec(worker)["volumes"] for k in v if k != "name"}
    # The volume types the worker uses, plus secret for the TLS certificates; nothing else.
    assert set(scc["volumes"]) == used_volumes | {"secret"}
    # Bound to the worker's account only, through RBAC "use".
    role = find(objs, "ClusterRole", "nfd-worker-scc")
    assert rules(role) == {
        ("security.openshift.io", "securitycontextconstraints", "nfd-worker", "use")
    }
    binding = find(objs, "RoleBinding", "nfd-worker-scc")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "nfd-worker", "namespace": NAMESPACE}
    ]
    # The master needs nothing special: OpenShift picks its UID.
    master_sc = pod_spec(find(objs, "Deployment", "nfd-master"))["securityContext"]
    assert "runAsUser" not in master_sc and master_sc["runAsNonRoot"] is True


def test_prometheus_overlay_has_the_dashboard_and_the_alerts() -> None:
    """The dashboard ConfigMap is one Grafana's sidecar picks up; the alerts cover what an
    operator must hear about; the job names in the PromQL are the ones the monitors give
    their targets (which PromQL names and labels the processes export: tests/e2e/
    test_dashboard_metrics.py)."""
    objs = objects("prometheus")
    config_map = find(objs, "ConfigMap", "nfd-grafana-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == NAMESPACE
    (text,) = config_map["data"].values()
    dashboard = json.loads(text)
    titles = {p["title"] for p in dashboard["panels"]}
    for wanted in (
        "Labels per node", "Node updates", "Errors", "Latency", "Rule evaluation",
        "Flaps prevented",
    ):  # fmt: skip
        assert wanted in titles
    assert all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in dashboard["panels"])
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])

    rule = find(objs, "PrometheusRule", "node-feature-discovery")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    for wanted in (
        "NFDWorkerDown", "NFDWorkersSilent", "NFDRuleErrors", "NFDNodeUpdateAPIErrors",
        "NFDLabelChurn",
    ):  # fmt: skip
        assert wanted in alerts
    for alert in alerts.values():
        assert alert["labels"]["severity"] in ("info", "warning", "critical")
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]

    # The Prometheus Operator's job label: a ServiceMonitor's target gets its Service's
    # name, a PodMonitor's "<namespace>/<name>".
    service = find(objs, "Service", "nfd-master")["metadata"]["name"]
    pods = find(objs, "PodMonitor", "nfd-worker")["metadata"]
    jobs = {service, f"{pods['namespace']}/{pods['name']}"}
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in alerts.values()]
    used_jobs = {job for expr in exprs for job in re.findall(r'job="([^"]*)"', expr)}
    assert used_jobs == jobs
