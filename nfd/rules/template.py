"""Go ``text/template`` for labelsTemplate and varsTemplate.

A from-scratch interpreter of the part of Go's template language that NFD
rules use: text and actions with ``{{-``/``-}}`` trimming, comments,
``if``/``else if``/``else``, ``range`` (with ``$i, $e :=``, ``break``,
``continue``, ``else``), ``with``/``else with``, ``define``/``template``/
``block``, variables, field chains, parenthesised pipelines, Go's builtin
functions and the Sprig functions in :mod:`nfd.rules.template_funcs`.
Execution uses ``missingkey=error`` as upstream does. Anything outside this
subset fails with a TemplateError that says what is not supported.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nfd.rules.errors import TemplateError

MAX_TEMPLATE_SIZE = 64 * 1024
# Deep recursion through {{template}} must fail cleanly, not blow the stack.
MAX_EXEC_DEPTH = 100
# Output cap: a template that loops to produce megabytes is an error.
MAX_OUTPUT = 1 << 20
# Work caps for one execution: {{range}} iterations over all loops, and wall-clock time
# (checked at each iteration and function call). Loops that produce nothing, or call
# something slow many times, must not hang nfd-master or nfd-worker.
MAX_RANGE_STEPS = 1_000_000
MAX_EXEC_SECONDS = 5.0

KEYWORDS = {
    "if",
    "else",
    "end",
    "range",
    "with",
    "define",
    "template",
    "block",
    "break",
    "continue",
}
_SPACE = " \t\r\n"

# -- lexer -------------------------------------------------------------------


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


def _lex_action(src: str, pos: int, line: int) -> tuple[list[Token], int, bool, int]:
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


# -- nodes -------------------------------------------------------------------


@dataclass
class Node:
    line: int


@dataclass
class TextNode(Node):
    text: str


@dataclass
class Operand(Node):
    kind: str  # field dot var ident string number bool nil pipe
    value: Any
    fields: list[str] = field(default_factory=list)


@dataclass
class Command(Node):
    args: list[Operand]


@dataclass
class Pipeline(Node):
    decl: list[str]
    is_assign: bool
    cmds: list[Command]
    source: str = ""


@dataclass
class ActionNode(Node):
    pipe: Pipeline


@dataclass
class BranchNode(Node):
    kind: str  # if range with
    pipe: Pipeline
    body: list[Node]
    else_body: list[Node] | None


@dataclass
class TemplateNode(Node):
    name: str
    pipe: Pipeline | None


@dataclass
class LoopControl(Node):
    kind: str  # break continue


# -- parser ------------------------------------------------------------------


class _Parser:
    def __init__(self, src: str, funcs: Mapping[str, Any]) -> None:
        self.src = src
        self.funcs = funcs
        self.items: list[
            tuple[str, Any, int]
        ] = []  # ("text", str, line) / ("action", tokens, line)
        self.pos = 0
        self.defines: dict[str, list[Node]] = {}
        self.vars: list[str] = ["$"]
        self.range_depth = 0
        self._scan()

    def _scan(self) -> None:
        src, pos, line = self.src, 0, 1
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
                self.items.append(("text", text, line))
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
            tokens, pos, trim_next, new_line = _lex_action(src, pos, line)
            self.items.append(("action", tokens, line))
            line = new_line

    # The parser proper works on self.items.

    def parse(self) -> list[Node]:
        body, stop = self._list(top=True)
        if stop is not None:
            raise TemplateError(f"line {stop[2]}: unexpected {{{{{stop[0]}}}}}")
        return body

    def _list(self, top: bool = False) -> tuple[list[Node], tuple[str, list[Token], int] | None]:
        """Nodes until {{end}} or {{else ...}}; returns the stopping keyword."""
        nodes: list[Node] = []
        while self.pos < len(self.items):
            kind, payload, line = self.items[self.pos]
            self.pos += 1
            if kind == "text":
                nodes.append(TextNode(line, payload))
                continue
            tokens: list[Token] = payload
            if not tokens:
                raise TemplateError(f"line {line}: missing value for command")
            first = tokens[0]
            if first.kind == "keyword":
                word = first.value
                if word in ("end", "else"):
                    if top:
                        raise TemplateError(f"line {line}: unexpected {{{{{word}}}}}")
                    return nodes, (word, tokens, line)
                nodes.extend(self._keyword(word, tokens, line))
            else:
                nodes.append(ActionNode(line, self._pipeline(tokens, 0, line, allow_decl=True)))
        if not top:
            raise TemplateError("unexpected EOF: missing {{end}}")
        return nodes, None

    def _keyword(self, word: str, tokens: list[Token], line: int) -> list[Node]:
        if word in ("if", "range", "with"):
            return [self._branch(word, tokens, line)]
        if word in ("break", "continue"):
            if len(tokens) != 1:
                raise TemplateError(f"line {line}: unexpected token after {word}")
            if self.range_depth == 0:
                raise TemplateError(f"line {line}: {{{{{word}}}}} outside {{{{range}}}}")
            return [LoopControl(line, word)]
        if word == "template":
            name, rest = self._template_name(tokens, line)
            pipe = self._pipeline(rest, 0, line, allow_decl=False) if rest else None
            return [TemplateNode(line, name, pipe)]
        if word in ("define", "block"):
            name, rest = self._template_name(tokens, line)
            if word == "define" and rest:
                raise TemplateError(f"line {line}: unexpected tokens in define clause")
            if word == "block" and not rest:
                raise TemplateError(f"line {line}: missing pipeline in block clause")
            saved_vars, self.vars = self.vars, ["$"]
            body, stop = self._list()
            self.vars = saved_vars
            if stop is None or stop[0] != "end" or len(stop[1]) != 1:
                raise TemplateError(f"line {line}: expected {{{{end}}}} for {word}")
            self.defines[name] = body
            if word == "block":
                return [TemplateNode(line, name, self._pipeline(rest, 0, line, allow_decl=False))]
            return []
        raise TemplateError(f"line {line}: unexpected keyword {word!r}")

    def _template_name(self, tokens: list[Token], line: int) -> tuple[str, list[Token]]:
        if len(tokens) < 2 or tokens[1].kind != "string":
            raise TemplateError(f"line {line}: {tokens[0].value} needs a quoted name")
        return tokens[1].value, tokens[2:]

    def _branch(self, word: str, tokens: list[Token], line: int) -> BranchNode:
        mark = len(self.vars)
        pipe = self._pipeline(tokens, 1, line, allow_decl=True, range_decl=word == "range")
        if word == "range":
            self.range_depth += 1
        body, stop = self._list()
        if word == "range":
            self.range_depth -= 1
        else_body: list[Node] | None = None
        if stop is not None and stop[0] == "else":
            else_tokens = stop[1]
            self.vars = self.vars[:mark]
            if len(else_tokens) > 1:
                # {{else if}} / {{else with}}: a nested branch that ends at our {{end}}.
                nested = else_tokens[1]
                if nested.kind == "keyword" and nested.value == word and word in ("if", "with"):
                    else_body = [self._branch(word, else_tokens[1:], stop[2])]
                    return BranchNode(line, word, pipe, body, else_body)
                raise TemplateError(f"line {stop[2]}: unexpected tokens after else")
            else_body, stop = self._list()
        if stop is None or stop[0] != "end":
            raise TemplateError(f"line {line}: expected {{{{end}}}} for {{{{{word}}}}}")
        if len(stop[1]) != 1:
            raise TemplateError(f"line {stop[2]}: unexpected tokens after end")
        self.vars = self.vars[:mark]
        return BranchNode(line, word, pipe, body, else_body)

    def _pipeline(
        self, tokens: list[Token], i: int, line: int, allow_decl: bool, range_decl: bool = False
    ) -> Pipeline:
        decl: list[str] = []
        is_assign = False
        # Declarations: $x := / $x = / $i, $e :=
        if allow_decl and i < len(tokens) and tokens[i].kind == "var":
            j = i
            names = [tokens[j].value]
            if j + 1 < len(tokens) and tokens[j + 1].kind == "," and range_decl:
                if j + 2 < len(tokens) and tokens[j + 2].kind == "var":
                    names.append(tokens[j + 2].value)
                    j += 2
                else:
                    raise TemplateError(f"line {line}: range can only initialize variables")
            if j + 1 < len(tokens) and tokens[j + 1].kind in (":=", "="):
                is_assign = tokens[j + 1].kind == "="
                if is_assign:
                    for n in names:
                        if n not in self.vars:
                            raise TemplateError(f"line {line}: undefined variable {n!r}")
                decl = names
                i = j + 2
            elif len(names) > 1:
                raise TemplateError(f"line {line}: expected := after range variables")
        cmds: list[Command] = []
        args: list[Operand] = []
        while i < len(tokens):
            tok = tokens[i]
            if tok.kind == "|":
                if not args:
                    raise TemplateError(f"line {line}: missing command before '|'")
                cmds.append(Command(line, args))
                args = []
                i += 1
                continue
            operand, i = self._operand(tokens, i, line)
            args.append(operand)
        if not args:
            raise TemplateError(f"line {line}: missing value for command")
        cmds.append(Command(line, args))
        for cmd in cmds[1:]:
            head = cmd.args[0]
            if head.kind in ("string", "number", "bool", "nil"):
                raise TemplateError(f"line {line}: non executable command in pipeline stage")
        if decl and not is_assign:
            self.vars.extend(decl)
        source = " ".join(t.text for t in tokens)
        return Pipeline(line, decl, is_assign, cmds, source)

    def _operand(self, tokens: list[Token], i: int, line: int) -> tuple[Operand, int]:
        tok = tokens[i]
        i += 1
        if tok.kind == "(":
            depth, j = 1, i
            while j < len(tokens):
                if tokens[j].kind == "(":
                    depth += 1
                elif tokens[j].kind == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            if j >= len(tokens):
                raise TemplateError(f"line {line}: unclosed left paren")
            inner = self._pipeline(tokens[i:j], 0, line, allow_decl=True)
            operand = Operand(line, "pipe", inner)
            i = j + 1
        elif tok.kind == "field":
            operand = Operand(line, "dot", None, [tok.value])
        elif tok.kind == "dot":
            operand = Operand(line, "dot", None)
        elif tok.kind == "var":
            if tok.value not in self.vars:
                raise TemplateError(f"line {line}: undefined variable {tok.value!r}")
            operand = Operand(line, "var", tok.value)
        elif tok.kind == "ident":
            if tok.value not in self.funcs:
                raise TemplateError(_undefined_function(tok.value, line))
            operand = Operand(line, "ident", tok.value)
        elif tok.kind in ("string", "number", "bool"):
            operand = Operand(line, tok.kind, tok.value)
        elif tok.kind == "nil":
            operand = Operand(line, "nil", None)
        elif tok.kind == "keyword":
            raise TemplateError(f"line {line}: unexpected keyword {tok.value!r} in operand")
        else:
            raise TemplateError(f"line {line}: unexpected {tok.text!r} in operand")
        # A field chain directly attached: .a.b, $x.a, (pipe).a
        while i < len(tokens) and tokens[i].kind == "field" and not tokens[i].space_before:
            if operand.kind in ("string", "number", "bool", "nil", "ident"):
                raise TemplateError(f"line {line}: unexpected . after term {tok.text!r}")
            operand.fields.append(tokens[i].value)
            i += 1
        return operand, i


def _undefined_function(name: str, line: int) -> str:
    from nfd.rules.template_funcs import REMOVED_FUNCS, UNSUPPORTED_SPRIG

    if name in REMOVED_FUNCS:
        return f"line {line}: function {name!r} not defined (removed for security, as upstream)"
    if name in UNSUPPORTED_SPRIG:
        return f"line {line}: function {name!r} (Sprig) is not supported in NFD rule templates"
    return f"line {line}: function {name!r} not defined"


# -- execution ---------------------------------------------------------------


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


_MISSING = object()


class Template:
    """A parsed template; ``execute(data)`` returns the text."""

    def __init__(self, source: str, funcs: Mapping[str, Callable[..., Any]] | None = None):
        if len(source.encode("utf-8", "surrogatepass")) > MAX_TEMPLATE_SIZE:
            raise TemplateError(f"template larger than {MAX_TEMPLATE_SIZE} bytes")
        from nfd.rules.template_funcs import FUNCS

        self.funcs: Mapping[str, Callable[..., Any]] = funcs if funcs is not None else FUNCS
        try:
            parser = _Parser(source, self.funcs)
            self.root = parser.parse()
        except RecursionError:
            raise TemplateError("template nesting too deep") from None
        self.defines = parser.defines

    def execute(self, data: Any) -> str:
        state = _State(self, data)
        try:
            state.walk(data, self.root)
        except (_Break, _Continue):  # pragma: no cover - parser forbids
            raise TemplateError("break/continue outside range") from None
        except RecursionError:
            raise TemplateError("template nesting too deep") from None
        return "".join(state.out)


class _State:
    def __init__(self, template: Template, data: Any) -> None:
        self.t = template
        self.out: list[str] = []
        self.size = 0
        self.vars: list[tuple[str, Any]] = [("$", data)]
        self.depth = 0
        self.steps = 0
        self.deadline = time.monotonic() + MAX_EXEC_SECONDS

    def check_time(self, node: Node) -> None:
        if time.monotonic() > self.deadline:
            raise self.error(node, f"template ran for more than {MAX_EXEC_SECONDS:g}s")

    def error(self, node: Node, message: str) -> TemplateError:
        return TemplateError(f"line {node.line}: {message}")

    def emit(self, text: str) -> None:
        self.size += len(text)
        if self.size > MAX_OUTPUT:
            raise TemplateError(f"template output larger than {MAX_OUTPUT} bytes")
        self.out.append(text)

    def walk(self, dot: Any, nodes: list[Node]) -> None:
        for node in nodes:
            if isinstance(node, TextNode):
                self.emit(node.text)
            elif isinstance(node, ActionNode):
                value = self.pipeline(dot, node.pipe)
                if not node.pipe.decl:
                    self.emit(go_print(value))
            elif isinstance(node, BranchNode):
                self.branch(dot, node)
            elif isinstance(node, LoopControl):
                raise _Break() if node.kind == "break" else _Continue()
            elif isinstance(node, TemplateNode):
                self.call_template(dot, node)

    def call_template(self, dot: Any, node: TemplateNode) -> None:
        body = self.t.defines.get(node.name)
        if body is None:
            raise self.error(node, f'no such template "{node.name}"')
        value = self.pipeline(dot, node.pipe) if node.pipe is not None else None
        self.depth += 1
        if self.depth > MAX_EXEC_DEPTH:
            raise self.error(node, "exceeded maximum template depth")
        saved = self.vars
        self.vars = [("$", value)]
        try:
            self.walk(value, body)
        finally:
            self.vars = saved
            self.depth -= 1

    def branch(self, dot: Any, node: BranchNode) -> None:
        mark = len(self.vars)
        try:
            if node.kind == "range":
                self.range(dot, node)
                return
            value = self.pipeline(dot, node.pipe)
            if truth(value):
                self.walk(value if node.kind == "with" else dot, node.body)
            elif node.else_body is not None:
                self.walk(dot, node.else_body)
        finally:
            del self.vars[mark:]

    def range(self, dot: Any, node: BranchNode) -> None:
        pipe = node.pipe
        # Evaluate without declaring: range assigns per iteration.
        value = self.pipeline(dot, Pipeline(pipe.line, [], False, pipe.cmds, pipe.source))
        items: list[tuple[Any, Any]]
        if value is None:
            items = []
        elif isinstance(value, list | tuple):
            items = list(enumerate(value))
        elif isinstance(value, Mapping):
            items = [(k, value[k]) for k in sorted(value, key=_sort_key)]
        elif isinstance(value, int) and not isinstance(value, bool):
            if value > MAX_RANGE_STEPS - self.steps:
                raise self.error(node, f"range over {value}: more than {MAX_RANGE_STEPS} steps")
            items = [(i, i) for i in range(value)]
        else:
            raise self.error(node, f"range can't iterate over {go_print(value)}")
        if not items:
            if node.else_body is not None:
                self.walk(dot, node.else_body)
            return
        mark = len(self.vars)
        for key, elem in items:
            self.steps += 1
            if self.steps > MAX_RANGE_STEPS:
                raise self.error(node, f"range: more than {MAX_RANGE_STEPS} steps")
            self.check_time(node)
            del self.vars[mark:]
            if len(pipe.decl) == 1:
                self.vars.append((pipe.decl[0], elem))
            elif len(pipe.decl) == 2:
                self.vars.append((pipe.decl[0], key))
                self.vars.append((pipe.decl[1], elem))
            try:
                self.walk(elem, node.body)
            except _Continue:
                continue
            except _Break:
                break

    def lookup_var(self, node: Node, name: str) -> Any:
        for var, value in reversed(self.vars):
            if var == name:
                return value
        raise self.error(node, f"undefined variable {name!r}")

    def pipeline(self, dot: Any, pipe: Pipeline) -> Any:
        value: Any = _MISSING
        for cmd in pipe.cmds:
            value = self.command(dot, cmd, value)
        if pipe.decl:
            if pipe.is_assign:
                for i in range(len(self.vars) - 1, -1, -1):
                    if self.vars[i][0] == pipe.decl[0]:
                        self.vars[i] = (pipe.decl[0], value)
                        break
            else:
                self.vars.append((pipe.decl[0], value))
        return value

    def command(self, dot: Any, cmd: Command, final: Any) -> Any:
        head = cmd.args[0]
        if head.kind == "ident" and not head.fields:
            return self.call(dot, head, cmd.args[1:], final)
        if len(cmd.args) > 1 or final is not _MISSING:
            if head.kind == "nil":
                raise self.error(head, "nil is not a command")
            raise self.error(head, "can't give argument to non-function " + _describe(head))
        if head.kind == "nil":
            raise self.error(head, "nil is not a command")
        return self.operand(dot, head)

    def operand(self, dot: Any, op: Operand) -> Any:
        if op.kind == "dot":
            base = dot
        elif op.kind == "var":
            base = self.lookup_var(op, op.value)
        elif op.kind == "pipe":
            mark = len(self.vars)
            base = self.pipeline(dot, op.value)
            del self.vars[mark:]
        elif op.kind == "ident":
            base = self.call(dot, op, [], _MISSING)
        elif op.kind == "nil":
            return None
        else:
            return op.value
        for name in op.fields:
            base = self.field(op, base, name)
        return base

    def field(self, node: Node, base: Any, name: str) -> Any:
        if isinstance(base, Mapping):
            if name in base:
                return base[name]
            raise self.error(node, f'map has no entry for key "{name}"')
        if base is None:
            raise self.error(node, f"nil pointer evaluating interface {{}}.{name}")
        raise self.error(node, f"can't evaluate field {name} in type {go_type(base)}")

    def call(self, dot: Any, node: Operand, args: list[Operand], final: Any) -> Any:
        self.check_time(node)
        name = node.value
        fn = self.t.funcs.get(name)
        if fn is None:
            raise self.error(node, f"function {name!r} not defined")
        if name in ("and", "or"):
            # Short-circuit: stop at the first decisive operand.
            count = len(args) + (final is not _MISSING)
            if not count:
                raise self.error(node, f"wrong number of args for {name}: want at least 1 got 0")
            value: Any = None
            for i in range(count):
                value = self.operand(dot, args[i]) if i < len(args) else final
                if truth(value) != (name == "and"):
                    return value
            return value
        values = [self.operand(dot, a) for a in args]
        if final is not _MISSING:
            values.append(final)
        try:
            return fn(*values)
        except TemplateError as err:
            raise self.error(node, f"error calling {name}: {err}") from None
        except TypeError as err:
            raise self.error(node, f"wrong arguments for {name}: {err}") from None
        except (ValueError, ArithmeticError, KeyError, IndexError, OverflowError) as err:
            raise self.error(node, f"error calling {name}: {err}") from None


def _describe(op: Operand) -> str:
    if op.kind == "dot":
        return "." + ".".join(op.fields)
    if op.kind == "var":
        return op.value + "".join("." + f for f in op.fields)
    return repr(op.value)


def _sort_key(key: Any) -> Any:
    return (0, key) if isinstance(key, int | float) else (1, str(key))


# -- Go value semantics --------------------------------------------------------


def truth(value: Any) -> bool:
    """Go template truth: false, 0, nil and empty things are false."""
    if value is None or value is _MISSING:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | str | list | tuple | dict):
        return bool(value)
    if isinstance(value, Mapping):
        return len(value) > 0
    return True


def go_type(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "[]interface {}"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    return type(value).__name__


def go_float(value: float) -> str:
    """Go's %v of a float64: shortest digits, exponent form below 1e-4 or from 1e6."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    mantissa, _, exp_part = text.partition("e")
    sign = "-" if mantissa.startswith("-") else ""
    mantissa = mantissa.lstrip("-")
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    exp10 = int(exp_part or 0) + len(int_part)
    if not digits:
        return sign + "0"
    leading_zeros = len(int_part + frac_part) - len((int_part + frac_part).lstrip("0"))
    exp10 -= leading_zeros
    digits = digits.rstrip("0")
    x = exp10 - 1  # exponent in d.ddd form
    if x < -4 or x >= 6:
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{body}e{'+' if x >= 0 else '-'}{abs(x):02d}"
    if exp10 <= 0:
        return f"{sign}0.{'0' * -exp10}{digits}"
    if exp10 >= len(digits):
        return sign + digits + "0" * (exp10 - len(digits))
    return f"{sign}{digits[:exp10]}.{digits[exp10:]}"


def go_print(value: Any) -> str:
    """Go's fmt %v as text/template prints a value."""
    if value is None or value is _MISSING:
        return "<no value>"
    return go_sprint_value(value)


def go_sprint_value(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_sprint_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: _sort_key(kv[0]))
        return (
            "map[" + " ".join(f"{go_sprint_value(k)}:{go_sprint_value(v)}" for k, v in items) + "]"
        )
    return str(value)


def expand_map(text: str) -> dict[str, str]:
    """Upstream's ExpandMap: ``key=value`` lines, trimmed, empty ones skipped."""
    out: dict[str, str] = {}
    for item in text.split("\n"):
        trimmed = item.strip()
        if not trimmed:
            continue
        key, sep, value = trimmed.partition("=")
        if not sep:
            raise TemplateError(
                f"missing value in expanded template line {trimmed!r}, "
                "(format must be '<key>=<value>')"
            )
        out[key] = value
    return out
