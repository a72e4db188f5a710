"""Paths and URLs: Go's path package (Sprig's os* functions, on Linux) and net/url."""

from __future__ import annotations

import posixpath
import re
import string
from collections.abc import Callable, Mapping
from typing import Any

from nfd.rules.errors import TemplateError
from nfd.rules.template.funcs.common import strval
from nfd.rules.template.values import go_type


def go_clean(path: str) -> str:
    """path.Clean: one slash, no ``.``, ``..`` resolved lexically, ``.`` for empty."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    text = "/".join(out)
    if rooted:
        return "/" + text
    return text or "."


def go_base(path: str) -> str:
    if path == "":
        return "."
    path = path.rstrip("/")
    if path == "":
        return "/"
    return path.rsplit("/", 1)[-1]


def go_dir(path: str) -> str:
    return go_clean(path[: path.rfind("/") + 1])


def go_ext(path: str) -> str:
    for i in range(len(path) - 1, -1, -1):
        if path[i] == "/":
            break
        if path[i] == ".":
            return path[i:]
    return ""


_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-_.~")


def _should_escape(ch: int, mode: str) -> bool:
    c = chr(ch)
    if c in string.ascii_letters or c in string.digits:
        return False
    if mode == "host" and c in "!$&'()*+,;=:[]<>\"":
        return False
    if c in "-_.~":
        return False
    if c in "$&+,/:;=?@":
        if mode == "path":
            return c == "?"
        if mode == "userinfo":
            return c in "@/?:"
        if mode == "fragment":
            return False
        return True
    return not (mode == "fragment" and c in "!()*")


def _escape(text: str, mode: str) -> str:
    out = []
    for b in text.encode("utf-8", "surrogateescape"):
        out.append(f"%{b:02X}" if _should_escape(b, mode) else chr(b))
    return "".join(out)


def _unescape(text: str, mode: str) -> str:
    raw = bytearray()
    i = 0
    data = text.encode("utf-8", "surrogateescape")
    while i < len(data):
        if data[i] == 0x25:  # %
            hexpart = data[i + 1 : i + 3].decode("ascii", "replace")
            if len(hexpart) < 2 or not all(h in string.hexdigits for h in hexpart):
                bad = data[i : i + 3].decode("utf-8", "replace")
                raise TemplateError(f'invalid URL escape "{bad}"')
            raw.append(int(hexpart, 16))
            i += 3
            continue
        raw.append(data[i])
        i += 1
    return raw.decode("utf-8", "surrogateescape")


def _split_userinfo(userinfo: str) -> tuple[str, str | None]:
    user, sep, password = userinfo.partition(":")
    return _unescape(user, "userinfo"), (_unescape(password, "userinfo") if sep else None)


def _userinfo_string(user: str, password: str | None) -> str:
    text = _escape(user, "userinfo")
    if password is not None:
        text += ":" + _escape(password, "userinfo")
    return text


def _valid_optional_port(port: str) -> bool:
    return port == "" or (port.startswith(":") and all(c in string.digits for c in port[1:]))


def _parse_host(host: str, raw: str) -> str:
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            raise TemplateError(f"parse \"{raw}\": missing ']' in host")
        if not _valid_optional_port(host[end + 1 :]):
            raise TemplateError(f'parse "{raw}": invalid port "{host[end + 1 :]}" after host')
    else:
        colon = host.rfind(":")
        if colon >= 0 and not _valid_optional_port(host[colon:]):
            raise TemplateError(f'parse "{raw}": invalid port "{host[colon:]}" after host')
    return _unescape(host, "host")


def _hostname(host: str) -> str:
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end >= 0 else host[1:]
    colon = host.rfind(":")
    if colon >= 0 and _valid_optional_port(host[colon:]):
        return host[:colon]
    return host


def parse_url(raw: str) -> dict[str, str]:
    """url.Parse, returned as Sprig's urlParse dict."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise TemplateError(f'parse "{raw}": net/url: invalid control character in URL')
    rest, _, fragment = raw.partition("#")
    fragment = _unescape(fragment, "fragment")
    result = {
        "scheme": "",
        "host": "",
        "hostname": "",
        "path": "",
        "query": "",
        "opaque": "",
        "fragment": fragment,
        "userinfo": "",
    }
    if rest == "*":
        result["path"] = "*"
        return result
    m = re.match(r"[A-Za-z][A-Za-z0-9+.\-]*:", rest)
    if m:
        result["scheme"] = m.group(0)[:-1].lower()
        rest = rest[m.end() :]
    elif rest.startswith(":"):
        raise TemplateError(f'parse "{raw}": missing protocol scheme')
    if rest.endswith("?") and rest.count("?") == 1:
        rest = rest[:-1]
    else:
        rest, _, result["query"] = rest.partition("?")
    if not rest.startswith("/"):
        if result["scheme"]:
            result["opaque"] = rest
            return result
        if ":" in rest.split("/", 1)[0]:
            raise TemplateError(f'parse "{raw}": first path segment in URL cannot contain colon')
    if rest.startswith("//") and (result["scheme"] or not rest.startswith("///")):
        authority, slash, path = rest[2:].partition("/")
        rest = slash + path
        userinfo, at, host = authority.rpartition("@")
        if at:
            user, password = _split_userinfo(userinfo)
            result["userinfo"] = _userinfo_string(user, password)
        result["host"] = _parse_host(host, raw)
        result["hostname"] = _hostname(result["host"])
    result["path"] = _unescape(rest, "path")
    return result


def join_url(parts: Mapping[str, Any]) -> str:
    """Sprig urlJoin: url.URL{...}.String() from a urlParse-style dict."""

    if not isinstance(parts, Mapping):
        raise TemplateError(f"wrong type for value; expected map; got {go_type(parts)}")

    def part(key: str) -> str:
        value = parts.get(key)
        return value if isinstance(value, str) else ""

    scheme, host, path = part("scheme"), part("host"), part("path")
    query, opaque, fragment, userinfo = (
        part("query"),
        part("opaque"),
        part("fragment"),
        part("userinfo"),
    )
    user = _split_userinfo(userinfo) if userinfo else None
    out = scheme + ":" if scheme else ""
    if opaque:
        out += opaque
    else:
        if scheme or host or user:
            if host or path or user:
                out += "//"
            if user:
                out += _userinfo_string(*user) + "@"
            if host:
                out += _escape(host, "host")
        escaped = _escape(path, "path")
        if escaped and not escaped.startswith("/") and host:
            out += "/"
        if not out and ":" in escaped.split("/", 1)[0]:
            out += "./"
        out += escaped
    if query:
        out += "?" + query
    if fragment:
        out += "#" + _escape(fragment, "fragment")
    return out


PATHS: dict[str, Callable[..., Any]] = {
    "base": lambda s: posixpath.basename(strval(s).rstrip("/")) or ("/" if s else "."),
    "dir": lambda s: posixpath.dirname(strval(s)) or ".",
    "ext": lambda s: posixpath.splitext(strval(s))[1],
    "clean": lambda s: posixpath.normpath(strval(s)) if s else ".",
    "isAbs": lambda s: strval(s).startswith("/"),
    "osBase": lambda s: go_base(strval(s)),
    "osClean": lambda s: go_clean(strval(s)),
    "osDir": lambda s: go_dir(strval(s)),
    "osExt": lambda s: go_ext(strval(s)),
    "osIsAbs": lambda s: strval(s).startswith("/"),
    "urlParse": lambda s: parse_url(strval(s)),
    "urlJoin": join_url,
}
