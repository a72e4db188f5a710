"""The template executor: runs a parsed template against data, within a budget.

Execution uses ``missingkey=error`` as upstream does. Every template call, pipeline,
command, function call and range iteration charges the rule's
:class:`~nfd.rules.budget.Meter`, so nested ``{{template}}`` calls or ranges that emit
nothing still end; the output and the call depth have their own caps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nfd.rules.budget import BudgetExhausted, Meter
from nfd.rules.errors import TemplateError
from nfd.rules.template.funcs import FUNCS
from nfd.rules.template.funcs.common import MAX_OUTPUT
from nfd.rules.template.parser import (
    ActionNode,
    BranchNode,
    Command,
    LoopControl,
    Node,
    Operand,
    Parser,
    Pipeline,
    TemplateNode,
    TextNode,
)
from nfd.rules.template.values import MISSING, go_print, go_type, sort_key, truth

MAX_TEMPLATE_SIZE = 64 * 1024
# Deep recursion through {{template}} must fail cleanly, not blow the stack.
MAX_EXEC_DEPTH = 100


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class Template:
    """A parsed template; ``execute(data)`` returns the text."""

    def __init__(self, source: str, funcs: Mapping[str, Callable[..., Any]] | None = None):
        if len(source.encode("utf-8", "surrogatepass")) > MAX_TEMPLATE_SIZE:
            raise TemplateError(f"template larger than {MAX_TEMPLATE_SIZE} bytes")
        self.funcs: Mapping[str, Callable[..., Any]] = funcs if funcs is not None else FUNCS
        try:
            parser = Parser(source, self.funcs)
            self.root = parser.parse()
        except RecursionError:
            raise TemplateError("template nesting too deep") from None
        self.defines = parser.defines

    def execute(self, data: Any, meter: Meter | None = None) -> str:
        """The output for ``data``, charging ``meter``.

        With a meter (the rule engine's) running out raises BudgetExhausted for the
        caller to report; without one the default budget applies and running out is a
        TemplateError.
        """
        own_meter = meter is None
        state = _State(self, data, Meter() if meter is None else meter)
        try:
            state.walk(data, self.root)
        except (_Break, _Continue):  # pragma: no cover - parser forbids
            raise TemplateError("break/continue outside range") from None
        except RecursionError:
            raise TemplateError("template nesting too deep") from None
        except BudgetExhausted as err:
            if not own_meter:
                raise
            raise TemplateError(f"template exceeded its evaluation budget: {err}") from None
        return "".join(state.out)


class _State:
    def __init__(self, template: Template, data: Any, meter: Meter) -> None:
        self.t = template
        self.out: list[str] = []
        self.size = 0
        self.vars: list[tuple[str, Any]] = [("$", data)]
        self.depth = 0
        self.meter = meter

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
        self.meter.charge()
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
            items = [(k, value[k]) for k in sorted(value, key=sort_key)]
        elif isinstance(value, int) and not isinstance(value, bool):
            if value > self.meter.left():
                # Refused before building the list: each iteration is at least a step.
                raise BudgetExhausted(f"range over {value}: more than {self.meter.left()} steps")
            items = [(i, i) for i in range(value)]
        else:
            raise self.error(node, f"range can't iterate over {go_print(value)}")
        if not items:
            if node.else_body is not None:
                self.walk(dot, node.else_body)
            return
        mark = len(self.vars)
        meter = self.meter
        for key, elem in items:
            meter.charge()
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
        # The pipeline and each of its commands.
        self.meter.charge(1 + len(pipe.cmds))
        value: Any = MISSING
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
        if len(cmd.args) > 1 or final is not MISSING:
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
            base = self.call(dot, op, [], MISSING)
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
        # One function call can be slow on its own (derivePassword): read the clock too.
        self.meter.charge()
        self.meter.check_clock()
        name = node.value
        fn = self.t.funcs.get(name)
        if fn is None:
            raise self.error(node, f"function {name!r} not defined")
        if name in ("and", "or"):
            # Short-circuit: stop at the first decisive operand.
            count = len(args) + (final is not MISSING)
            if not count:
                raise self.error(node, f"wrong number of args for {name}: want at least 1 got 0")
            value: Any = None
            for i in range(count):
                value = self.operand(dot, args[i]) if i < len(args) else final
                if truth(value) != (name == "and"):
                    return value
            return value
        values = [self.operand(dot, a) for a in args]
        if final is not MISSING:
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
