"""Left-to-right scanners for the parsers that replaced regexes on the worker's path.

Each returns the index of the first character at or after ``pos`` that is not
of its class (``len(text)`` at the end), so a parser reads ``text[pos:end]``.
``re`` is kept off the worker's start-up (docs/startup.md); these say which
regex class each parser keeps.
"""

from __future__ import annotations

_ASCII_DIGITS = "0123456789"


def ascii_digits_end(text: str, pos: int) -> int:
    """``[0-9]*`` from ``pos``."""
    while pos < len(text) and text[pos] in _ASCII_DIGITS:
        pos += 1
    return pos


def decimals_end(text: str, pos: int) -> int:
    r"""Python re's ``\d*`` on str (any Unicode decimal digit: str.isdecimal) from ``pos``."""
    while pos < len(text) and text[pos].isdecimal():
        pos += 1
    return pos


def spaces_end(text: str, pos: int) -> int:
    r"""Python re's ``\s*`` on str (str.isspace) from ``pos``."""
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos
