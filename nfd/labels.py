"""Kubernetes label name and value rules (IsQualifiedName, IsValidLabelValue)."""

from __future__ import annotations

import re

MAX_NAME_LEN = 63
MAX_PREFIX_LEN = 253
MAX_VALUE_LEN = 63

# Kubernetes' Go regexes. Go's ``$`` is the end of the text: fullmatch, since
# re's ``$`` would also let one trailing newline through.
_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*")
# Runs of characters that label values may not hold.
NOT_LABEL_VALUE_CHARS = re.compile(r"[^-A-Za-z0-9_.]+")


def is_dns1123_subdomain(text: str) -> bool:
    """Kubernetes' lowercase DNS-1123 subdomain (a qualified name's prefix, a Node name)."""
    return _DNS1123_SUBDOMAIN.fullmatch(text) is not None


def name_errors(key: str) -> list[str]:
    """Why ``key`` is not a valid qualified label name (empty list: valid)."""
    errors: list[str] = []
    prefix, sep, name = key.rpartition("/")
    if sep:
        if not prefix:
            errors.append("prefix part must be non-empty")
        elif len(prefix) > MAX_PREFIX_LEN:
            errors.append(f"prefix part must be no more than {MAX_PREFIX_LEN} characters")
        elif not is_dns1123_subdomain(prefix):
            errors.append(f"prefix part {prefix!r} must be a lowercase DNS-1123 subdomain")
        if "/" in prefix:
            errors.append("a qualified name must consist of at most one '/'")
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > MAX_NAME_LEN:
        errors.append(f"name part must be no more than {MAX_NAME_LEN} characters")
    elif not _NAME_PART.fullmatch(name):
        errors.append(
            f"name part {name!r} must consist of alphanumerics, '-', '_' or '.', "
            "and start and end with an alphanumeric"
        )
    return errors


def value_errors(value: str) -> list[str]:
    """Why ``value`` is not a valid label value (empty list: valid)."""
    if len(value) > MAX_VALUE_LEN:
        return [f"value must be no more than {MAX_VALUE_LEN} characters"]
    if not _VALUE.fullmatch(value):
        return [
            f"value {value!r} must be empty or consist of alphanumerics, '-', '_' or '.', "
            "and start and end with an alphanumeric"
        ]
    return []


def is_valid_name(key: str) -> bool:
    return not name_errors(key)


def is_valid_value(value: str) -> bool:
    return not value_errors(value)


def split_key(key: str) -> tuple[str, str]:
    """Return (namespace, name); namespace is empty for unprefixed keys."""
    ns, _, name = key.rpartition("/")
    return ns, name


MAX_OBJECT_NAME_LEN = 253


def node_name_error(name: str) -> str | None:
    """Why ``name`` cannot be a Node's name (None: it can).

    Kubernetes requires a DNS-1123 subdomain of at most 253 characters. Every name a
    client sends is checked before it reaches an API path: ``node/status``, ``..`` or
    ``%2F`` would otherwise address another resource or subresource.
    """
    if not name:
        return "node name is empty"
    if len(name) > MAX_OBJECT_NAME_LEN:
        return f"node name is longer than {MAX_OBJECT_NAME_LEN} characters"
    if not is_dns1123_subdomain(name):
        return (
            f"node name {name[:80]!r} is not a lowercase DNS-1123 subdomain "
            "(lowercase alphanumerics, '-' and '.', starting and ending with an alphanumeric)"
        )
    return None
