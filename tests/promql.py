"""Which metric names and label names a PromQL expression uses, and whether a scrape has them.

Enough PromQL for dashboards and alerts: selectors with matchers, ranges, functions,
aggregations with ``by``/``without``, vector matching with ``on``/``ignoring``, binary
operators, numbers and Grafana's ``$variables``. Used by tests that hold the dashboard
and the alerts in deploy/overlays/prometheus against what the processes export.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from prometheus_client.parser import text_string_to_metric_families

# Labels Prometheus adds to every sample from a ServiceMonitor's or PodMonitor's target.
TARGET_LABELS = frozenset(
    {"job", "instance", "namespace", "pod", "container", "endpoint", "service"}
)
# Series Prometheus makes itself for every target.
SYNTHETIC = {"up": frozenset()}

KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
     "unless", "offset", "inf", "nan"}
)  # fmt: skip
_IDENT = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\''
_SELECTOR = re.compile(rf"({_IDENT})?\s*\{{([^}}]*)\}}")
_MATCHER = re.compile(rf"\s*({_IDENT})\s*(=~|!~|!=|=)\s*(?:{_STRING})\s*,?")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_TOKEN = re.compile(rf"(?<![\w.:$]){_IDENT}(?![\w:])")


def exported(texts: Iterable[str]) -> dict[str, frozenset[str]]:
    """Sample name -> its label names, from Prometheus text expositions (plus ``up``)."""
    names: dict[str, set[str]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                names.setdefault(sample.name, set()).update(sample.labels)
    out = {name: frozenset(labels) for name, labels in names.items()}
    out.update(SYNTHETIC)
    return out


def parse(expr: str) -> tuple[list[tuple[str | None, list[str]]], list[str], set[str]]:
    """(selectors as (metric or None, matcher label names), bare metric names, grouping
    label names) used by ``expr``."""
    text = re.sub(r"\$\{?\w+\}?", "5m", expr)  # Grafana variables ($__rate_interval)
    selectors: list[tuple[str | None, list[str]]] = []
    for match in _SELECTOR.finditer(text):
        body = match.group(2)
        labels = [m.group(1) for m in _MATCHER.finditer(body)]
        if _MATCHER.sub("", body).strip():
            raise ValueError(f"cannot read the matchers {{{body}}} in {expr!r}")
        selectors.append((match.group(1), labels))
    text = _SELECTOR.sub(" ", text)
    text = re.sub(_STRING, " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    grouping: set[str] = set()
    for match in _GROUPING.finditer(text):
        grouping.update(n.strip() for n in match.group(2).split(",") if n.strip())
    text = _GROUPING.sub(" ", text)
    bare = []
    for match in _TOKEN.finditer(text):
        name = match.group(0)
        following = text[match.end() :].lstrip()[:1]
        if name.lower() in KEYWORDS or following == "(":  # a function or an aggregation
            continue
        bare.append(name)
    return selectors, bare, grouping


def problems(expr: str, names: Mapping[str, frozenset[str]]) -> list[str]:
    """What ``expr`` uses that ``names`` (from ``exported``) does not have; [] if nothing."""
    try:
        selectors, bare, grouping = parse(expr)
    except ValueError as err:
        return [str(err)]
    out = []
    used: set[str] = set()
    for metric, labels in selectors:
        if metric is None:
            out.append(f"{expr!r}: a selector without a metric name")
            continue
        used.add(metric)
        if metric not in names:
            out.append(f"{expr!r}: metric {metric} is not exported")
            continue
        for label in labels:
            if label not in names[metric] | TARGET_LABELS:
                out.append(f"{expr!r}: {metric} has no label {label!r}")
    for metric in bare:
        used.add(metric)
        if metric not in names:
            out.append(f"{expr!r}: metric {metric} is not exported")
    available = set(TARGET_LABELS)
    for metric in used:
        available |= names.get(metric, frozenset())
    for label in sorted(grouping - available):
        out.append(f"{expr!r}: no metric it uses has the label {label!r}")
    return out
