"""The template parser: scanned items into a tree of nodes.

Variables are resolved and function names checked here, as Go's parser does, so an
undefined name is an error before the template ever runs.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

from nfd.rules.errors import TemplateError
from nfd.rules.template.lexer import Item, Token, scan

# Upstream removes these from Sprig's table (they reach outside the template).
REMOVED_FUNCS = frozenset(("env", "expandenv", "getHostByName"))
# Sprig functions we do not provide; naming one is a parse error that says so.
UNSUPPORTED_SPRIG = frozenset(
    (
        "bcrypt",
        "buildCustomCert",
        "genCA",
        "genCAWithKey",
        "genPrivateKey",
        "genSelfSignedCert",
        "genSelfSignedCertWithKey",
        "genSignedCert",
        "genSignedCertWithKey",
        "htpasswd",
        "call",
        "getHostByName",
        "regexReplaceAllLiteral_",
    )
)


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


class Parser:
    """One template's parse: ``parse()`` gives the root nodes, ``defines`` the named ones."""

    def __init__(self, src: str, funcs: Container[str]) -> None:
        self.funcs = funcs
        self.items: list[Item] = scan(src)
        self.pos = 0
        self.defines: dict[str, list[Node]] = {}
        self.vars: list[str] = ["$"]
        self.range_depth = 0

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
    if name in REMOVED_FUNCS:
        return f"line {line}: function {name!r} not defined (removed for security, as upstream)"
    if name in UNSUPPORTED_SPRIG:
        return f"line {line}: function {name!r} (Sprig) is not supported in NFD rule templates"
    return f"line {line}: function {name!r} not defined"
