"""Regular expressions with RE2 semantics, as upstream's Go ``regexp``.

RE2 matches in linear time, so a pattern from a rule or a config file cannot
hang the worker or the master the way a backtracking ``re`` pattern can. Every
user-supplied pattern goes through here; ``re`` is for our own fixed formats.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2


class RegexError(ValueError):
    """A pattern that RE2 does not accept."""


def _options() -> Any:
    options = re2.Options()
    # Go's regexp works on UTF-8 text and never falls back to backtracking; RE2's own
    # logging of bad patterns is replaced by RegexError.
    options.log_errors = False
    return options


_OPTIONS = _options()


@lru_cache(maxsize=4096)
def compile_re2(pattern: str) -> Any:
    """Compile ``pattern`` with RE2 (cached); raise RegexError with RE2's reason."""
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as err:
        reason = err.args[0] if err.args else err
        if isinstance(reason, bytes):  # the binding passes RE2's message through as bytes
            reason = reason.decode("utf-8", "replace")
        raise RegexError(f"invalid regular expression {pattern!r}: {reason}") from None


def search(pattern: str, text: str) -> bool:
    """Unanchored match, as Go's ``MatchString``."""
    return compile_re2(pattern).search(text) is not None
