"""``validate_rules``: every problem in a rule set, found without any features.

It checks what upstream's ``kubectl nfd validate`` checks (names, label,
annotation, taint and extended-resource keys and values, templates, feature
names) plus what upstream only finds at evaluation time (operand counts,
integers, version strings, GtLt bounds, regexps). Unprefixed label,
annotation and extended-resource names are checked with the default
namespace added, as the master adds it; ``@`` dynamic values are checked with
a dummy value, as upstream does.
"""

from __future__ import annotations

import re
from typing import Any

from nfd import DEFAULT_LABEL_NS
from nfd.labels import name_errors, value_errors
from nfd.rules.errors import RuleError, TemplateError
from nfd.rules.model import FeatureTerm, Rule
from nfd.rules.schema import load_rules
from nfd.rules.template import Template

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
ANNOTATION_VALUE_LIMIT = 1024
_QUANTITY_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?")


def _ns_allowed(ns: str, default_ns: str, extra: tuple[str, ...] = ()) -> bool:
    if ns != "kubernetes.io" and not ns.endswith(".kubernetes.io"):
        return True
    allowed = (default_ns,) + extra
    return ns in allowed or any(ns.endswith("." + a) for a in allowed)


def _key_problems(
    key: str, what: str, default_ns: str, extra_ns: tuple[str, ...] = ()
) -> list[str]:
    full = key if "/" in key else f"{default_ns}/{key}"
    problems = [f"invalid {what} name {key!r}: {p}" for p in name_errors(full)]
    ns = full.partition("/")[0]
    if not problems and not _ns_allowed(ns, default_ns, extra_ns):
        problems.append(f"{what} {key!r}: namespace {ns!r} is not allowed")
    return problems


def label_problems(key: str, value: str) -> list[str]:
    problems = _key_problems(key, "label", DEFAULT_LABEL_NS, ("profile.node.kubernetes.io",))
    checked = "0" if value.startswith("@") else value
    problems += [f"label {key!r}: invalid value {value!r}: {p}" for p in value_errors(checked)]
    if value.startswith("@") and len(value[1:].split(".", 2)) != 3:
        problems.append(f"label {key!r}: dynamic value {value!r} is not '@domain.feature.element'")
    return problems


def annotation_problems(key: str, value: str) -> list[str]:
    problems = _key_problems(key, "annotation", DEFAULT_LABEL_NS)
    if len(value) > ANNOTATION_VALUE_LIMIT:
        problems.append(
            f"annotation {key!r}: value longer than {ANNOTATION_VALUE_LIMIT} characters"
        )
    return problems


def taint_problems(taint: dict[str, str]) -> list[str]:
    key, effect = taint.get("key", ""), taint.get("effect", "")
    where = f"taint {key}={taint.get('value', '')}:{effect}"
    problems = [f"{where}: invalid key: {p}" for p in name_errors(key)]
    ns = key.partition("/")[0] if "/" in key else ""
    if not ns:
        problems.append(f"{where}: unprefixed keys are not allowed")
    elif not _ns_allowed(ns, DEFAULT_LABEL_NS):
        problems.append(f"{where}: namespace {ns!r} is not allowed")
    value = taint.get("value", "")
    problems += [f"{where}: invalid value: {p}" for p in value_errors(value)]
    if not effect:
        problems.append(f"{where}: empty taint effect")
    elif effect not in TAINT_EFFECTS:
        problems.append(
            f"{where}: invalid taint effect (expected one of {', '.join(TAINT_EFFECTS)})"
        )
    return problems


def extended_resource_problems(key: str, value: str) -> list[str]:
    problems = _key_problems(key, "extended resource", DEFAULT_LABEL_NS)
    checked = "0" if value.startswith("@") else value
    if not _QUANTITY_RE.fullmatch(checked):
        problems.append(f"extended resource {key!r}: invalid quantity {value!r}")
    return problems


def _term_problems(terms: list[FeatureTerm], where: str) -> list[str]:
    problems = []
    for i, term in enumerate(terms):
        here = f"{where}[{i}] (feature {term.feature!r})"
        if "." not in term.feature:
            problems.append(f"{here}: invalid feature name (not <domain>.<feature>)")
        for key, expr in (term.match_expressions or {}).items():
            problems += [f"{here}.matchExpressions.{key}: {p}" for p in expr.problems()]
        if term.match_name is not None:
            problems += [f"{here}.matchName: {p}" for p in term.match_name.problems()]
    return problems


def rule_problems(rule: Rule) -> list[str]:
    """Problems of one loaded rule, each prefixed with its field."""
    problems: list[str] = []
    if not rule.name:
        problems.append("name: must not be empty")
    for key, value in rule.labels.items():
        problems += [f"labels: {p}" for p in label_problems(key, value)]
    for key, value in rule.annotations.items():
        problems += [f"annotations: {p}" for p in annotation_problems(key, value)]
    for i, taint in enumerate(rule.taints):
        problems += [f"taints[{i}]: {p}" for p in taint_problems(taint)]
    for key, value in rule.extended_resources.items():
        problems += [f"extendedResources: {p}" for p in extended_resource_problems(key, value)]
    for field_name, source in (
        ("labelsTemplate", rule.labels_template),
        ("varsTemplate", rule.vars_template),
    ):
        if source:
            try:
                Template(source)
            except TemplateError as err:
                problems.append(f"{field_name}: invalid template: {err}")
    problems += _term_problems(rule.match_features, "matchFeatures")
    for i, terms in enumerate(rule.match_any):
        problems += _term_problems(terms, f"matchAny[{i}].matchFeatures")
    return problems


def validate_rules(data: Any, origin: str = "", *, worker: bool = False) -> list[str]:
    """Every problem in ``data`` (text, parsed data or loaded rules), one line each."""
    if isinstance(data, list) and all(isinstance(r, Rule) for r in data) and data:
        rules = data
    else:
        try:
            rules = load_rules(data, origin, worker=worker)
        except RuleError as err:
            return [str(err)]
    problems = []
    for index, rule in enumerate(rules):
        where = (
            f"{rule.origin or origin}: rule {rule.name!r}"
            if rule.name
            else (f"{rule.origin or origin}: rule #{index}")
        )
        problems += [f"{where}: {p}" for p in rule_problems(rule)]
    return problems
