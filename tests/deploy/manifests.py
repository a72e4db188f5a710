"""Build the deployment manifests the way an operator would (kubectl kustomize, helm template)
and look objects up in the result. Shared by tests/deploy and tests/e2e/test_deploy.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAYS = ("default", "tls", "gpu", "prometheus", "oneshot", "openshift")
CHART = DEPLOY / "helm" / "nfd"
TEST_CRDS = Path(__file__).parent / "crds"
NAMESPACE = "node-feature-discovery"

Obj = dict[str, Any]


def _cached_tool(script: str, args: Sequence[str], name: str) -> Path | None:
    result = subprocess.run(
        [str(REPO / "hack" / script), *args], capture_output=True, text=True, check=False
    )
    path = result.stdout.strip()
    return Path(path) if result.returncode == 0 and path else None


@cache
def kubectl() -> Path:
    """The control plane's kubectl (kustomize built in), else the one on PATH."""
    path = _cached_tool("control-plane.sh", ["path", "kubectl"], "kubectl")
    if path is None:
        found = shutil.which("kubectl")
        if found is None:
            pytest.fail("kubectl not found: run `make install` (hack/control-plane.sh build)")
        path = Path(found)
    return path


@cache
def helm() -> Path:
    path = _cached_tool("helm.sh", ["path"], "helm")
    if path is None:
        pytest.fail("helm is not built: run `make install` (hack/helm.sh build)", pytrace=False)
    return path


def run(argv: Sequence[str | os.PathLike[str]], **kwargs: Any) -> str:
    """Run a tool; fail the test with its stderr if it fails."""
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, check=False, **kwargs
    )
    if result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, argv))} failed:\n{result.stderr}", pytrace=False)
    return result.stdout


@cache
def kustomize(overlay: str) -> str:
    return run([kubectl(), "kustomize", DEPLOY / "overlays" / overlay])


def helm_template(*args: str) -> str:
    """`helm template nfd deploy/helm/nfd -n node-feature-discovery --include-crds ARGS`."""
    return run(
        [helm(), "template", "nfd", CHART, "--namespace", NAMESPACE, "--include-crds", *args]
    )


def load_all(text: str) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def objects(overlay: str) -> list[Obj]:
    return load_all(kustomize(overlay))


def find(objs: Iterable[Obj], kind: str, name: str) -> Obj:
    for obj in objs:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    pytest.fail(f"no {kind}/{name} in the manifests")


def pod_spec(obj: Obj) -> Obj:
    spec: Obj = obj["spec"]["template"]["spec"]
    return spec


def container(obj: Obj, name: str | None = None) -> Obj:
    containers = pod_spec(obj)["containers"]
    for c in containers:
        if name is None or c["name"] == name:
            return dict(c)
    pytest.fail(f"no container {name} in {obj['kind']}/{obj['metadata']['name']}")


def host_mounts(obj: Obj) -> dict[str, tuple[str, bool]]:
    """host path -> (mount path in the container, read-only) for every hostPath volume."""
    spec = pod_spec(obj)
    volumes = {v["name"]: v["hostPath"]["path"] for v in spec.get("volumes", []) if "hostPath" in v}
    mounts = {}
    for c in spec["containers"]:
        for m in c.get("volumeMounts", []):
            if m["name"] in volumes:
                mounts[volumes[m["name"]]] = (m["mountPath"], bool(m.get("readOnly")))
    return mounts
