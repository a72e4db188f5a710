"""The rule engine: NodeFeatureRule rules, evaluated against raw features.

Public API (used by the custom source, the master and ``nfd dryrun``/``validate``;
keep these names stable):

``load_rules(data, origin, *, worker=False) -> list[Rule]``
    Parse rules from YAML/JSON text or parsed data: a NodeFeatureRule object,
    a list of them (taken in ``metadata.name`` order, as the master does),
    the bare spec ``{rules: [...]}`` or a bare list of rules. Raises
    RuleError naming the origin, the rule and the field. ``worker=True``
    accepts the worker-only shorthands and the legacy ``matchOn`` format.

``execute_rules(rules, features, *, resolve_dynamic=True, budget=None) -> RuleOutput``
    Run the rules in order. Each rule's labels and vars feed the
    ``rule.matched`` feature for later rules (on a copy: ``features`` is not
    changed). A rule that errors is skipped and its error recorded in
    ``RuleOutput.errors`` and its name in ``RuleOutput.failed_rules``; the
    others still apply. ``@domain.feature.element`` label and
    extended-resource values are resolved at the end, as the master does.

``EvalBudget(max_steps, max_seconds)``, ``DEFAULT_BUDGET``
    What one rule's whole evaluation may cost (match expressions, matchAny
    elements, regexps, template calls, pipelines, function calls, range
    iterations). ``budget=None`` means ``DEFAULT_BUDGET`` (1,000,000 steps,
    2 s). A rule over it fails with ``RuleBudgetExceeded`` (a
    ``RuleExecutionError``) naming the rule and the budget.

``RuleOutput``
    ``labels``, ``annotations``, ``taints`` (``{"key", "value", "effect"}``),
    ``extended_resources``, ``vars``, ``errors``, ``matched_rules``,
    ``failed_rules``; ``to_dict()`` gives the ``nfd dryrun`` document. Keys
    are as the rules wrote them (no namespace added, nothing validated).

``validate_rules(data_or_rules, origin="", *, worker=False) -> list[str]``
    Every problem, one line each, naming origin, rule and field.

``static_rules() -> list[Rule]``
    The worker's built-in ``rdma.capable`` and ``rdma.available`` rules.

``MAX_RULE_TEXT_BYTES``, ``MAX_RULES``, ... (nfd.rules.limits)
    The input size limits ``load_rules`` enforces, each a RuleError naming it.
"""

from __future__ import annotations

from nfd.rules.budget import DEFAULT_BUDGET, EvalBudget
from nfd.rules.engine import (
    RULE_BACKREF_FEATURE,
    RuleOutput,
    dynamic_value,
    execute_rule,
    execute_rules,
)
from nfd.rules.errors import (
    ExpressionError,
    RuleBudgetExceeded,
    RuleError,
    RuleExecutionError,
    TemplateError,
)
from nfd.rules.expression import OPS, MatchExpression
from nfd.rules.limits import (
    MAX_EXPRESSION_VALUES,
    MAX_EXPRESSIONS_PER_RULE,
    MAX_EXPRESSIONS_PER_TERM,
    MAX_MATCH_ANY,
    MAX_NAME_LENGTH,
    MAX_RULE_TEXT_BYTES,
    MAX_RULES,
    MAX_TEMPLATE_BYTES,
    MAX_TERMS_PER_RULE,
)
from nfd.rules.model import FeatureTerm, Rule
from nfd.rules.schema import load_rules
from nfd.rules.static import static_rules
from nfd.rules.validate import validate_rules

__all__ = [
    "DEFAULT_BUDGET",
    "MAX_EXPRESSIONS_PER_RULE",
    "MAX_EXPRESSIONS_PER_TERM",
    "MAX_EXPRESSION_VALUES",
    "MAX_MATCH_ANY",
    "MAX_NAME_LENGTH",
    "MAX_RULES",
    "MAX_RULE_TEXT_BYTES",
    "MAX_TEMPLATE_BYTES",
    "MAX_TERMS_PER_RULE",
    "OPS",
    "RULE_BACKREF_FEATURE",
    "EvalBudget",
    "ExpressionError",
    "FeatureTerm",
    "MatchExpression",
    "Rule",
    "RuleBudgetExceeded",
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
