"""Where each of a node's labels comes from, and why a label is missing: the answer of
the master's ``GET /explain/<node>[?label=NAME]`` (``kubectl nfd explain``).

Pure: ``explain_node`` takes what the master already holds for one node (the worker's
last labels and raw features), its NodeFeatureRules and label policy, and evaluates
them again for this one request. Nothing is kept afterwards, so the cost is one rule
evaluation per request and no memory per node beyond the master's own state.

Each label gets an origin:

- ``worker``: the worker sent it. ``source`` and ``feature`` come from the name
  (``cpu-cpuid.AVX2`` is source ``cpu``, feature ``cpuid.AVX2``); a label that the
  worker's ``local.label`` features hold came from the local source: ``file`` names
  its features.d file or ``hook`` its source.d hook, as our worker reports them
  beside the features (nfd.origins: the gRPC stream's ``Update.local_origins``, or
  the annotation of its NodeFeature object), with ``alsoSetBy`` for the files or
  hooks it overrode; a worker that reports none (upstream's) leaves a ``detail``
  saying so. Anything else is a worker-side rule (custom source) or another worker
  label.
- ``NodeFeatureRule``: the last rule (in the master's order) that matched and
  names the label, or whose labelsTemplate wrote it.
- ``gpu-marking``: the GPU marking stage (``nvidia.com/gpu.present``,
  ``nvidia.com/gpu.deploy.*``).
- ``NodeFeature``: ``spec.labels`` of another agent's NodeFeature object (GPU Feature
  Discovery's, a vendor agent's): ``nodeFeature`` is its namespace/name. A label from the
  node's own object (in the master's namespace, named after the node: what nfd-worker in
  NodeFeature mode, ours or upstream's, writes) is a ``worker`` origin as above, with
  ``nodeFeature`` naming the object. When several gave the label, the origin is the one
  whose value is used (the last in upstream's merge order: objects win over the gRPC
  worker, a third-party object over the node's own) and ``overrides`` lists the others
  with their values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nfd import origins
from nfd.features import Features
from nfd.master.policy import (
    PolicyConfig,
    auto_prefix,
    build_desired,
    is_gpu_marking_label,
)
from nfd.rules.engine import RULE_BACKREF_FEATURE, RuleOutput, execute_rule, execute_rules
from nfd.rules.errors import RuleExecutionError
from nfd.rules.explain import explain_label

# Worker sources whose labels are named "<source>-<feature>" (nfd.sources.SOURCE_NAMES
# less local and custom, whose label names are the user's).
NAMED_SOURCES = frozenset(
    (
        "cpu",
        "fake",
        "gpu",
        "iommu",
        "kernel",
        "memory",
        "network",
        "pci",
        "storage",
        "system",
        "usb",
    )
)
LOCAL_LABELS = "local.label"
RULE_PREFIX = "NodeFeatureRule "
# What explain says of a local label whose file or hook the master was not told.
LOCAL_UNREPORTED = (
    "a features.d file or source.d hook; this worker does not report which (upstream's "
    "nfd-worker does not)"
)
LOCAL_OMITTED = (
    "a features.d file or source.d hook; not recorded: the worker's origins of {n} labels "
    "were over its bounds (nfd.origins: {labels} labels, {size} bytes per node)"
)
# (origins by the worker's label key, how many it left out): nfd.origins.
LocalOrigins = tuple[Mapping[str, tuple[str, ...]], int]
# Computes the GPU marking labels from the node's labels (as they will be) and the
# hardware flag; None when the master runs without --enable-gpu-marking.
GpuMarking = Callable[[Mapping[str, str], bool], Mapping[str, str]]
# (namespace, name) of a NodeFeature object and the value it gives a label, in merge order.
LabelSources = Mapping[str, list[tuple[tuple[str, str], str]]]


def worker_origin(
    name: str, local_labels: Mapping[str, str], local_origins: LocalOrigins | None = None
) -> dict[str, Any]:
    """The origin of a label the worker sent (``name`` fully qualified); for a local one
    its file or hook, when ``local_origins`` (what the worker reported) names it."""
    ns, _, base = name.rpartition("/")
    if name in local_labels or base in local_labels and ns == "feature.node.kubernetes.io":
        return {"origin": "worker", "source": "local", **local_origin(name, local_origins)}
    if ns == "feature.node.kubernetes.io":
        source, sep, feature = base.partition("-")
        if sep and source in NAMED_SOURCES:
            return {"origin": "worker", "source": source, "feature": feature}
    return {
        "origin": "worker",
        "source": "custom",
        "detail": "a rule of the worker's custom source, or another label the worker sent",
    }


def local_origin(name: str, local_origins: LocalOrigins | None) -> dict[str, Any]:
    """``file`` or ``hook`` (and ``alsoSetBy``) of local label ``name``, or a ``detail``
    saying why it is not known."""
    if local_origins is None:
        return {"detail": LOCAL_UNREPORTED}
    kept, omitted = local_origins
    ns, _, base = name.rpartition("/")
    setters = kept.get(name)
    if setters is None and ns == "feature.node.kubernetes.io":
        setters = kept.get(base)
    described = origins.describe(setters or ())
    if described:
        return described
    if omitted:
        text = LOCAL_OMITTED.format(n=omitted, labels=origins.MAX_LABELS, size=origins.MAX_BYTES)
        return {"detail": text}
    return {"detail": LOCAL_UNREPORTED}


def nodefeature_origin(
    name: str,
    sources: list[tuple[tuple[str, str], str]],
    own: tuple[str, str],
    local_labels: Mapping[str, str],
    grpc_value: str | None,
    object_origins: LocalOrigins | None = None,
) -> dict[str, Any]:
    """The origin of a label some NodeFeature objects gave: the last of them (its value
    is used); the earlier ones, and the gRPC worker's value, in ``overrides``.
    ``object_origins``: the local origins the node's own object reports."""
    (winner, _), losers = sources[-1], sources[:-1]
    out: dict[str, Any] = (
        dict(worker_origin(name, local_labels, object_origins))
        if winner == own
        else {"origin": "NodeFeature"}
    )
    out["nodeFeature"] = f"{winner[0]}/{winner[1]}"
    overrides: list[dict[str, str]] = []
    if grpc_value is not None:
        overrides.append({"worker": "gRPC", "value": grpc_value})
    overrides += [{"nodeFeature": f"{k[0]}/{k[1]}", "value": v} for k, v in losers]
    if overrides:
        out["overrides"] = overrides
    return out


