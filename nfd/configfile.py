"""Config files in YAML, with each key's line kept for error messages.

Below both daemons: the worker's nfd-worker.conf and the master's nfd-master.conf
are read the same way, and a bad value is reported as ``file:line: key``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file or option that cannot be used; the message says where."""


def is_devnull(path: str) -> bool:
    """``--config=/dev/null`` (or a link to it) is the usual way to say "no config file"."""
    try:
        return os.path.samefile(path, os.devnull)
    except (OSError, ValueError):
        return False


class Where:
    """Says where a config key is: ``file:line: core.sleepInterval``.

    ``lines`` maps dotted key paths to the line they are on in the file
    ("" is the document itself); keys it does not know get the file alone.
    """

    def __init__(self, origin: str, lines: Mapping[str, int] | None = None) -> None:
        self.origin = origin
        self.lines = lines or {}

    def __call__(self, key: str = "") -> str:
        line = self.lines.get(key)
        place = f"{self.origin}:{line}" if line else self.origin
        if not place or not key:
            return place or key
        return f"{place}: {key}"


def key_lines(node: Any, prefix: str = "") -> dict[str, int]:
    """Line (1-based) of every mapping key in a composed YAML tree, by dotted path."""
    lines: dict[str, int] = {}
    if not prefix:
        lines[""] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
            lines[path] = key_node.start_mark.line + 1
            lines.update(key_lines(value_node, path))
    return lines


def load_yaml_with_lines(text: str, origin: str) -> tuple[Any, dict[str, int] | None]:
    """Parse one YAML document; also return each key's line for later error messages.

    Shared by the worker's and the master's config files. Raises ConfigError
    naming ``origin`` and the line of a syntax error.
    """
    loader = None
    try:
        # The reader rejects control characters already in the constructor.
        loader = yaml.SafeLoader(text)
        # Compose first, so errors in values can name the line of their key.
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{origin}:{mark.line + 1}" if mark is not None else origin
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, key_lines(node) if node is not None else None
