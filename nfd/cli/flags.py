"""argparse for every command, with upstream's Go ``flag`` spellings accepted too.

Upstream's commands parse their flags with Go's ``flag`` package, so deployments
and scripts write ``-oneshot``, ``-server=x``, ``-oneshot=false`` and klog's
``-v=2``. ``FlagParser`` is an ``ArgumentParser`` that takes those as well as
``--name``, ``--name=value`` and ``--name value``:

- ``-name`` is read as ``--name`` when ``--name`` is one of the parser's options;
- booleans declared with ``add_bool`` take ``=true``/``=false`` (Go's ParseBool
  spellings);
- ``add_verbosity`` counts ``-v``/``-vv`` and also takes ``-v=N``;
- a short option with a fixed set of values (``-o json``) takes its value
  attached only when it is one of them (``-ojson``): ``-onesh`` is a misspelt
  long flag, as Go would say, not ``-o nesh``.

Prefix abbreviations are off (``--onesh`` is an error), as in Go.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def go_bool(text: str) -> bool:
    """Go's strconv.ParseBool, as an argparse ``type``."""
    if text in GO_TRUE:
        return True
    if text in GO_FALSE:
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value: {text!r}")


class Verbosity(argparse.Action):
    """``-v`` adds one, ``-vv`` two; ``-v=N`` (klog's spelling) sets N."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("default", 0)
        super().__init__(option_strings, dest, nargs="?", metavar="N", **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        current = getattr(namespace, self.dest, 0) or 0
        if values is None:
            setattr(namespace, self.dest, current + 1)
        elif values.isascii() and values.isdigit():
            setattr(namespace, self.dest, int(values))
        elif set(values) == {"v"}:  # -vv: argparse hands over what follows the first v
            setattr(namespace, self.dest, current + 1 + len(values))
        else:
            raise argparse.ArgumentError(self, f"invalid count value: {values!r}")


class FlagParser(argparse.ArgumentParser):
    """An ArgumentParser that also accepts Go's single-dash long flags.

    Subcommand parsers made with ``add_subparsers`` are FlagParsers too.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def add_bool(self, *names: str, help: str) -> None:  # noqa: A002 - argparse's name
        """A flag that is on when given, or ``=true``/``=false``."""
        self.add_argument(
            *names,
            nargs="?",
            const=True,
            default=False,
            type=go_bool,
            metavar="BOOL",
            help=f"{help} (also =true / =false)",
        )

    def add_verbosity(self) -> None:
        self.add_argument("-v", "--verbose", action=Verbosity, help="more logging (-v: debug)")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(self.gnu_spellings(argv), namespace)

    def gnu_spellings(self, argv: list[str]) -> list[str]:
        """``argv`` with ``-name[=value]`` written ``--name[=value]`` for our long options."""
        out: list[str] = []
        for position, arg in enumerate(argv):
            if arg == "--":  # the rest are operands
                return out + argv[position:]
            if arg[:1] == "-" and arg[1:2] not in ("", "-"):
                name = "-" + arg.partition("=")[0]
                # A long option's spellings are argparse's own table of them.
                if len(name) > 3 and name in self._option_string_actions:
                    arg = "-" + arg
                else:
                    self._check_attached_choice(arg)
            out.append(arg)
        return out

    def _check_attached_choice(self, arg: str) -> None:
        short = self._option_string_actions.get(arg[:2])
        attached = arg[2:].removeprefix("=")
        if len(arg) > 2 and short is not None and short.choices is not None:
            if attached not in short.choices:
                self.error(f"unrecognized arguments: {arg}")
