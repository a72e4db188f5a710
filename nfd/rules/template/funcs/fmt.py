"""Go's ``fmt`` as templates see it: Sprint, Sprintln, Sprintf and strconv.Quote."""

from __future__ import annotations

import re
from typing import Any

from nfd.rules.template.funcs.common import MAX_FMT_WIDTH
from nfd.rules.template.values import go_float, go_sprint_value, go_type


def sprint(*args: Any) -> str:
    # fmt.Sprint: spaces between operands when neither side is a string.
    out = []
    for i, a in enumerate(args):
        if i > 0 and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_sprint_value(a))
    return "".join(out)


def sprintln(*args: Any) -> str:
    return " ".join(go_sprint_value(a) for a in args) + "\n"


def go_quote(s: str) -> str:
    """strconv.Quote."""
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif not ch.isprintable():
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_VERB_RE = re.compile(r"%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d+))?([a-zA-Z%])")


def go_sprintf(fmt: str, *args: Any) -> str:
    """fmt.Sprintf for the common verbs: v s d q x X o b f F e E g G t c %."""
    out: list[str] = []
    pos = 0
    argi = 0
    for m in _VERB_RE.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width, prec, verb = m.groups()
        # Go's fmt refuses widths and precisions over 1e6 (%!(BADWIDTH), %!(BADPREC)).
        if width and width.isdigit() and int(width) > MAX_FMT_WIDTH:
            out.append("%!(BADWIDTH)")
            width = None
        if prec and prec.isdigit() and int(prec) > MAX_FMT_WIDTH:
            out.append("%!(BADPREC)")
            prec = None
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        out.append(_format_one(flags, width, prec, verb, arg))
    out.append(fmt[pos:])
    if argi < len(args):
        extra = ", ".join(f"{go_type(a)}={go_sprint_value(a)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _format_one(flags: str, width: str | None, prec: str | None, verb: str, arg: Any) -> str:
    spec = flags.replace("#", "") + (width or "") + (f".{prec}" if prec is not None else "")
    try:
        if verb in "vs":
            text = go_sprint_value(arg)
            if prec is not None:
                text = text[: int(prec)]
            return format(text, ("<" if "-" in flags else ">") + (width or ""))
        if verb == "q":
            return go_quote(arg if isinstance(arg, str) else go_sprint_value(arg))
        if verb == "t" and isinstance(arg, bool):
            return "true" if arg else "false"
        if isinstance(arg, bool):
            raise ValueError
        if verb in "dxXob" and isinstance(arg, int):
            return format(arg, spec.replace("-", "<") + verb.replace("d", "d"))
        if verb in "xX" and isinstance(arg, str):
            return arg.encode().hex() if verb == "x" else arg.encode().hex().upper()
        if verb == "c" and isinstance(arg, int):
            return chr(arg)
        if verb in "fFeEgG" and isinstance(arg, int | float):
            if verb in "gG" and prec is None:
                return go_float(float(arg))
            p = "6" if prec is None else prec
            return format(float(arg), f"{flags.replace('-', '<')}{width or ''}.{p}{verb}")
    except (ValueError, TypeError):
        pass
    return f"%!{verb}({go_type(arg)}={go_sprint_value(arg)})"
