#!/usr/bin/env python3
"""Write the nfd.k8s-sigs.io/v1alpha1 CustomResourceDefinitions of deploy/ and the Helm chart.

    hack/gen-crds.py            (re)write deploy/base/crd-*.yaml and deploy/helm/nfd/crds/*.yaml
    hack/gen-crds.py --check    exit 1 if a committed file differs from what this writes

NodeFeature, NodeFeatureRule and NodeFeatureGroup have the schema upstream
node-feature-discovery v0.19.0 serves (same versions, names, scope, types, required fields,
enums, list-map keys), so that upstream's workers, GPU Feature Discovery and upstream rules
work against our master unchanged. tests/deploy/test_crds.py compares these files with the
CRDs shipped in upstream's v0.19.0 Go module, field by field (descriptions aside: ours are
our own words). The schema is assembled from the shared pieces below, the way the API types
nest (a NodeFeatureGroup rule is a NodeFeatureRule rule's matcher part).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from nfd.rules.expression import OPS  # noqa: E402

GROUP = "nfd.k8s-sigs.io"
VERSION = "v1alpha1"

# Upstream's MatchOp enum, in its order: the operators our rule engine implements. The empty
# operator (MatchAny) is valid in the API types and in files, but not in the CRD.
MATCH_OPS = OPS

Schema = dict[str, Any]


def obj(
    description: str | None = None,
    properties: dict[str, Schema] | None = None,
    required: list[str] | None = None,
    **extra: Any,
) -> Schema:
    out: Schema = {}
    if description:
        out["description"] = description
    out["type"] = "object"
    if properties is not None:
        out["properties"] = properties
    if required:
        out["required"] = required
    out.update(extra)
    return out


def string(description: str | None = None, **extra: Any) -> Schema:
    out: Schema = {"description": description} if description else {}
    return {**out, "type": "string", **extra}


def array(items: Schema, description: str | None = None, **extra: Any) -> Schema:
    out: Schema = {"description": description} if description else {}
    return {**out, "type": "array", "items": items, **extra}


def string_map(description: str | None = None) -> Schema:
    return obj(description, additionalProperties={"type": "string"})


def top_level(kind: str, spec: Schema, status: Schema | None = None) -> Schema:
    properties: dict[str, Schema] = {
        "apiVersion": string("API version of this object (nfd.k8s-sigs.io/v1alpha1)."),
        "kind": string(f"Kind of this object ({kind})."),
        "metadata": {"type": "object"},
        "spec": spec,
    }
    if status is not None:
        properties["status"] = status
    return obj(f"{kind} of Node Feature Discovery.", properties, ["spec"])


def match_expression() -> Schema:
    return obj(
        "An operator and the values it compares the feature's value with.",
        {
            "op": string("The match operator.", enum=list(MATCH_OPS)),
            "value": array(
                {"type": "string"},
                "Operand values; how many depends on the operator (none for Exists).",
            ),
            "type": string("Value type for the comparison (reserved, unused)."),
        },
        ["op"],
    )


def feature_matcher() -> Schema:
    return array(
        obj(
            "Terms on one feature; all of them must match.",
            {
                "feature": string("The feature, <domain>.<feature> (e.g. kernel.version)."),
                "matchExpressions": obj(
                    "Per element name, an expression its value must match.",
                    additionalProperties=match_expression(),
                ),
                "matchName": {
                    **match_expression(),
                    "description": "An expression the element names must match.",
                },
            },
            ["feature"],
        ),
        "Feature terms, all of which must match (logical AND).",
    )


def match_any() -> Schema:
    return array(
        obj(
            "One alternative of matchAny.",
            {"matchFeatures": feature_matcher()},
            ["matchFeatures"],
        ),
        "Alternatives, one of which must match (logical OR).",
    )


def rule_matchers() -> dict[str, Schema]:
    return {
        "matchAny": match_any(),
        "matchFeatures": feature_matcher(),
        "name": string("Name of the rule (for logs and for ruleset references)."),
        "vars": string_map("Variables available to later rules (rule.matched)."),
        "varsTemplate": string("Go template whose output lines are name=value variables."),
    }


def node_feature_schema() -> Schema:
    def feature_sets(element: Schema, description: str) -> Schema:
        return obj(
            description,
            additionalProperties=obj("One feature set.", {"elements": element}, ["elements"]),
        )

    features = obj(
        "Raw features discovered on the node, by <domain>.<feature> name.",
        {
            "attributes": feature_sets(
                obj("Element name to value.", additionalProperties={"type": "string"}),
                "Features that are a set of name=value attributes.",
            ),
            "flags": feature_sets(
                obj(
                    "Element names; each value is an empty object.",
                    additionalProperties={"type": "object"},
                ),
                "Features that are a set of names.",
            ),
            "instances": feature_sets(
                array(
                    obj(
                        "One instance (for example one PCI device).",
                        {"attributes": string_map("Attributes of the instance.")},
                        ["attributes"],
                    ),
                    "The instances.",
                ),
                "Features that are a list of instances, each with attributes.",
            ),
        },
    )
    spec = obj(
        "What one agent discovered on one node (the node is named by the "
        "nfd.node.kubernetes.io/node-name label).",
        {
            "features": features,
            "labels": string_map("Node labels the agent asks for."),
        },
    )
    return top_level("NodeFeature", spec)


def node_feature_rule_schema() -> Schema:
    rule = obj(
        "One rule: when its matchers match a node, its outputs apply to that node.",
        {
            "annotations": string_map("Node annotations to set."),
            "extendedResources": string_map("Node extended resources to set."),
            "labels": string_map("Node labels to set."),
            "labelsTemplate": string("Go template whose output lines are name=value labels."),
            **rule_matchers(),
            "taints": array(
                obj(
                    "A node taint.",
                    {
                        "effect": string("NoSchedule, PreferNoSchedule or NoExecute."),
                        "key": string("Taint key."),
                        "timeAdded": string("When the taint was added.", format="date-time"),
                        "value": string("Taint value."),
                    },
                    ["effect", "key"],
                ),
                "Node taints to set.",
            ),
        },
        ["name"],
    )
    spec = obj("The rules.", {"rules": array(rule, "Rules evaluated in order.")}, ["rules"])
    return top_level("NodeFeatureRule", spec)


def node_feature_group_schema() -> Schema:
    rule = obj(
        "One rule: nodes it matches are members of the group.",
        rule_matchers(),
        ["name"],
    )
    spec = obj(
        "The rules that select the group's nodes.",
        {"featureGroupRules": array(rule, "Rules; a node matching any one is a member.")},
        ["featureGroupRules"],
    )
    status = obj(
        "Maintained by nfd-master (feature gate NodeFeatureGroupAPI).",
        {
            "nodes": array(
                obj("A member node.", {"name": string("Node name.")}, ["name"]),
                "The nodes that match the group's rules.",
                **{"x-kubernetes-list-map-keys": ["name"], "x-kubernetes-list-type": "map"},
            )
        },
    )
    return top_level("NodeFeatureGroup", spec, status)


def crd(
    kind: str,
    plural: str,
    scope: str,
    schema: Schema,
    short_names: list[str] | None = None,
    status: bool = False,
) -> dict[str, Any]:
    names: dict[str, Any] = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
    }
    if short_names:
        names["shortNames"] = short_names
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
    }
    if status:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {"group": GROUP, "names": names, "scope": scope, "versions": [version]},
    }


HEADERS = {
    "nodefeatures": (
        "NodeFeature: features and labels an agent (nfd-worker in NodeFeature mode, upstream's\n"
        "nfd-worker, NVIDIA GPU Feature Discovery) publishes for one node; nfd-master turns\n"
        "them into node labels."
    ),
    "nodefeaturerules": (
        "NodeFeatureRule (cluster-scoped, short name nfr): rules the nfd-master evaluates against\n"
        "every node's raw features (docs/protocol.md)."
    ),
    "nodefeaturegroups": (
        "NodeFeatureGroup (short name nfg): a set of rules; nfd-master lists the nodes that match\n"
        "them in status.nodes (feature gate NodeFeatureGroupAPI)."
    ),
}


def documents() -> dict[str, dict[str, Any]]:
    """plural -> CRD."""
    return {
        "nodefeatures": crd("NodeFeature", "nodefeatures", "Namespaced", node_feature_schema()),
        "nodefeaturerules": crd(
            "NodeFeatureRule", "nodefeaturerules", "Cluster", node_feature_rule_schema(), ["nfr"]
        ),
        "nodefeaturegroups": crd(
            "NodeFeatureGroup",
            "nodefeaturegroups",
            "Namespaced",
            node_feature_group_schema(),
            ["nfg"],
            status=True,
        ),
    }


def render(plural: str, doc: dict[str, Any]) -> str:
    header = "".join(f"# {line}\n" for line in HEADERS[plural].splitlines())
    header += "# Written by hack/gen-crds.py (schema as upstream v0.19.0); edit that, not this.\n"
    return header + yaml.safe_dump(doc, sort_keys=False, width=100)


def targets() -> dict[Path, str]:
    out = {}
    for plural, doc in documents().items():
        text = render(plural, doc)
        out[REPO / "deploy" / "base" / f"crd-{plural}.yaml"] = text
        out[REPO / "deploy" / "helm" / "nfd" / "crds" / f"{plural}.yaml"] = text
    return out


def main(argv: list[str]) -> int:
    check = argv[1:] == ["--check"]
    if argv[1:] and not check:
        print(__doc__, file=sys.stderr)
        return 2
    stale = []
    for path, text in targets().items():
        if path.exists() and path.read_text() == text:
            continue
        if check:
            stale.append(str(path.relative_to(REPO)))
        else:
            path.write_text(text)
    if stale:
        print(f"stale (run hack/gen-crds.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