def rule_origin(rule: Any) -> dict[str, str]:
    origin = str(getattr(rule, "origin", ""))
    out = {"origin": "NodeFeatureRule", "rule": str(rule.name)}
    if origin.startswith(RULE_PREFIX):
        out["nodeFeatureRule"] = origin.removeprefix(RULE_PREFIX)
    elif origin:
        out["nodeFeatureRule"] = origin
    return out


def _qualify(name: str, policy: PolicyConfig) -> str:
    """A label name as the master writes it (unprefixed kept under DisableAutoPrefix)."""
    return name if policy.disable_auto_prefix else auto_prefix(name)


def rule_setters(
    rules: list[Any], features: Features, policy: PolicyConfig | None = None
) -> tuple[RuleOutput, dict[str, Any]]:
    """The rules' output (as the master computes it) and, for each label in it (fully
    qualified), the last rule that set it. One pass over the rules, chained through
    ``rule.matched`` as ``execute_rules`` chains them."""
    out = execute_rules(rules, features)
    setters: dict[str, Any] = {}
    work = Features(
        flags=features.flags, attributes=dict(features.attributes), instances=features.instances
    )
    backrefs: dict[str, str] = dict(features.attributes.get(RULE_BACKREF_FEATURE, {}))
    if RULE_BACKREF_FEATURE in features.attributes:
        work.attributes[RULE_BACKREF_FEATURE] = backrefs
    for rule in rules:
        try:
            result = execute_rule(rule, work)
        except RuleExecutionError:
            continue
        work.attributes[RULE_BACKREF_FEATURE] = backrefs
        if not result.matched:
            continue
        for name in result.labels:
            setters[_qualify(name, policy or PolicyConfig())] = rule
        backrefs.update(result.labels)
        backrefs.update(result.vars)
    return out, setters


