"""The arguments in the manifests are ones the programs accept (parsed by their own parsers),
with the $(VAR) references Kubernetes expands filled in from the ConfigMap and downward API."""

from __future__ import annotations

import re
from typing import Any

import pytest

from nfd.cli import master as master_cli
from nfd.cli import worker as worker_cli
from tests.deploy.manifests import OVERLAYS, container, find, helm_template, load_all, objects


def expand(args: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' $(VAR) expansion of container args."""
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in args]


def container_env(objs: list[dict[str, Any]], c: dict[str, Any]) -> dict[str, str]:
    env = {}
    for e in c.get("env", []):
        ref = e.get("valueFrom", {})
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "configMapKeyRef" in ref:
            cm = find(objs, "ConfigMap", ref["configMapKeyRef"]["name"])
            env[e["name"]] = cm["data"][ref["configMapKeyRef"]["key"]]
        elif "fieldRef" in ref:
            env[e["name"]] = "node-1"
    return env


def parsed(objs: list[dict[str, Any]], kind: str, name: str) -> Any:
    obj = find(objs, kind, name)
    c = container(obj)
    argv = expand(c["args"], container_env(objs, c))
    program = c["command"][0]
    if program == "nfd-master":
        return master_cli.build_parser().parse_args(master_cli.normalize_argv(argv))
    assert program == "nfd-worker"
    return worker_cli.parse_args(argv)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_master_and_worker_accept_their_args(overlay: str) -> None:
    objs = objects(overlay)
    master = parsed(objs, "Deployment", "nfd-master")
    assert (master.port, master.metrics) == (8080, 8081)
    assert master.enable_gpu_marking
    assert master.nfd_api_parallelism == 10
    worker_kind = "Job" if overlay == "oneshot" else "DaemonSet"
    worker = parsed(objs, worker_kind, "nfd-worker")
    assert worker.server == "nfd-master:8080"
    assert worker.host_prefix == "/host-"
    assert worker.metrics == 8081
    assert worker.oneshot == (overlay == "oneshot")
    if overlay == "tls":
        assert master.verify_node_name and master.ca_file and master.cert_file
        assert worker.cert_file.endswith("/node-1.crt") and worker.key_file.endswith("/node-1.key")


def test_helm_non_default_args_are_accepted() -> None:
    objs = load_all(
        helm_template(
            "--set",
            "tls.enabled=true,master.replicaCount=2,gpu.marking=false,master.enableTaints=true",
            "--set",
            "master.config.extraLabelNs={vendor.example.com,nvidia.com}",
            "--set",
            "master.config.labelWhitelist=^gpu",
        )
    )
    master = parsed(objs, "Deployment", "nfd-master")
    assert master.enable_leader_election and master.enable_taints
    assert not master.enable_gpu_marking
    assert master.extra_label_ns == ["vendor.example.com,nvidia.com"] or (
        "vendor.example.com,nvidia.com" in str(master.extra_label_ns)
    )
    assert master.label_whitelist == "^gpu"
    assert master.verify_node_name
    worker = parsed(objs, "DaemonSet", "nfd-worker")
    assert worker.ca_file and worker.cert_file.endswith("/node-1.crt")
