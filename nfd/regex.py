"""Regular expressions with RE2 semantics, as upstream's Go ``regexp``.

RE2 matches in linear time, so a pattern from a rule or a config file cannot
hang the worker or the master the way a backtracking ``re`` pattern can.

``re2`` is imported on the first compile, not with this module: a worker whose
rules use no regular expression never loads it.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# pattern -> compiled RE2 object. A plain dict rather than functools.lru_cache
# (start-up time); emptied when full so it stays bounded.
_CACHE_SIZE = 4096
_compiled: dict[str, Any] = {}


class RegexError(ValueError):
    """A pattern that RE2 does not accept."""


def compile_re2(pattern: str) -> Any:
    """Compile ``pattern`` with RE2 (cached); raise RegexError with RE2's reason."""
    compiled = _compiled.get(pattern)
    if compiled is not None:
        return compiled
    import re2

    options = re2.Options()
    # Go's regexp works on UTF-8 text and never falls back to backtracking.
    options.log_errors = False
    try:
        compiled = re2.compile(pattern, options)
    except re2.error as err:
        reason = err.args[0] if err.args else err
        if isinstance(reason, bytes):  # the binding passes RE2's message through as bytes
            reason = reason.decode("utf-8", "replace")
        raise RegexError(f"invalid regular expression {pattern!r}: {reason}") from None
    if len(_compiled) >= _CACHE_SIZE:
        _compiled.clear()
    _compiled[pattern] = compiled
    return compiled


def search(pattern: str, text: str) -> bool:
    """Unanchored match, as Go's ``MatchString``."""
    return compile_re2(pattern).search(text) is not None
