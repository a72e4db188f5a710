"""The work one rule may do: a step count and a wall-clock limit over its whole evaluation.

Every unit of work charges the rule's :class:`Meter`: each feature term and matchAny
element, each match expression evaluated (an ``InRegexp`` one step per pattern), each
template call, pipeline, command, function call and range iteration. A rule that runs
out gets :class:`BudgetExhausted`, which the engine turns into ``RuleBudgetExceeded``;
the other rules go on. Without a budget a template of nested ``{{template}}`` calls
that emits nothing can fan out 2^40 times and never end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EvalBudget:
    """The most one rule may cost: ``max_steps`` units of work and ``max_seconds`` of time."""

    max_steps: int
    max_seconds: float

    def __str__(self) -> str:
        return f"{self.max_steps} steps / {self.max_seconds:g}s"


# The heaviest rules we know (bench/bench_rules.py, the upstream e2e rules, the test
# suites) take under 3,000 steps and a few milliseconds; a template ranging over 10,000
# devices with a few calls each is ~100,000. A million steps is ~1 s of Python.
DEFAULT_BUDGET = EvalBudget(max_steps=1_000_000, max_seconds=2.0)

# The clock is read once every this many steps (and at every template function call,
# where one step can be slow), so counting stays a couple of integer operations.
_CLOCK_EVERY = 256


class BudgetExhausted(Exception):  # noqa: N818 - an outcome, caught by the engine
    """A rule ran out of its budget; the message says which limit."""


class Meter:
    """The budget of one rule's evaluation as it is spent."""

    __slots__ = ("budget", "steps", "deadline", "_next_clock")

    def __init__(self, budget: EvalBudget = DEFAULT_BUDGET) -> None:
        self.budget = budget
        self.steps = 0
        self.deadline = time.monotonic() + budget.max_seconds
        self._next_clock = (
            _CLOCK_EVERY if budget.max_steps >= _CLOCK_EVERY else budget.max_steps + 1
        )

    def charge(self, steps: int = 1) -> None:
        """Spend ``steps``; raise BudgetExhausted when the budget is gone."""
        self.steps += steps
        if self.steps >= self._next_clock:
            self._check()

    def check_clock(self) -> None:
        """Read the clock now (before work that may be slow on its own)."""
        if time.monotonic() > self.deadline:
            self._out_of_time()

    def left(self) -> int:
        """Steps still available."""
        return self.budget.max_steps - self.steps

    def _check(self) -> None:
        if self.steps > self.budget.max_steps:
            raise BudgetExhausted(f"more than {self.budget.max_steps} steps")
        if time.monotonic() > self.deadline:
            self._out_of_time()
        self._next_clock = min(self.steps + _CLOCK_EVERY, self.budget.max_steps + 1)

    def _out_of_time(self) -> None:
        raise BudgetExhausted(f"more than {self.budget.max_seconds:g}s")
