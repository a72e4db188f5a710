"""YAML read the way Kubernetes tooling reads it (sigs.k8s.io/yaml over go-yaml v2).

Upstream reads NodeFeatureRule, NodeFeature and custom rule files with sigs.k8s.io/yaml:
go-yaml v2 resolves plain scalars (YAML 1.1 style, its own table), then every scalar that
lands in a Go string field is written back as a string. Every leaf of those objects is a
string field, so what a file means to upstream is "each plain scalar as go-yaml resolves it,
then as sigs.k8s.io/yaml prints it". PyYAML differs in places that change labels and rule
values: an unquoted ``y``/``n`` is a bool to go-yaml (``"true"``/``"false"``) and a string
to PyYAML; ``1.0`` is ``"1"`` upstream and ``"1.0"`` with ``str(float)``; ``0x1F`` is 31;
``1_000`` is 1000; ``1e3`` is ``"1000"``; ``0300`` is 192 (octal) for both.

``load_all(text)`` returns the documents with every scalar a ``str`` (null stays None) and
every mapping key a ``str``, as upstream's JSON would have them.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterator
from typing import Any

import yaml

_TRUE = ("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON")
_FALSE = ("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF")
_NULL = ("", "~", "null", "Null", "NULL")
_SPECIAL_FLOATS = {
    ".nan": math.nan,
    ".NaN": math.nan,
    ".NAN": math.nan,
    **{s + v: sign * math.inf for sign, s in ((1, ""), (1, "+"), (-1, "-"))
       for v in (".inf", ".Inf", ".INF")},
}  # fmt: skip
# go-yaml's yamlStyleFloat, applied after removing underscores.
_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
# Go's strconv.ParseInt(s, 0, 64) syntax: sign, then 0x / 0o / 0b / 0 (octal) / decimal.
_GO_INT = re.compile(r"([-+]?)(0[xX][0-9a-fA-F]+|0[oO]?[0-7]*|0[bB][01]+|[1-9][0-9]*)")
# Go's strconv.ParseFloat also takes hex floats and inf/nan words; go-yaml only asks it
# for scalars starting with "." (the rest go through _YAML_FLOAT).
_DOT_FLOAT = re.compile(r"\.[0-9]+([eE][-+]?[0-9]+)?")
_INT64 = (-(1 << 63), (1 << 63) - 1)


def _go_int(text: str) -> int | None:
    m = _GO_INT.fullmatch(text)
    if m is None:
        return None
    sign, digits = m.groups()
    lowered = digits.lower()
    if lowered.startswith("0x"):
        value = int(digits[2:], 16)
    elif lowered.startswith("0b"):
        value = int(digits[2:], 2)
    elif lowered.startswith("0o"):
        if len(digits) == 2:
            return None
        value = int(digits[2:], 8)
    elif digits.startswith("0") and len(digits) > 1:
        value = int(digits[1:], 8)
    else:
        value = int(digits)
    value = -value if sign == "-" else value
    # ParseInt, then ParseUint (no sign allowed) for the rest of uint64.
    if _INT64[0] <= value <= _INT64[1] or (0 <= value < 1 << 64 and sign == ""):
        return value
    return None


def go_float(value: float) -> str:
    """strconv.FormatFloat(value, 'g', -1, 32), as sigs.k8s.io/yaml prints a float."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    try:
        f32 = struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        f32 = math.copysign(math.inf, value)
    if math.isinf(f32):
        return "+Inf" if f32 > 0 else "-Inf"
    if f32 == 0:
        return "-0" if math.copysign(1, f32) < 0 else "0"
    # The shortest decimal that reads back as the same float32.
    for significant in range(1, 10):
        text = f"{f32:.{significant - 1}e}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == f32:
            break
    mantissa, _, exp_text = text.partition("e")
    exponent = int(exp_text)
    digits_only = mantissa.replace(".", "").lstrip("-").rstrip("0") or "0"
    sign = "-" if f32 < 0 else ""
    # Go's %g with the shortest precision: exponent form below 1e-4 and from 1e6 (eprec 6).
    if exponent < -4 or exponent >= 6:
        head = digits_only[0] + ("." + digits_only[1:] if len(digits_only) > 1 else "")
        return f"{sign}{head}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if exponent >= len(digits_only) - 1:
        return sign + digits_only + "0" * (exponent - len(digits_only) + 1)
    if exponent >= 0:
        return sign + digits_only[: exponent + 1] + "." + digits_only[exponent + 1 :]
    return sign + "0." + "0" * (-exponent - 1) + digits_only


