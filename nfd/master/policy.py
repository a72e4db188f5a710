"""The master's label policy: which labels, annotations, extended resources and taints
a node may get (upstream HEAD semantics, reference §3 and §7.3). Pure functions.

Every refused item becomes a Rejection (kind, name, reason); one bad item never costs
the node its other labels.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nfd.labels import name_errors, value_errors
from nfd.regex import RegexError, compile_re2

DEFAULT_NS = "feature.node.kubernetes.io"
PROFILE_NS = "profile.node.kubernetes.io"
NFD_ANNOTATION_NS = "nfd.node.kubernetes.io"
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
MAX_ANNOTATION_VALUE = 1024
# Labels only the GPU marking stage may write (workers and rules are refused), so a
# worker cannot place the GPU Operator's driver on a node.
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
GPU_DEPLOY_PREFIX = "nvidia.com/gpu.deploy."

# Kubernetes resource.Quantity syntax (number, optional binary/decimal SI suffix or exponent).
_QUANTITY_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?$")


class PolicyError(ValueError):
    """A policy flag is malformed (e.g. an invalid --label-whitelist regexp)."""


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        # kubernetes Taint.ToString(): key=value:effect, or key:effect without a value.
        if self.value:
            return f"{self.key}={self.value}:{self.effect}"
        return f"{self.key}:{self.effect}"

    def to_dict(self) -> dict[str, str]:
        out = {"key": self.key, "effect": self.effect}
        if self.value:
            out["value"] = self.value
        return out


MAX_REPORTED_NAME = 256


@dataclass(frozen=True)
class Rejection:
    kind: str  # label, annotation, extended-resource, taint
    name: str
    reason: str

    def __post_init__(self) -> None:
        # A hostile name is reported (log, metric, ack) only by its beginning.
        if len(self.name) > MAX_REPORTED_NAME:
            object.__setattr__(self, "name", self.name[:MAX_REPORTED_NAME] + "...")
        if len(self.reason) > 2 * MAX_REPORTED_NAME:
            object.__setattr__(self, "reason", self.reason[: 2 * MAX_REPORTED_NAME] + "...")


@dataclass
class Desired:
    """Everything NFD wants on one node."""

    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    extended_resources: dict[str, str] = field(default_factory=dict)
    taints: list[Taint] = field(default_factory=list)
    # Not written anywhere: the worker's raw features show an NVIDIA GPU, an input of
    # the GPU marking stage that does not depend on the label names the worker chose.
    gpu_hardware: bool = False


@dataclass(frozen=True)
class PolicyConfig:
    extra_label_ns: frozenset[str] = frozenset()
    deny_label_ns: frozenset[str] = frozenset()
    label_whitelist: str | None = None
    resource_labels: frozenset[str] = frozenset()
    enable_taints: bool = False
    gpu_marking: bool = True
    # restrictions.disableLabels / disableExtendedResources / disableAnnotations (upstream
    # v0.19): nothing of that kind is wanted on any node, so what NFD owns of it goes.
    disable_labels: bool = False
    disable_extended_resources: bool = False
    disable_annotations: bool = False
    # Feature gate DisableAutoPrefix: unprefixed names stay unprefixed.
    disable_auto_prefix: bool = False

    def __post_init__(self) -> None:
        if self.label_whitelist is not None:
            try:
                compile_re2(self.label_whitelist)
            except RegexError as err:
                raise PolicyError(f"--label-whitelist: {err}") from None


def auto_prefix(name: str) -> str:
    """Unprefixed names get the default namespace (feature gate DisableAutoPrefix off)."""
    return name if "/" in name else f"{DEFAULT_NS}/{name}"


def prefix_names(names: Mapping[str, str], disabled: bool = False) -> dict[str, str]:
    """Upstream's addNsToMapKeys: unprefixed keys get the default namespace, and where
    a map has both ``x`` and ``feature.node.kubernetes.io/x`` the prefixed one wins.
    ``disabled`` (DisableAutoPrefix): the keys as they are."""
    if disabled:
        return dict(names)
    out: dict[str, str] = {}
    for key, value in names.items():
        if "/" in key:
            out[key] = value
        elif f"{DEFAULT_NS}/{key}" not in names:
            out[f"{DEFAULT_NS}/{key}"] = value
    return out


def strip_default_ns(name: str) -> str:
    prefix = DEFAULT_NS + "/"
    return name[len(prefix) :] if name.startswith(prefix) else name


def _in_ns_family(ns: str, base: str) -> bool:
    return ns == base or ns.endswith("." + base)


def _kubernetes_ns_denied(ns: str, allowed: Iterable[str]) -> bool:
    """kubernetes.io and *.kubernetes.io are reserved, except the allowed namespaces and
    their sub-namespaces."""
    if not _in_ns_family(ns, "kubernetes.io"):
        return False
    return not any(_in_ns_family(ns, a) for a in allowed)


def _deny_listed(ns: str, deny: Iterable[str]) -> bool:
    for entry in deny:
        if entry.startswith("*"):
            if ns.endswith(entry[1:]):  # "*" alone denies everything
                return True
        elif ns == entry:
            return True
    return False


def is_gpu_marking_label(name: str) -> bool:
    return name == GPU_PRESENT_LABEL or name.startswith(GPU_DEPLOY_PREFIX)


def check_label(name: str, value: str, cfg: PolicyConfig) -> str | None:
    """Why the (already prefixed) label may not be set, or None."""
    if errs := name_errors(name):
        return f"invalid name: {'; '.join(errs)}"
    ns, _, base = name.rpartition("/")
    if not ns and not cfg.disable_auto_prefix:
        return "label name must have a namespace"
    denied = _kubernetes_ns_denied(ns, (DEFAULT_NS, PROFILE_NS)) or _deny_listed(
        ns, cfg.deny_label_ns
    )
    if denied and ns not in cfg.extra_label_ns:
        return f"namespace {ns!r} is not allowed"
    if errs := value_errors(value):
        return f"invalid value: {'; '.join(errs)}"
    if cfg.gpu_marking and is_gpu_marking_label(name):
        return "reserved for the GPU marking stage"
    if cfg.label_whitelist is not None and compile_re2(cfg.label_whitelist).search(base) is None:
        return f"name {base!r} does not match --label-whitelist {cfg.label_whitelist!r}"
    return None


def _check_owned_ns(name: str, unprefixed_ok: bool = False) -> str | None:
    """Annotations, extended resources and taints: prefixed (annotations and extended
    resources need not be under DisableAutoPrefix, taints always), not kubernetes.io
    except feature.node.kubernetes.io (and sub-namespaces)."""
    if errs := name_errors(name):
        return f"invalid name: {'; '.join(errs)}"
    ns = name.rpartition("/")[0]
    if not ns:
        return None if unprefixed_ok else "name must have a namespace"
    if _kubernetes_ns_denied(ns, (DEFAULT_NS,)):
        return f"namespace {ns!r} is not allowed"
    return None


def is_quantity(value: str) -> bool:
    return bool(_QUANTITY_RE.match(value.strip()))


def _is_int(value: str) -> bool:
    try:
        int(value, 10)
    except ValueError:
        return False
    return True


def needs_features(labels: Mapping[str, str]) -> bool:
    """Whether a label value is a dynamic ``@domain.feature.element`` reference (the
    caller then passes the node's features to ``build_desired``)."""
    return any(v.startswith("@") for v in labels.values())


def resolve_dynamic_labels(
    labels: Mapping[str, str],
    features: Any,
    rule_output: Any = None,
) -> tuple[dict[str, str], list[Rejection]]:
    """Upstream v0.19's master resolves ``@domain.feature.element`` in every label value
    (filterFeatureLabel), NodeFeature ``spec.labels`` included, against the node's
    features with the rules' ``rule.matched`` feedback. A reference that does not resolve
    costs only its label."""
    from nfd.features import Features
    from nfd.rules.engine import RULE_BACKREF_FEATURE, dynamic_value

    if not needs_features(labels):
        return dict(labels), []
    feats = features if features is not None else Features()
    if rule_output is not None and (rule_output.labels or rule_output.vars):
        backrefs = dict(feats.attributes.get(RULE_BACKREF_FEATURE, {}))
        backrefs.update(rule_output.labels)
        backrefs.update(rule_output.vars)
        feats = Features(
            flags=feats.flags,
            attributes={**feats.attributes, RULE_BACKREF_FEATURE: backrefs},
            instances=feats.instances,
        )
    out: dict[str, str] = {}
    rejected: list[Rejection] = []
    for name, value in labels.items():
        if value.startswith("@"):
            try:
                value = dynamic_value(value, feats)
            except ValueError as err:
                rejected.append(Rejection("label", name, f"dynamic value: {err}"))
                continue
        out[name] = value
    return out, rejected


def build_desired(
    worker_labels: Mapping[str, str],
    cfg: PolicyConfig,
    rule_output: Any = None,
    features: Any = None,
) -> tuple[Desired, list[Rejection]]:
    """Apply the policy to a worker's labels plus NodeFeatureRule output.

    ``rule_output`` is the rules engine's RuleOutput (labels, annotations, taints,
    extended_resources) or None. Rule labels override worker labels. ``features``
    (nfd.features.Features): the node's features, to resolve ``@domain.feature.element``
    label values of the worker and NodeFeature labels (see ``needs_features``); rule
    outputs come resolved from the engine.
    """
    desired = Desired()
    rejected: list[Rejection] = []
    keep = cfg.disable_auto_prefix

    rule_labels: dict[str, str] = {}
    if rule_output is not None:
        rule_labels = prefix_names({k: str(v) for k, v in rule_output.labels.items()}, keep)
    # As upstream, rule labels replace worker labels before the values are resolved.
    worker = {k: v for k, v in prefix_names(worker_labels, keep).items() if k not in rule_labels}
    raw, rejected = resolve_dynamic_labels(worker, features, rule_output)
    raw.update(rule_labels)
    resource_names = set(prefix_names(dict.fromkeys(cfg.resource_labels, ""), keep))
    for name, value in sorted(raw.items()):
        reason = check_label(name, value, cfg)
        if reason:
            rejected.append(Rejection("label", name, reason))
        elif name in resource_names and _is_int(value):
            # --resource-labels: integer labels become extended resources.
            desired.extended_resources[name] = value
        else:
            desired.labels[name] = value

    if rule_output is not None:
        annotations = prefix_names({k: str(v) for k, v in rule_output.annotations.items()}, keep)
        for name, value in sorted(annotations.items()):
            reason = _check_owned_ns(name, keep)
            if not reason and len(value) > MAX_ANNOTATION_VALUE:
                reason = f"value longer than {MAX_ANNOTATION_VALUE} characters"
            if reason:
                rejected.append(Rejection("annotation", name, reason))
            else:
                desired.annotations[name] = value
        resources = prefix_names(
            {k: str(v) for k, v in rule_output.extended_resources.items()}, keep
        )
        for name, value in sorted(resources.items()):
            reason = _check_owned_ns(name, keep)
            if not reason and not is_quantity(value):
                reason = f"value {value!r} is not a resource quantity"
            if reason:
                rejected.append(Rejection("extended-resource", name, reason))
            else:
                desired.extended_resources[name] = value
        seen: set[tuple[str, str]] = set()
        for t in rule_output.taints:
            taint = _taint(t)
            reason = _check_taint(taint, cfg)
            if reason:
                rejected.append(Rejection("taint", str(taint), reason))
            elif (taint.key, taint.effect) not in seen:
                seen.add((taint.key, taint.effect))
                desired.taints.append(taint)
    restrict(desired, cfg)
    return desired, rejected


def restrict(desired: Desired, cfg: PolicyConfig) -> None:
    """restrictions.disable*: as upstream, applied after the checks (a refused item is
    still reported); taints are not affected (they follow enableTaints)."""
    if cfg.disable_labels:
        desired.labels.clear()
    if cfg.disable_extended_resources:
        desired.extended_resources.clear()
    if cfg.disable_annotations:
        desired.annotations.clear()


def _taint(t: Any) -> Taint:
    if isinstance(t, Taint):
        return t
    if isinstance(t, Mapping):
        return Taint(str(t.get("key", "")), str(t.get("value") or ""), str(t.get("effect", "")))
    return Taint(str(t.key), str(getattr(t, "value", "") or ""), str(t.effect))


def _check_taint(taint: Taint, cfg: PolicyConfig) -> str | None:
    if not cfg.enable_taints:
        return "taints are disabled (--enable-taints)"
    if reason := _check_owned_ns(taint.key):
        return reason
    if taint.value and (errs := value_errors(taint.value)):
        return f"invalid value: {'; '.join(errs)}"
    if taint.effect not in TAINT_EFFECTS:
        return f"effect {taint.effect!r} must be one of {', '.join(TAINT_EFFECTS)}"
    return None


def parse_taint(text: str) -> Taint | None:
    """Inverse of str(Taint); None for malformed entries."""
    key_value, sep, effect = text.rpartition(":")
    if not sep or not key_value:
        return None
    key, _, value = key_value.partition("=")
    return Taint(key, value, effect)
