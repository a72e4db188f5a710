"""The rule engine: NodeFeatureRule rules, evaluated against raw features.

Public API (used by the custom source, the master and ``nfd dryrun``/``validate``;
keep these names stable):

``load_rules(data, origin, *, worker=False) -> list[Rule]``
    Parse rules from YAML/JSON text or parsed data: a NodeFeatureRule object,
    a list of them (taken in ``metadata.name`` order, as the master does),
    the bare spec ``{rules: [...]}`` or a bare list of rules. Raises
    RuleError naming the origin, the rule and the field. ``worker=True``
    accepts the worker-only shorthands and the legacy ``matchOn`` format.

``execute_rules(rules, features, *, resolve_dynamic=True) -> RuleOutput``
    Run the rules in order. Each rule's labels and vars feed the
    ``rule.matched`` feature for later rules (on a copy: ``features`` is not
    changed). A rule that errors is skipped and its error recorded in
    ``RuleOutput.errors``; the others still apply. ``@domain.feature.element``
    label and extended-resource values are resolved at the end, as the master
    does.

``RuleOutput``
    ``labels``, ``annotations``, ``taints`` (``{"key", "value", "effect"}``),
    ``extended_resources``, ``vars``, ``errors``, ``matched_rules``;
    ``to_dict()`` gives the ``nfd dryrun`` document. Keys are as the rules
    wrote them (no namespace added, nothing validated).

``validate_rules(data_or_rules, origin="", *, worker=False) -> list[str]``
    Every problem, one line each, naming origin, rule and field.

``static_rules() -> list[Rule]``
    The worker's built-in ``rdma.capable`` and ``rdma.available`` rules.
"""

from __future__ import annotations

from nfd.rules.engine import (
    RULE_BACKREF_FEATURE,
    RuleExecutionError,
    RuleOutput,
    dynamic_value,
    execute_rule,
    execute_rules,
)
from nfd.rules.errors import ExpressionError, RuleError, TemplateError
from nfd.rules.expression import OPS, MatchExpression
from nfd.rules.schema import FeatureTerm, Rule, load_rules
from nfd.rules.static import static_rules

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nfd.rules.validate import validate_rules

__all__ = [
    "OPS",
    "RULE_BACKREF_FEATURE",
    "ExpressionError",
    "FeatureTerm",
    "MatchExpression",
    "Rule",
    "RuleError",
    "RuleExecutionError",
    "RuleOutput",
    "TemplateError",
    "dynamic_value",
    "execute_rule",
    "execute_rules",
    "load_rules",
    "static_rules",
    "validate_rules",
]


def __getattr__(name: str) -> object:
    # validate_rules is loaded on first use (PEP 562): it brings nfd.labels and
    # re, which the worker's discovery path never needs.
    if name == "validate_rules":
        from nfd.rules.validate import validate_rules

        globals()[name] = validate_rules  # later look-ups skip this hook
        return validate_rules
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