def resolve_plain(text: str) -> Any:
    """A plain (unquoted, untagged) scalar as go-yaml v2 resolves it, then printed the way
    sigs.k8s.io/yaml writes it into a string field; None for null."""
    if text in _NULL:
        return None
    if text in _TRUE:
        return "true"
    if text in _FALSE:
        return "false"
    if text in _SPECIAL_FLOATS:
        return go_float(_SPECIAL_FLOATS[text])
    first = text[0]
    if first == ".":
        if _DOT_FLOAT.fullmatch(text):
            return go_float(float(text))
        return text
    if not (first.isascii() and (first.isdigit() or first in "+-")):
        return text
    plain = text.replace("_", "")
    number = _go_int(plain)
    if number is not None:
        return str(number)
    if _YAML_FLOAT.fullmatch(plain):
        return go_float(float(plain))
    return text


def resolve_plain_key(text: str) -> str:
    """A plain scalar used as a mapping key: as a value, but JSON keys are strings, so a
    null or an integer beyond int64 is an error (as sigs.k8s.io/yaml's), and the
    special floats are spelled as go-yaml writes them."""
    if text in _NULL:
        raise yaml.YAMLError(f"unsupported map key {text!r}: a null key")
    if text in _SPECIAL_FLOATS:
        value = _SPECIAL_FLOATS[text]
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    out = resolve_plain(text)
    assert out is not None
    if out != text:  # a number: floats beyond float32 as go-yaml spells them
        out = {"+Inf": ".inf", "-Inf": "-.inf", "NaN": ".nan"}.get(out, out)
    if out.isdigit() and int(out) > _INT64[1] and _go_int(text.replace("_", "")) is not None:
        raise yaml.YAMLError(f"unsupported map key {text!r}: an integer beyond int64")
    return str(out)


class KubeLoader(yaml.SafeLoader):
    """SafeLoader whose plain scalars resolve as go-yaml v2's and come out as strings."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a mapping node, but found {node.id}", node.start_mark
            )
        self.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _PLAIN_TAG:
                key: Any = resolve_plain_key(self.construct_scalar(key_node))
            else:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, list | dict):
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        "found an unhashable key",
                        key_node.start_mark,
                    )
            out[key] = self.construct_object(value_node, deep=deep)
        return out


def _only_strings(loader: KubeLoader, node: yaml.ScalarNode) -> Any:
    value = loader.construct_scalar(node)
    if node.style is None and node.tag == _PLAIN_TAG:
        return resolve_plain(value)
    if node.tag == "tag:yaml.org,2002:null":
        return None
    return value


# Every plain scalar gets one tag; it is resolved by resolve_plain, not by regexps.
_PLAIN_TAG = "tag:nfd.k8s-yaml,plain"
KubeLoader.yaml_implicit_resolvers = {}
KubeLoader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"<<\Z"), ["<"])
KubeLoader.add_implicit_resolver(_PLAIN_TAG, re.compile(r".*", re.S), None)
for _tag in ("str", "bool", "int", "float", "null", "timestamp"):
    KubeLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _only_strings)
KubeLoader.add_constructor(_PLAIN_TAG, _only_strings)


def _keys_and_leaves(node: Any) -> Any:
    """Mapping keys as JSON has them (strings); null keys are refused as upstream does."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key is None:
                raise yaml.YAMLError("unsupported map key of type: <nil> (a null key)")
            out[str(key)] = _keys_and_leaves(value)
        return out
    if isinstance(node, list):
        return [_keys_and_leaves(v) for v in node]
    return node


def load_all(text: str) -> Iterator[Any]:
    """Every document of ``text``, with Kubernetes' scalar semantics; raises yaml.YAMLError."""
    loader = KubeLoader(text)
    try:
        while loader.check_data():
            yield _keys_and_leaves(loader.get_data())
    finally:
        loader.dispose()
