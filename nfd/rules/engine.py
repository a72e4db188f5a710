"""Executing rules against features: upstream's Execute, rule by rule, in order.

After each rule its labels and vars go into the attribute feature
``rule.matched`` so later rules can match on them. That happens on a copy:
the caller's Features are never changed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from nfd.features import Features
from nfd.rules.budget import DEFAULT_BUDGET, BudgetExhausted, EvalBudget, Meter
from nfd.rules.errors import (
    ExpressionError,
    RuleBudgetExceeded,
    RuleExecutionError,
    TemplateError,
)
from nfd.rules.expression import Element, match_multi, match_names_multi
from nfd.rules.model import FeatureTerm, Rule
from nfd.rules.template import Template, expand_map

log = logging.getLogger(__name__)

RULE_BACKREF_FEATURE = "rule.matched"

# domain -> feature -> matched elements, the data templates see.
MatchedFeatures = dict[str, dict[str, list[Element]]]


@dataclass
class RuleOutput:
    """What a set of rules produced. Keys are as the rules wrote them."""

    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    # Each taint: {"key", "value", "effect"}.
    taints: list[dict[str, str]] = field(default_factory=list)
    extended_resources: dict[str, str] = field(default_factory=dict)
    vars: dict[str, str] = field(default_factory=dict)
    # One line per rule that errored (skipped) or dynamic value that failed.
    errors: list[str] = field(default_factory=list)
    # Names of the rules that matched, in order.
    matched_rules: list[str] = field(default_factory=list)
    # Names of the rules that errored (over their budget or otherwise), in order.
    failed_rules: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The ``nfd dryrun`` document."""
        return {
            "labels": dict(sorted(self.labels.items())),
            "annotations": dict(sorted(self.annotations.items())),
            "taints": [dict(t) for t in self.taints],
            "extendedResources": dict(sorted(self.extended_resources.items())),
        }


@dataclass
class SingleRuleOutput:
    """One rule's result: whether it matched, and its labels and vars."""

    matched: bool
    labels: dict[str, str] = field(default_factory=dict)
    vars: dict[str, str] = field(default_factory=dict)


def execute_rules(
    rules: list[Rule],
    features: Features,
    *,
    resolve_dynamic: bool = True,
    budget: EvalBudget | None = None,
) -> RuleOutput:
    """Run ``rules`` in order; a rule that errors is skipped and recorded.

    Each rule gets ``budget`` (DEFAULT_BUDGET when None) for its whole evaluation;
    one that runs out fails with RuleBudgetExceeded, like any other error.

    ``resolve_dynamic`` replaces ``@domain.feature.element`` label and
    extended-resource values as the master does (after all rules ran, so
    ``@rule.matched.x`` sees every rule's output). The worker's custom
    source turns it off, as upstream's worker does not resolve them.
    """
    work = Features(
        flags=features.flags, attributes=dict(features.attributes), instances=features.instances
    )
    backrefs: dict[str, str] = dict(features.attributes.get(RULE_BACKREF_FEATURE, {}))
    if RULE_BACKREF_FEATURE in features.attributes:
        work.attributes[RULE_BACKREF_FEATURE] = backrefs
    out = RuleOutput()
    for rule in rules:
        try:
            result = execute_rule(rule, work, budget)
        except RuleExecutionError as err:
            log.warning("%s", err)
            out.errors.append(str(err))
            out.failed_rules.append(rule.name)
            continue
        # As upstream, the feature exists once a rule ran without error.
        work.attributes[RULE_BACKREF_FEATURE] = backrefs
        if not result.matched:
            continue
        out.matched_rules.append(rule.name)
        out.labels.update(result.labels)
        out.vars.update(result.vars)
        out.annotations.update(rule.annotations)
        out.extended_resources.update(rule.extended_resources)
        out.taints.extend(dict(t) for t in rule.taints)
        # Feed back for later rules, names as written (before any prefixing).
        backrefs.update(result.labels)
        backrefs.update(result.vars)
    if resolve_dynamic:
        out.labels = _resolve(out.labels, work, "label", out.errors)
        out.extended_resources = _resolve(
            out.extended_resources, work, "extended resource", out.errors
        )
    return out


