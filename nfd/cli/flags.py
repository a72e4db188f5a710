"""Command-line flags declared once, parsed without argparse.

``argparse`` imports ``re`` and ``gettext`` (~8 ms), which is a fifth of a
oneshot worker's start-up budget, so ``nfd-worker`` parses its flags here. The
same table also feeds argparse (``add_to_argparse``) where a command needs
subcommands (``nfd export``).

Accepted spellings are those of upstream's Go ``flag`` package plus GNU style:
``--name``, ``-name``, ``--name=value``, ``--name value``; booleans also take
``=true``/``=false`` (Go's ParseBool spellings); ``-v``, ``-vv`` and ``-v=N`` set
the verbosity. Mistakes print the usage and ``<prog>: error: ...`` and exit 2,
as argparse does.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, NoReturn

# What a command's code receives: ours, or argparse's for ``nfd export``.
Options = argparse.Namespace | SimpleNamespace

KINDS = ("value", "int", "bool", "count")
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


class Flag:
    """One option: its spellings, where it lands, what it takes."""

    __slots__ = ("names", "dest", "kind", "default", "help", "env")

    def __init__(
        self,
        *names: str,
        kind: str = "value",
        default: Any = None,
        help: str = "",  # noqa: A002 - argparse's name
        env: str = "",
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown flag kind {kind!r}")
        self.names = names
        self.dest = next(n for n in names if n.startswith("--"))[2:].replace("-", "_")
        self.kind = kind
        if default is None and kind in ("count", "bool"):
            default = 0 if kind == "count" else False
        self.default = default
        self.help = help
        # An environment variable that, when set, replaces the default.
        self.env = env

    def initial(self) -> Any:
        if self.env and self.env in os.environ:
            return os.environ[self.env]
        return self.default

    @property
    def metavar(self) -> str:
        return self.dest.upper()

    def takes_value(self) -> bool:
        return self.kind in ("value", "int")


class UsageError(Exception):
    """A command line that cannot be parsed; the message is argparse-style."""


def _lookup(flags: Sequence[Flag]) -> dict[str, Flag]:
    table: dict[str, Flag] = {}
    for flag in flags:
        for name in flag.names:
            table[name] = flag
            if name.startswith("--") and len(name) > 3:
                table[name[1:]] = flag  # Go style: -oneshot, -server=x
    return table


def _set(options: SimpleNamespace, flag: Flag, spelling: str, value: str | None) -> None:
    if flag.kind == "count":
        if value is None:
            setattr(options, flag.dest, getattr(options, flag.dest) + 1)
        elif value.isascii() and value.isdigit():
            setattr(options, flag.dest, int(value))
        else:
            raise UsageError(f"argument {spelling}: invalid count value: {value!r}")
    elif flag.kind == "bool":
        if value is None or value in _TRUE:
            setattr(options, flag.dest, True)
        elif value in _FALSE:
            setattr(options, flag.dest, False)
        else:
            raise UsageError(f"argument {spelling}: invalid boolean value: {value!r}")
    elif flag.kind == "int":
        assert value is not None
        try:
            setattr(options, flag.dest, int(value))
        except ValueError:
            raise UsageError(f"argument {spelling}: invalid int value: {value!r}") from None
    else:
        setattr(options, flag.dest, value)


def parse(flags: Sequence[Flag], argv: Sequence[str]) -> SimpleNamespace:
    """The options in ``argv``; UsageError for anything unknown or malformed.

    ``-h``/``--help`` and ``--version`` are left to the caller (see ``main_parse``).
    """
    table = _lookup(flags)
    options = SimpleNamespace(**{flag.dest: flag.initial() for flag in flags})
    unknown: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            unknown.extend(args[i:])
            break
        name, eq, inline = arg.partition("=")
        flag = table.get(name) if arg.startswith("-") else None
        if flag is None and arg[:1] == "-" and arg[1:2] != "-" and set(arg[1:]) == {"v"}:
            flag = table.get("-v")  # -vv, -vvv: verbosity by count
            if flag is not None and flag.kind == "count":
                setattr(options, flag.dest, getattr(options, flag.dest) + len(arg) - 1)
                continue
        if flag is None:
            unknown.append(arg)
            continue
        value: str | None = inline if eq else None
        if flag.takes_value() and value is None:
            if i >= len(args) or (args[i].startswith("-") and args[i] != "-"):
                raise UsageError(f"argument {name}: expected one argument")
            value = args[i]
            i += 1
        _set(options, flag, name, value)
    if unknown:
        raise UsageError(f"unrecognized arguments: {' '.join(unknown)}")
    return options


def usage(prog: str, flags: Sequence[Flag]) -> str:
    parts = [f"usage: {prog} [-h] [--version]"]
    for flag in flags:
        spelling = flag.names[-1] if flag.names[-1].startswith("--") else flag.names[0]
        parts.append(f"[{spelling} {flag.metavar}]" if flag.takes_value() else f"[{spelling}]")
    return " ".join(parts)


def help_text(prog: str, description: str, flags: Sequence[Flag]) -> str:
    import textwrap  # --help only

    lines = [textwrap.fill(usage(prog, flags), 100, subsequent_indent=" " * 8), ""]
    lines += [description, "", "options:", "  -h, --help            show this help and exit"]
    lines.append("  --version             print the version and exit")
    for flag in flags:
        spelling = ", ".join(flag.names)
        if flag.takes_value():
            spelling += f" {flag.metavar}"
        text = flag.help
        if flag.kind == "bool":
            text += " (also =true / =false)"
        wrapped = textwrap.wrap(text, 76) or [""]
        if len(spelling) <= 20:
            lines.append(f"  {spelling:<20}  {wrapped[0]}")
        else:
            lines += [f"  {spelling}", f"  {'':<20}  {wrapped[0]}"]
        lines += [f"  {'':<20}  {more}" for more in wrapped[1:]]
    return "\n".join(lines) + "\n"


def main_parse(
    prog: str, description: str, version: str, flags: Sequence[Flag], argv: Sequence[str]
) -> SimpleNamespace:
    """``parse`` for a program's ``main``: help, version and usage errors exit as argparse."""
    for arg in argv:
        if arg == "--":
            break
        if arg in ("-h", "--help", "-help"):
            sys.stdout.write(help_text(prog, description, flags))
            sys.exit(0)
        if arg in ("--version", "-version"):
            sys.stdout.write(f"{prog} {version}\n")
            sys.exit(0)
    try:
        return parse(flags, argv)
    except UsageError as err:
        _fail(prog, flags, str(err))


def _fail(prog: str, flags: Sequence[Flag], message: str) -> NoReturn:
    sys.stderr.write(f"{usage(prog, flags)}\n{prog}: error: {message}\n")
    sys.exit(2)


def add_to_argparse(parser: argparse.ArgumentParser, flags: Sequence[Flag]) -> None:
    """Declare ``flags`` on an argparse parser (commands with subcommands)."""
    for flag in flags:
        kwargs: dict[str, Any] = {"dest": flag.dest, "help": flag.help}
        if flag.kind == "count":
            parser.add_argument(*flag.names, action="count", default=flag.default, **kwargs)
        elif flag.kind == "bool":
            parser.add_argument(*flag.names, action="store_true", default=flag.default, **kwargs)
        else:
            parser.add_argument(
                *flag.names,
                default=flag.initial(),
                type=int if flag.kind == "int" else str,
                **kwargs,
            )
