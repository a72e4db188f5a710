"""Go's ``time.ParseDuration`` syntax (``60s``, ``1m30s``, ``1.5h``) for config values,
flags and feature-file expiry comments; plain numbers are seconds."""

from __future__ import annotations

import re
from typing import Any

# Go's units; "ms" must win over "m" followed by "s".
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)", re.ASCII)


def parse_duration(value: Any) -> float:
    """Seconds in a Go duration string, or in a plain number."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    if body == "0":
        return 0.0
    total, pos = 0.0, 0
    while pos < len(body) and (part := _PART.match(body, pos)):
        total += float(part[1]) * _UNIT_SECONDS[part[2]]
        pos = part.end()
    if not body or pos != len(body):
        raise ValueError(f"invalid duration {value!r} (expected e.g. 60s, 1m30s)")
    return sign * total
