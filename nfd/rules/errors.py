"""The rule engine's error types: every problem names where it happened."""

from __future__ import annotations


class RuleError(ValueError):
    """A rule document that cannot be loaded: names origin, rule and field."""


class ExpressionError(ValueError):
    """An expression that cannot be evaluated (upstream aborts the rule)."""


class TemplateError(ValueError):
    """A labelsTemplate/varsTemplate that cannot be parsed or executed."""


class RuleExecutionError(ValueError):
    """A rule that errored; the message names the rule and what failed."""


class RuleBudgetExceeded(RuleExecutionError):  # noqa: N818 - the name other code uses
    """A rule that ran out of its evaluation budget; the message names rule and budget."""
