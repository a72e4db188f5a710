"""Kubernetes label name and value rules (IsQualifiedName, IsValidLabelValue)."""

from __future__ import annotations

import re

_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_RE = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")

MAX_NAME_LEN = 63
MAX_PREFIX_LEN = 253
MAX_VALUE_LEN = 63


def name_errors(key: str) -> list[str]:
    """Why ``key`` is not a valid qualified label name (empty list: valid)."""
    errors: list[str] = []
    prefix, sep, name = key.rpartition("/")
    if sep:
        if not prefix:
            errors.append("prefix part must be non-empty")
        elif len(prefix) > MAX_PREFIX_LEN:
            errors.append(f"prefix part must be no more than {MAX_PREFIX_LEN} characters")
        elif not _DNS1123_SUBDOMAIN_RE.match(prefix):
            errors.append(f"prefix part {prefix!r} must be a lowercase DNS-1123 subdomain")
        if "/" in prefix:
            errors.append("a qualified name must consist of at most one '/'")
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > MAX_NAME_LEN:
        errors.append(f"name part must be no more than {MAX_NAME_LEN} characters")
    elif not _NAME_RE.match(name):
        errors.append(
            f"name part {name!r} must consist of alphanumerics, '-', '_' or '.', "
            "and start and end with an alphanumeric"
        )
    return errors


def value_errors(value: str) -> list[str]:
    """Why ``value`` is not a valid label value (empty list: valid)."""
    if len(value) > MAX_VALUE_LEN:
        return [f"value must be no more than {MAX_VALUE_LEN} characters"]
    if not _VALUE_RE.match(value):
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