def explain_node(
    node: str,
    worker_labels: Mapping[str, str],
    features: Features,
    rules: list[Any],
    policy: PolicyConfig,
    *,
    label: str | None = None,
    gpu_hardware: bool = False,
    gpu_marking: GpuMarking | None = None,
    skipped_rules: list[Any] | None = None,
    label_sources: LabelSources | None = None,
    grpc_labels: Mapping[str, str] | None = None,
    own_object: tuple[str, str] = ("", ""),
    grpc_origins: LocalOrigins | None = None,
    object_origins: LocalOrigins | None = None,
) -> dict[str, Any]:
    """The explanation document (JSON-ready) for one node.

    ``worker_labels`` is the node's whole label input: the gRPC worker's labels with its
    NodeFeature objects' merged over them. ``label_sources`` says which objects gave
    which label (NodeFeatureStore.label_sources), ``grpc_labels`` what the gRPC worker
    sent (default: all of ``worker_labels``), ``own_object`` the node's own object.
    ``grpc_origins`` and ``object_origins``: the files and hooks of the local labels, as
    the gRPC worker and the node's own object report them (None: not reported)."""
    rule_output, setters = rule_setters(rules, features, policy) if rules else (None, {})
    desired, rejected = build_desired(worker_labels, policy, rule_output, features)
    local_labels = features.attributes.get(LOCAL_LABELS, {})
    worker_names = {_qualify(k, policy) for k in worker_labels}
    sources = label_sources or {}
    grpc = {
        _qualify(k, policy): v
        for k, v in (worker_labels if grpc_labels is None else grpc_labels).items()
    }
    labels: list[dict[str, Any]] = []
    for name, value in sorted(desired.labels.items()):
        rule = setters.get(name)
        if rule is not None:
            origin = rule_origin(rule)
        elif name in sources:
            origin = nodefeature_origin(
                name, sources[name], own_object, local_labels, grpc.get(name), object_origins
            )
        elif name in worker_names:
            origin = worker_origin(name, local_labels, grpc_origins)
        else:
            origin = {"origin": "NodeFeatureRule", "detail": "a rule's labelsTemplate"}
        labels.append({"name": name, "value": value, **origin})
    gpu: dict[str, Any] = {"enabled": gpu_marking is not None, "hardware": gpu_hardware}
    if gpu_marking is not None:
        marked = gpu_marking(desired.labels, gpu_hardware)
        for name, value in sorted(marked.items()):
            if is_gpu_marking_label(name):
                labels.append(
                    {
                        "name": name,
                        "value": value,
                        "origin": "gpu-marking",
                        "detail": _gpu_detail(gpu_hardware),
                    }
                )
        labels.sort(key=lambda e: e["name"])
    doc: dict[str, Any] = {
        "node": node,
        "labels": labels,
        "rejected": [{"kind": r.kind, "name": r.name, "reason": r.reason} for r in rejected],
        "extendedResources": dict(sorted(desired.extended_resources.items())),
        "gpuMarking": gpu,
        "rules": len(rules),
    }
    if skipped_rules:
        doc["skippedRules"] = [
            {**rule_origin(r), "reason": "exceeded its evaluation budget: skipped on every node"}
            for r in skipped_rules
        ]
    if label is not None:
        doc["label"] = explain_one(
            label, labels, rejected, rules, features, worker_names, sources, policy
        )
    return doc


def _gpu_detail(hardware: bool) -> str:
    if hardware:
        return "GPU marking (NVIDIA PCI device)"
    return "GPU marking (NVIDIA labels)"


