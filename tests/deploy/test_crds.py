"""The nfd.k8s-sigs.io CRDs of deploy/ and the Helm chart have upstream v0.19.0's schema.

Upstream's CRDs come from its Go module (deployment/base/nfd-crds/nfd-api-crds.yaml), cached
by ``hack/upstream-nfd.sh build`` (``make install``); without the cache the test fails.
Descriptions are ours, so they are left out of the comparison; everything else of each CRD's
spec (group, names, scope, versions, served/storage, subresources, the whole openAPIV3Schema)
must be equal.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import yaml

from nfd.rules.expression import OPS
from tests.compat.upstream import current_deployment
from tests.deploy.manifests import DEPLOY, REPO, find, helm_template, load_all, objects

PLURALS = ("nodefeatures", "nodefeaturerules", "nodefeaturegroups")


def without_descriptions(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: without_descriptions(v) for k, v in tree.items() if k != "description"}
    if isinstance(tree, list):
        return [without_descriptions(v) for v in tree]
    return tree


def upstream_crds() -> dict[str, dict[str, Any]]:
    path = current_deployment() / "base" / "nfd-crds" / "nfd-api-crds.yaml"
    return {doc["metadata"]["name"]: doc for doc in load_all(path.read_text())}


def ours(plural: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "base" / f"crd-{plural}.yaml").read_text())
    return doc


def test_upstream_ships_exactly_these_three() -> None:
    assert set(upstream_crds()) == {f"{p}.nfd.k8s-sigs.io" for p in PLURALS}


@pytest.mark.parametrize("plural", PLURALS)
def test_schema_identical_to_upstream_v0_19(plural: str) -> None:
    name = f"{plural}.nfd.k8s-sigs.io"
    upstream = upstream_crds()[name]
    mine = ours(plural)
    assert mine["apiVersion"] == upstream["apiVersion"] == "apiextensions.k8s.io/v1"
    assert mine["metadata"]["name"] == name
    assert without_descriptions(mine["spec"]) == without_descriptions(upstream["spec"])
    # Ours are documented too, at least at the top and for spec.
    schema = mine["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema["description"] and schema["properties"]["spec"]["description"]


def test_the_match_operators_are_upstreams() -> None:
    rule = ours("nodefeaturerules")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    expr = rule["properties"]["spec"]["properties"]["rules"]["items"]["properties"]
    ops = expr["matchFeatures"]["items"]["properties"]["matchName"]["properties"]["op"]["enum"]
    # The CRD leaves out only MatchAny (""), which the API types and files allow.
    assert tuple(ops) == OPS


def test_committed_files_are_what_the_generator_writes() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "hack" / "gen-crds.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("plural", PLURALS)
def test_kustomize_base_and_helm_chart_ship_them(plural: str) -> None:
    name = f"{plural}.nfd.k8s-sigs.io"
    for built in (objects("default"), load_all(helm_template())):
        crd = find(built, "CustomResourceDefinition", name)
        assert crd["spec"] == ours(plural)["spec"]
