"""Kubernetes label name and value rules (IsQualifiedName, IsValidLabelValue).

The checks are character-set tests rather than regexes: ``re`` is a noticeable
part of the worker's start-up, and every label goes through them. They keep the
exact results of Kubernetes' Go regexes (``tests/sources/test_regex_equivalence.py``).
"""

from __future__ import annotations

MAX_NAME_LEN = 63
MAX_PREFIX_LEN = 253
MAX_VALUE_LEN = 63

# The characters of label values and name parts, as in Kubernetes' regexes.
LABEL_VALUE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def is_name_part(text: str) -> bool:
    """Kubernetes' ``^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`` (a qualified name's name).

    On ASCII text ``isalnum`` is exactly ``[A-Za-z0-9]``.
    """
    return (
        text.isascii()
        and text[:1].isalnum()
        and text[-1:].isalnum()
        and text.replace("-", "").replace("_", "").replace(".", "").isalnum()
    )


def is_dns1123_subdomain(text: str) -> bool:
    """Kubernetes' lowercase DNS-1123 subdomain (a qualified name's prefix):
    ``[a-z0-9]([-a-z0-9]*[a-z0-9])?`` labels joined by ``.``.

    Only ``[-.a-z0-9]``, with no label empty (``..``) and none starting or
    ending with ``-`` (``.-``, ``-.``, or at either end).
    """
    return (
        text.isascii()
        and text[:1].isalnum()
        and text[-1:].isalnum()
        and text.replace("-", "").replace(".", "").isalnum()
        and text.lower() == text
        and ".." not in text
        and ".-" not in text
        and "-." not in text
    )


def is_value_text(value: str) -> bool:
    """Kubernetes' ``^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`` (a label value)."""
    return not value or is_name_part(value)


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
    elif not is_name_part(name):
        errors.append(
            f"name part {name!r} must consist of alphanumerics, '-', '_' or '.', "
            "and start and end with an alphanumeric"
        )
    return errors


def value_errors(value: str) -> list[str]:
    """Why ``value`` is not a valid label value (empty list: valid)."""
    if len(value) > MAX_VALUE_LEN:
        return [f"value must be no more than {MAX_VALUE_LEN} characters"]
    if not is_value_text(value):
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
