"""How the commands print what they found: a table or YAML for people, JSON for scripts.

Pure functions from documents to text; the commands choose a format with
``choose_format`` (``-o`` when given, else the human default on a terminal and
JSON through a pipe) and keep their own JSON spelling, which scripts parse.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

import yaml

FORMATS = ("table", "yaml", "json")


def stream_is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def choose_format(requested: str | None, is_tty: bool, human: str) -> str:
    """``requested`` (``-o``) when given; else ``human`` on a terminal, JSON otherwise."""
    if requested:
        return requested
    return human if is_tty else "json"


def add_output_option(parser: Any, human: str, formats: Sequence[str] = FORMATS) -> None:
    parser.add_argument(
        "--output",
        "-o",
        choices=tuple(formats),
        default=None,
        help=f"output format (default: {human} on a terminal, json when piped)",
    )


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns left-aligned and two spaces apart, kubectl-style; no trailing blanks."""
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in (header, *rows):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def labels_table(labels: Mapping[str, str], empty: str = "No labels.") -> str:
    """NAME and VALUE, sorted by name."""
    if not labels:
        return empty + "\n"
    return table(("NAME", "VALUE"), [(k, str(labels[k])) for k in sorted(labels)])


def to_yaml(document: Any) -> str:
    return yaml.safe_dump(document, sort_keys=True, default_flow_style=False)


def _flow(mapping: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={mapping[k]}" for k in sorted(mapping))


def features_table(features: Mapping[str, Any]) -> str:
    """A features document (upstream's ``spec.features`` shape), one row per element.

    Flags show the flag, attributes name and value, instances their index and
    attributes as ``name=value`` pairs.
    """
    rows: list[tuple[str, str, str, str]] = []
    for name in sorted(features.get("flags") or {}):
        for element in sorted((features["flags"][name] or {}).get("elements") or {}):
            rows.append((name, "flag", element, ""))
    for name in sorted(features.get("attributes") or {}):
        elements = (features["attributes"][name] or {}).get("elements") or {}
        for element in sorted(elements):
            rows.append((name, "attribute", element, str(elements[element])))
    for name in sorted(features.get("instances") or {}):
        elements = (features["instances"][name] or {}).get("elements") or []
        for index, instance in enumerate(elements):
            attrs = (instance or {}).get("attributes") or {}
            rows.append((name, "instance", str(index), _flow(attrs)))
    if not rows:
        return "No features.\n"
    return table(("FEATURE", "TYPE", "ELEMENT", "VALUE"), rows)


def rule_output_table(output: Mapping[str, Any]) -> str:
    """``nfd dryrun``'s result: labels, annotations, taints and extended resources."""
    sections = []
    labels = output.get("labels") or {}
    sections.append(f"Labels ({len(labels)}):\n" + _indent(labels_table(labels, "none")))
    annotations = output.get("annotations") or {}
    sections.append(
        f"Annotations ({len(annotations)}):\n" + _indent(labels_table(annotations, "none"))
    )
    taints = output.get("taints") or []
    rows = [
        (str(t.get("key", "")), str(t.get("value", "")), str(t.get("effect", ""))) for t in taints
    ]
    body = table(("KEY", "VALUE", "EFFECT"), rows) if rows else "none\n"
    sections.append(f"Taints ({len(taints)}):\n" + _indent(body))
    resources = output.get("extendedResources") or {}
    sections.append(
        f"Extended resources ({len(resources)}):\n" + _indent(labels_table(resources, "none"))
    )
    return "\n".join(sections)


def _indent(text: str) -> str:
    return "".join("  " + line if line.strip() else line for line in text.splitlines(True))


def render(
    document: Any,
    fmt: str,
    json_text: Callable[[Any], str],
    table_text: Callable[[Any], str],
) -> str:
    """``document`` in ``fmt``: the command's own JSON, YAML, or its table."""
    if fmt == "json":
        return json_text(document)
    if fmt == "yaml":
        return to_yaml(document)
    return table_text(document)
