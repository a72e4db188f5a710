"""Why a label is or is not set by a list of NodeFeatureRules, for one node's features.

``explain_label(rules, features, label)`` answers with the rules that set the label
(the last one wins, as in ``execute_rules``) and, for each rule that could set it but
did not match, the first thing that failed: a feature the node lacks, or the first
matchExpression (in the rule's order) that its elements do not satisfy, with the
value the node has. Rules are seen as the master runs them: in order, each seeing
the earlier rules' labels and vars in ``rule.matched``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nfd.features import Features
from nfd.rules.budget import Meter
from nfd.rules.engine import RULE_BACKREF_FEATURE, execute_rule, execute_rules
from nfd.rules.errors import ExpressionError, RuleExecutionError
from nfd.rules.expression import MatchExpression, match_multi, match_names_multi
from nfd.rules.model import FeatureTerm, Rule

DEFAULT_NS = "feature.node.kubernetes.io/"


@dataclass(frozen=True)
class RuleVerdict:
    rule: str
    origin: str
    # "" when the rule matched (and so set the label); else what failed first.
    failed: str = ""


@dataclass
class Explanation:
    label: str
    value: str | None  # None: the rules do not set it
    set_by: list[RuleVerdict] = field(default_factory=list)
    not_matched: list[RuleVerdict] = field(default_factory=list)
    # The label is written by a rule's labelsTemplate: whether it sets this label
    # depends on the template's output, so these rules are listed apart.
    templated: list[RuleVerdict] = field(default_factory=list)


def _key(label: str) -> str:
    return label.removeprefix(DEFAULT_NS)


def could_set(rule: Rule, label: str) -> bool:
    """The rule names the label in ``labels`` (either spelling of the default namespace)."""
    return any(_key(name) == _key(label) for name in rule.labels)


def _features_before(rules: list[Rule], index: int, features: Features) -> Features:
    """The features as rule ``index`` sees them: ``rule.matched`` holds what the earlier
    rules set (the engine's chaining)."""
    if index == 0:
        return features
    earlier = execute_rules(rules[:index], features, resolve_dynamic=False)
    backrefs = dict(features.attributes.get(RULE_BACKREF_FEATURE, {}))
    ran_ok = len(earlier.failed_rules) < index
    if not ran_ok and RULE_BACKREF_FEATURE not in features.attributes:
        return features
    backrefs.update(earlier.labels)
    backrefs.update(earlier.vars)
    attributes = dict(features.attributes)
    attributes[RULE_BACKREF_FEATURE] = backrefs
    return Features(flags=features.flags, attributes=attributes, instances=features.instances)


def _describe(
    name: str,
    expr: MatchExpression,
    flags: set[str] | None,
    attrs: dict[str, str] | None,
    insts: list[dict[str, str]] | None,
) -> str:
    if attrs is not None and name in attrs:
        has = f"the node has {name}={attrs[name]!r}"
    elif flags is not None and name in flags:
        has = f"the node has flag {name}"
    elif insts:
        values = sorted({i[name] for i in insts if name in i})
        has = f"instances have {name} in {values}" if values else f"no instance has {name}"
    else:
        has = f"the node has no {name}"
    return f"{name} {expr}: {has}"


def term_failure(term: FeatureTerm, features: Features) -> str:
    """What of ``term`` the node's features fail first; "" when they match it."""
    name = term.feature.lower()
    flags = features.flags.get(name)
    attrs = features.attributes.get(name)
    insts = features.instances.get(name)
    if flags is None and attrs is None and insts is None:
        return f"feature {term.feature!r} is not present on the node"
    meter = Meter()
    if term.match_expressions is not None:
        for key, expr in term.match_expressions.items():
            matched, _ = match_multi({key: expr}, flags, attrs, insts, meter)
            if not matched:
                return f"feature {term.feature!r}: " + _describe(key, expr, flags, attrs, insts)
        matched, _ = match_multi(term.match_expressions, flags, attrs, insts, meter)
        if not matched:
            keys = ", ".join(term.match_expressions)
            return f"feature {term.feature!r}: no single instance satisfies all of {keys}"
    if term.match_name is not None:
        matched, _ = match_names_multi(term.match_name, flags, attrs, insts, meter)
        if not matched:
            return f"feature {term.feature!r}: no element name matches {term.match_name}"
    return ""


def terms_failure(terms: list[FeatureTerm], features: Features) -> str:
    for term in terms:
        why = term_failure(term, features)
        if why:
            return why
    return ""


def rule_failure(rule: Rule, features: Features) -> str:
    """What the rule fails on first for ``features``; "" when it matches."""
    try:
        if rule.match_any:
            reasons = [terms_failure(terms, features) for terms in rule.match_any]
            if all(reasons):
                return (
                    f"matchAny: none of its {len(reasons)} entries match; the first: {reasons[0]}"
                )
        if rule.match_features:
            why = terms_failure(rule.match_features, features)
            if why:
                return why
    except ExpressionError as err:
        return f"evaluation error: {err}"
    try:
        matched = execute_rule(rule, features).matched
    except RuleExecutionError as err:
        return f"evaluation error: {err}"
    return "" if matched else "it did not match"


def explain_label(rules: list[Rule], features: Features, label: str) -> Explanation:
    out = execute_rules(rules, features)
    value = next((v for k, v in out.labels.items() if _key(k) == _key(label)), None)
    explanation = Explanation(label, value)
    for index, rule in enumerate(rules):
        named = could_set(rule, label)
        if not named and not rule.labels_template:
            continue
        seen = _features_before(rules, index, features)
        why = rule_failure(rule, seen)
        verdict = RuleVerdict(rule.name, rule.origin, why)
        if not named:
            if not why:
                explanation.templated.append(verdict)
        elif why:
            explanation.not_matched.append(verdict)
        else:
            explanation.set_by.append(verdict)
    return explanation


def render(explanation: Explanation) -> str:
    """Plain text, one fact per line."""
    lines = []
    e = explanation
    if e.value is not None:
        lines.append(f"{e.label}={e.value}")
    else:
        lines.append(f"{e.label}: not set by these rules")
    for v in e.set_by:
        lines.append(f"  set by rule {v.rule!r}" + (f" ({v.origin})" if v.origin else ""))
    if e.value is not None and not e.set_by:
        for v in e.templated:
            lines.append(f"  set by the labelsTemplate of rule {v.rule!r}")
    for v in e.not_matched:
        lines.append(f"  rule {v.rule!r} could set it but did not match: {v.failed}")
    if e.value is None and not e.not_matched:
        lines.append("  no rule names it in its labels")
    return "\n".join(lines) + "\n"