def execute_rule(
    rule: Rule, features: Features, budget: EvalBudget | None = None
) -> SingleRuleOutput:
    """Upstream's Execute with failFast; RuleExecutionError names rule and cause."""
    budget = DEFAULT_BUDGET if budget is None else budget
    try:
        return _execute(rule, features, Meter(budget))
    except (ExpressionError, TemplateError) as err:
        origin = f"{rule.origin}: " if rule.origin else ""
        raise RuleExecutionError(f"{origin}rule {rule.name!r} failed: {err}") from None
    except BudgetExhausted as err:
        origin = f"{rule.origin}: " if rule.origin else ""
        raise RuleBudgetExceeded(
            f"{origin}rule {rule.name!r} failed: exceeded its evaluation budget ({budget}): {err}"
        ) from None


def _execute(rule: Rule, features: Features, meter: Meter) -> SingleRuleOutput:
    labels: dict[str, str] = {}
    vars_: dict[str, str] = {}
    has_templates = bool(rule.labels_template or rule.vars_template)
    if rule.match_any:
        any_matched = False
        for terms in rule.match_any:
            meter.charge()
            matched, data = evaluate_terms(terms, features, meter)
            if not matched:
                continue
            any_matched = True
            if not has_templates:
                break
            _expand(rule, "labelsTemplate", data, labels, meter)
            _expand(rule, "varsTemplate", data, vars_, meter)
        if not any_matched:
            return SingleRuleOutput(False)
    if rule.match_features:
        matched, data = evaluate_terms(rule.match_features, features, meter)
        if not matched:
            return SingleRuleOutput(False)
        if has_templates:
            _expand(rule, "labelsTemplate", data, labels, meter)
            _expand(rule, "varsTemplate", data, vars_, meter)
    labels.update(rule.labels)
    vars_.update(rule.vars)
    return SingleRuleOutput(True, labels, vars_)


def evaluate_terms(
    terms: list[FeatureTerm], features: Features, meter: Meter | None = None
) -> tuple[bool, MatchedFeatures]:
    """Logical AND over the terms, failing fast; also the template data."""
    meter = Meter() if meter is None else meter
    data: MatchedFeatures = {}
    for term in terms:
        meter.charge()
        name = term.feature.lower()
        dom, dot, nam = term.feature.partition(".")
        if not dot:
            dom, nam = name, ""
        per_domain = data.setdefault(dom, {})
        flags = features.flags.get(name)
        attrs = features.attributes.get(name)
        insts = features.instances.get(name)
        if flags is None and attrs is None and insts is None:
            return False, data
        matched = True
        elements: list[Element] = []
        if term.match_expressions is not None:
            try:
                matched, elements = match_multi(term.match_expressions, flags, attrs, insts, meter)
            except ExpressionError as err:
                raise ExpressionError(f"feature {term.feature!r}: {err}") from None
        if matched and term.match_name is not None:
            try:
                matched, name_elems = match_names_multi(term.match_name, flags, attrs, insts, meter)
            except ExpressionError as err:
                raise ExpressionError(f"feature {term.feature!r} matchName: {err}") from None
            elements = elements + name_elems
        per_domain.setdefault(nam, []).extend(elements)
        if not matched:
            return False, data
    return True, data


def _expand(
    rule: Rule, which: str, data: MatchedFeatures, out: dict[str, str], meter: Meter
) -> None:
    source = rule.labels_template if which == "labelsTemplate" else rule.vars_template
    if not source:
        return
    template = rule._templates.get(which)
    if template is None:
        try:
            template = Template(source)
        except TemplateError as err:
            raise TemplateError(f"{which}: failed to parse template: {err}") from None
        rule._templates[which] = template
    try:
        out.update(expand_map(template.execute(data, meter)))
    except TemplateError as err:
        raise TemplateError(f"{which}: failed to expand template: {err}") from None


def dynamic_value(value: str, features: Features) -> str:
    """Resolve ``@domain.feature.element`` from an attribute feature."""
    parts = value[1:].split(".", 2)
    if len(parts) != 3:
        raise ValueError(f"value {value} is not in the form of '@domain.feature.element'")
    feature = parts[0] + "." + parts[1]
    attrs = features.attributes.get(feature)
    if attrs is None:
        raise ValueError(f"feature {feature} not found")
    if parts[2] not in attrs:
        raise ValueError(f"element {parts[2]} not found on feature {feature}")
    return attrs[parts[2]]


def _resolve(
    values: dict[str, str], features: Features, what: str, errors: list[str]
) -> dict[str, str]:
    out = {}
    for key, value in values.items():
        if value.startswith("@"):
            try:
                value = dynamic_value(value, features)
            except ValueError as err:
                message = f"failed to get dynamic value for {what} {key!r}: {err}"
                log.warning("%s", message)
                errors.append(message)
                continue
        out[key] = value
    return out
