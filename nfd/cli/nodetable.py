"""``kubectl nfd nodes``' table, as pure functions: which columns, how short, how wide.

Rows are nodes, columns the chosen labels. To stay readable in an 80-column
terminal the table drops the prefix every column shares (named once in a note
above it), cuts overlong cells with an ellipsis, and splits the columns into as
many blocks as it takes, each led by the NODE column. ``wide`` keeps full names
and one block however wide it gets.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Namespaces whose labels NFD publishes (upstream's allowed namespaces).
NFD_NAMESPACES = ("feature.node.kubernetes.io", "profile.node.kubernetes.io")
DEFAULT_NS = "feature.node.kubernetes.io/"
MISSING = "-"
ELLIPSIS = "…"
SEPARATORS = "/.-_"
GAP = "  "

BOLD, GREEN, RED, DIM, RESET = "\x1b[1m", "\x1b[32m", "\x1b[31m", "\x1b[2m", "\x1b[0m"


@dataclass(frozen=True)
class Node:
    name: str
    labels: Mapping[str, str]
    # The labels the Node's nfd.node.kubernetes.io/feature-labels annotation says nfd-master
    # owns (fully qualified): also those outside NFD's namespaces (nvidia.com/... from a
    # NodeFeature object, a rule's vendor label).
    owned: frozenset[str] = frozenset()


FEATURE_LABELS_ANNOTATION = "nfd.node.kubernetes.io/feature-labels"


def owned_labels(annotations: Mapping[str, str]) -> frozenset[str]:
    """The label names the master's annotation lists, with the default namespace added
    to those it wrote without one (as upstream writes them); ``/name`` is the unprefixed
    label ``name`` (feature gate DisableAutoPrefix, nfd.master.patch)."""
    text = annotations.get(FEATURE_LABELS_ANNOTATION) or ""
    names = (n.strip() for n in text.split(","))
    return frozenset(
        n[1:] if n.startswith("/") else n if "/" in n else DEFAULT_NS + n for n in names if n
    )


def is_nfd_label(name: str) -> bool:
    prefix, slash, _ = name.partition("/")
    if not slash:
        return False
    return any(prefix == ns or prefix.endswith("." + ns) for ns in NFD_NAMESPACES)


def split_patterns(texts: Sequence[str]) -> list[str]:
    """``a,b`` and ``c`` as ``[a, b, c]``; blanks dropped."""
    return [p.strip() for text in texts for p in text.split(",") if p.strip()]


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def select_columns(nodes: Sequence[Node], patterns: Sequence[str]) -> list[str]:
    """Label names for the columns: each exact name as given (even if no node has it),
    each glob's matches among the nodes' labels sorted; first mention wins. A name
    without ``/`` that no node has stands for ``feature.node.kubernetes.io/<name>``."""
    present = sorted({name for node in nodes for name in node.labels})
    have = set(present)
    columns: list[str] = []
    for pattern in patterns:
        # A name without a namespace is also the default namespace's, as NFD spells its
        # labels (kubectl nfd explain prints them so): ``gpu-class``.
        spellings = [pattern] if "/" in pattern else [pattern, DEFAULT_NS + pattern]
        if is_glob(pattern):
            matches = [
                name for name in present if any(fnmatch.fnmatchcase(name, p) for p in spellings)
            ]
        elif pattern not in have and spellings[-1] in have:
            matches = [spellings[-1]]
        else:
            matches = [pattern]
        columns.extend(name for name in matches if name not in columns)
    return columns


def common_prefix(names: Sequence[str]) -> str:
    """The longest prefix all ``names`` share that ends at a separator (``/ . - _``) and
    leaves every name something after it; "" when there is none."""
    if not names:
        return ""
    first, last = min(names), max(names)
    length = 0
    while length < min(len(first), len(last)) and first[length] == last[length]:
        length += 1
    shared = first[:length]
    cut = max(shared.rfind(sep) for sep in SEPARATORS) + 1
    while cut > 0 and any(len(name) <= cut for name in names):
        cut = max(shared.rfind(sep, 0, cut - 1) for sep in SEPARATORS) + 1
    return shared[:cut]


def shortened(columns: Sequence[str]) -> tuple[str, list[str], str]:
    """(prefix dropped, the headers, the note above the table).

    The prefix all columns share; failing that, the one the columns in NFD's
    namespace share, dropped from those only (the others keep their ``/``, so
    a header without one is a shortened name)."""
    prefix = common_prefix(columns)
    if prefix:
        return prefix, [c[len(prefix) :] for c in columns], f"Labels: {prefix}<COLUMN>\n"
    ours = [c for c in columns if c.startswith(NFD_NAMESPACES[0] + "/")]
    if not ours or any("/" not in c for c in columns):
        return "", list(columns), ""
    prefix = common_prefix(ours) if len(ours) > 1 else NFD_NAMESPACES[0] + "/"
    headers = [c[len(prefix) :] if c in ours else c for c in columns]
    return prefix, headers, f"Labels: {prefix}<COLUMN> where COLUMN has no '/'\n"


def clip(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + ELLIPSIS


@dataclass(frozen=True)
class Style:
    colour: bool = False

    def header(self, text: str) -> str:
        return f"{BOLD}{text}{RESET}" if self.colour and text.strip() else text

    def cell(self, text: str, raw: str | None) -> str:
        if not self.colour:
            return text
        if raw is None:
            return f"{DIM}{text}{RESET}"
        if raw == "true":
            return f"{GREEN}{text}{RESET}"
        if raw == "false":
            return f"{RED}{text}{RESET}"
        return text


def render_nodes(
    nodes: Sequence[Node],
    columns: Sequence[str],
    width: int = 80,
    wide: bool = False,
    colour: bool = False,
) -> str:
    """The table of ``nodes`` × ``columns`` (full label names), fitted into ``width``."""
    if not nodes:
        return "No nodes found.\n"
    style = Style(colour)
    _, headers, note = ("", list(columns), "") if wide else shortened(columns)
    node_width = max(len("NODE"), *(len(n.name) for n in nodes))
    if not wide:
        node_width = min(node_width, max(width // 2, len("NODE")))
    # Widest a column may be: what is left beside the NODE column.
    room = max(width - node_width - len(GAP), 4)
    widths = []
    for name, header in zip(columns, headers, strict=True):
        cells = [len(n.labels.get(name, MISSING)) for n in nodes]
        natural = max(len(header), *cells)
        widths.append(natural if wide else min(natural, room))
    blocks = [list(range(len(columns)))] if wide else _blocks(widths, node_width, width)
    parts = [_block(nodes, columns, headers, widths, block, node_width, style) for block in blocks]
    if not columns:
        parts = [_block(nodes, [], [], [], [], node_width, style)]
    # The note sits on top of the first block; blocks are a blank line apart.
    return note + "\n".join(parts)


def _blocks(widths: Sequence[int], node_width: int, width: int) -> list[list[int]]:
    blocks: list[list[int]] = []
    current: list[int] = []
    used = node_width
    for index, w in enumerate(widths):
        if current and used + len(GAP) + w > width:
            blocks.append(current)
            current, used = [], node_width
        current.append(index)
        used += len(GAP) + w
    if current:
        blocks.append(current)
    return blocks


def _block(
    nodes: Sequence[Node],
    columns: Sequence[str],
    headers: Sequence[str],
    widths: Sequence[int],
    block: Sequence[int],
    node_width: int,
    style: Style,
) -> str:
    def line(cells: list[tuple[str, int, int]]) -> str:
        # (styled text, its visible length, column width): pad outside the colour codes.
        out = [text + " " * (w - shown) for text, shown, w in cells[:-1]]
        out.append(cells[-1][0])
        return GAP.join(out)

    lines = []
    head = [(style.header("NODE"), 4, node_width)]
    for i in block:
        text = clip(headers[i], widths[i])
        head.append((style.header(text), len(text), widths[i]))
    lines.append(line(head))
    for node in sorted(nodes, key=lambda n: n.name):
        name = clip(node.name, node_width)
        row = [(name, len(name), node_width)]
        for i in block:
            raw = node.labels.get(columns[i])
            text = clip(MISSING if raw is None else raw, widths[i])
            row.append((style.cell(text, raw), len(text), widths[i]))
        lines.append(line(row))
    return "\n".join(lines) + "\n"