def explain_one(
    label: str,
    labels: list[dict[str, Any]],
    rejected: list[Any],
    rules: list[Any],
    features: Features,
    worker_names: set[str],
    sources: LabelSources | None = None,
    policy: PolicyConfig | None = None,
) -> dict[str, Any]:
    """One label: its origin if set; else why not (rejected by the policy, or for each
    rule that names it the first missing feature or failed matchExpression)."""
    policy = policy or PolicyConfig()
    name = _qualify(label, policy)
    out: dict[str, Any] = {"name": name}
    present = next((e for e in labels if e["name"] == name), None)
    if present is not None:
        out.update(set=True, value=present["value"], origin={**present})
        del out["origin"]["name"], out["origin"]["value"]
    else:
        out["set"] = False
        why = next((r for r in rejected if r.name == name), None)
        if policy.disable_labels:
            out["rejected"] = "restrictions.disableLabels: this master sets no labels"
        elif why is not None:
            out["rejected"] = why.reason
        elif sources and name in sources:
            key = sources[name][-1][0]
            out["rejected"] = (
                f"given by NodeFeature {key[0]}/{key[1]} but not kept by the label policy"
            )
        elif name in worker_names:
            out["rejected"] = "sent by the worker but not kept by the label policy"
    if not rules:
        return out
    explanation = explain_label(rules, features, name)
    out["rulesThatSetIt"] = [rule_origin(_named(rules, v)) for v in explanation.set_by]
    out["rulesThatDidNotMatch"] = [
        {**rule_origin(_named(rules, v)), "failed": v.failed} for v in explanation.not_matched
    ]
    return out


def _named(rules: list[Any], verdict: Any) -> Any:
    for rule in rules:
        if rule.name == verdict.rule and str(getattr(rule, "origin", "")) == verdict.origin:
            return rule
    return rules[0]


STANDBY = (
    "this nfd-master is a standby replica (leader election is on and another replica "
    "leads): only the leader holds node state. Ask through the nfd-master Service, which "
    "routes only to the ready leader, or to the leader's own address.\n"
)
MAX_LABEL_QUERY = 317  # a label name's limit: 253-character prefix, '/', 63-character name
# Explanations evaluated at once; more answer 429 at once, so a burst of requests costs
# at most this many rule evaluations in parallel (each a few ms to a few hundred).
MAX_CONCURRENT = 4


def explain_route(
    explain: Callable[[str, str | None], dict[str, Any] | None],
    leader: Callable[[], bool],
    concurrent: int = MAX_CONCURRENT,
) -> Callable[[str, dict[str, list[str]]], tuple[int, str, bytes]]:
    """The /explain/<node>[?label=NAME] handler for nfd.metrics_http."""
    import json
    import threading
    from urllib.parse import unquote

    from nfd.labels import node_name_error

    slots = threading.BoundedSemaphore(concurrent)

    def text(code: int, message: str) -> tuple[int, str, bytes]:
        return code, "text/plain; charset=utf-8", message.encode()

    def handle(rest: str, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        if not leader():
            return text(503, STANDBY)
        node = unquote(rest).strip("/")
        if not node:
            return text(400, "usage: GET /explain/<node>[?label=NAME]\n")
        why = node_name_error(node)
        if why is not None:
            return text(400, f"{why}\n")
        given = query.get("label")
        label = given[0] if given else None
        if label is not None and not 0 < len(label) <= MAX_LABEL_QUERY:
            return text(400, f"label: a name of 1 to {MAX_LABEL_QUERY} characters\n")
        if not slots.acquire(blocking=False):
            return text(429, f"busy: {concurrent} explanations in progress; try again\n")
        try:
            doc = explain(node, label)
        finally:
            slots.release()
        if doc is None:
            return text(
                404,
                f"nfd-master holds no state for node {node}: neither an nfd-worker nor a "
                "NodeFeature object has given it features since it started (or the Node does "
                "not exist)\n",
            )
        body = json.dumps(doc, indent=1, sort_keys=True) + "\n"
        return 200, "application/json", body.encode()

    return handle
