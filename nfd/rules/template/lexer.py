"""The template lexer: source text into text pieces and the tokens of each action.

``scan`` splits a template into ``("text", str, line)`` and ``("action", tokens,
line)`` items, applying ``{{-``/``-}}`` trimming and dropping comments; the parser
works on those items only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from nfd.rules.errors import TemplateError

KEYWORDS = frozenset(
    ("if", "else", "end", "range", "with", "define", "template", "block", "break", "continue")
)
_SPACE = " \t\r\n"

# One scanned piece: ("text", text, line) or ("action", tokens, line).
Item = tuple[str, Any, int]


@dataclass
class Token:
    kind: str  # field dot var ident string number bool nil ( ) | := = , keyword
    text: str
    line: int
    space_before: bool = False
    value: Any = None


_NUMBER_RE = re.compile(
    r"[+-]?(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|"
    r"(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9]+)?)"
)
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
}


def unquote_go(literal: str, line: int) -> str:
    """Decode a Go interpreted string literal (without its quotes)."""
    out: list[str] = []
    i = 0
    while i < len(literal):
        c = literal[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(literal):
            raise TemplateError(f"line {line}: unterminated escape in string")
        e = literal[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            digits = literal[i + 2 : i + 2 + width]
            if len(digits) != width or not re.fullmatch(r"[0-9a-fA-F]+", digits):
                raise TemplateError(f"line {line}: invalid \\{e} escape in string")
            out.append(chr(int(digits, 16)) if e != "x" else chr(int(digits, 16)))
            i += 2 + width
        elif e in "01234567":
            digits = literal[i + 1 : i + 4]
            if len(digits) != 3 or not re.fullmatch(r"[0-7]{3}", digits):
                raise TemplateError(f"line {line}: invalid octal escape in string")
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise TemplateError(f"line {line}: unknown escape sequence \\{e}")
    return "".join(out)


def _parse_number(text: str, line: int) -> int | float:
    clean = text.replace("_", "")
    try:
        if re.fullmatch(r"[+-]?0[xXbBoO].*", clean):
            return int(clean, 0)
        if re.fullmatch(r"[+-]?[0-9]+", clean):
            # Go reads a leading 0 as octal.
            digits = clean.lstrip("+-")
            if len(digits) > 1 and digits.startswith("0"):
                value = int(digits, 8)
                return -value if clean.startswith("-") else value
            return int(clean)
        return float(clean)
    except ValueError:
        raise TemplateError(f"line {line}: bad number syntax: {text!r}") from None


def lex_action(src: str, pos: int, line: int) -> tuple[list[Token], int, bool, int]:
    """Tokens of one action starting at ``pos``; returns (tokens, end, trim_right, line)."""
    tokens: list[Token] = []
    space = True
    n = len(src)
    while True:
        if pos >= n:
            raise TemplateError(f"line {line}: unclosed action")
        c = src[pos]
        if c in _SPACE:
            # " -}}" closes with right trim.
            j = pos
            while j < n and src[j] in _SPACE:
                j += 1
            if src.startswith("-}}", j):
                line += src.count("\n", pos, j)
                return tokens, j + 3, True, line
            line += src.count("\n", pos, j)
            pos = j
            space = True
            continue
        if src.startswith("}}", pos):
            return tokens, pos + 2, False, line
        start = pos
        kind = ""
        value: Any = None
        if c == '"':
            j = pos + 1
            while j < n and src[j] != '"':
                if src[j] == "\\":
                    j += 1
                if j < n and src[j] == "\n":
                    raise TemplateError(f"line {line}: unterminated quoted string")
                j += 1
            if j >= n:
                raise TemplateError(f"line {line}: unterminated quoted string")
            kind, value, pos = "string", unquote_go(src[pos + 1 : j], line), j + 1
        elif c == "`":
            j = src.find("`", pos + 1)
            if j < 0:
                raise TemplateError(f"line {line}: unterminated raw quoted string")
            kind, value, pos = "string", src[pos + 1 : j], j + 1
        elif c == "'":
            j = pos + 1
            while j < n and src[j] != "'":
                if src[j] == "\\":
                    j += 1
                j += 1
            if j >= n:
                raise TemplateError(f"line {line}: unterminated character constant")
            char = unquote_go(src[pos + 1 : j], line)
            if len(char) != 1:
                raise TemplateError(f"line {line}: malformed character constant")
            kind, value, pos = "number", ord(char), j + 1
        elif c == "$":
            m = _IDENT_RE.match(src, pos + 1)
            name = "$" + (m.group(0) if m else "")
            kind, value, pos = "var", name, pos + len(name)
        elif c == "." and not (pos + 1 < n and src[pos + 1].isdigit()):
            m = _IDENT_RE.match(src, pos + 1)
            if m:
                kind, value, pos = "field", m.group(0), m.end()
            else:
                kind, pos = "dot", pos + 1
        elif c.isdigit() or c in "+-.":
            m = _NUMBER_RE.match(src, pos)
            if not m or m.end() == pos:
                raise TemplateError(f"line {line}: unexpected {c!r} in action")
            kind, value, pos = "number", _parse_number(m.group(0), line), m.end()
        elif c == ":" and src.startswith(":=", pos):
            kind, pos = ":=", pos + 2
        elif c in "()|=,":
            kind, pos = c, pos + 1
        else:
            m = _IDENT_RE.match(src, pos)
            if not m:
                raise TemplateError(f"line {line}: unexpected {c!r} in action")
            word = m.group(0)
            pos = m.end()
            if word in KEYWORDS:
                kind = "keyword"
            elif word in ("true", "false"):
                kind, value = "bool", word == "true"
            elif word == "nil":
                kind = "nil"
            else:
                kind = "ident"
            value = word if value is None else value
        tokens.append(Token(kind, src[start:pos], line, space, value))
        space = False


def scan(src: str) -> list[Item]:
    """The text pieces and actions of ``src``, in order."""
    items: list[Item] = []
    pos, line = 0, 1
    trim_next = False
    while pos < len(src):
        start = src.find("{{", pos)
        end = len(src) if start < 0 else start
        text = src[pos:end]
        trim_left = (
            start >= 0
            and src.startswith("{{-", start)
            and (start + 3 < len(src) and src[start + 3] in _SPACE)
        )
        if trim_next:
            text = text.lstrip(_SPACE)
        if trim_left:
            text = text.rstrip(_SPACE)
        if text:
            items.append(("text", text, line))
        line += src.count("\n", pos, end)
        if start < 0:
            break
        pos = start + (4 if trim_left else 2)
        # Comments: {{/* ... */}} with optional trim markers.
        if src.startswith("/*", pos):
            close = src.find("*/", pos + 2)
            if close < 0:
                raise TemplateError(f"line {line}: unclosed comment")
            line += src.count("\n", pos, close)
            after = close + 2
            if src.startswith(" -}}", after):
                pos, trim_next = after + 4, True
            elif src.startswith("}}", after):
                pos, trim_next = after + 2, False
            else:
                raise TemplateError(f"line {line}: comment ends before closing delimiter")
            continue
        tokens, pos, trim_next, new_line = lex_action(src, pos, line)
        items.append(("action", tokens, line))
        line = new_line

    return items
