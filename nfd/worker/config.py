"""nfd-worker.conf: upstream's ``core`` and ``sources.<name>`` sections.

A config is loaded whole or not at all: a broken file raises ConfigError
naming the file and line, so the worker never runs with half a config.
Unknown keys are kept out and reported as warnings, as upstream ignores them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nfd.regex import RegexError, compile_re2
from nfd.sources import SOURCE_NAMES, get_source

DEFAULT_CONFIG_PATH = "/etc/kubernetes/node-feature-discovery/nfd-worker.conf"

_CORE_KEYS = {
    "sleepInterval",
    "featureSources",
    "labelSources",
    "sources",
    "labelWhiteList",
    "noPublish",
    "noPublishFeatures",
    "ownerRefs",
    "noOwnerRefs",
    "klog",
}


class ConfigError(ValueError):
    """A config file or option that cannot be used; the message says where."""


@dataclass
class CoreConfig:
    sleep_interval: float = 60.0
    feature_sources: list[str] = field(default_factory=lambda: ["all"])
    label_sources: list[str] = field(default_factory=lambda: ["all"])
    label_whitelist: str = ""
    no_publish: bool = False


@dataclass
class WorkerConfig:
    core: CoreConfig = field(default_factory=CoreConfig)
    # Per-source config: each source's defaults with the user's values on top.
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def source_config(self, name: str) -> dict[str, Any]:
        if name not in self.sources:
            self.sources[name] = get_source(name).default_config()
        return self.sources[name]


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_duration(value: Any) -> float:
    """Parse a Go duration (``60s``, ``1m30s``) or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    sign = -1.0 if text.startswith("-") else 1.0
    text = text.lstrip("+-")
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {value!r} (expected e.g. 60s, 1m30s)")
    return sign * total


class _Where:
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


def merge_config(
    defaults: Any, user: Any, where: str, warnings: list[str], at: _Where | None = None
) -> Any:
    """Overlay ``user`` on ``defaults``; keys unknown to the defaults warn."""
    at = at or _Where("")
    if not isinstance(defaults, dict) or not defaults:
        return copy.deepcopy(user)
    if not isinstance(user, Mapping):
        warnings.append(f"{at(where)}: expected a mapping, ignored")
        return copy.deepcopy(defaults)
    out = copy.deepcopy(defaults)
    for key, value in user.items():
        if key not in defaults:
            warnings.append(f"{at(f'{where}.{key}')}: unknown option, ignored")
            continue
        out[key] = merge_config(defaults[key], value, f"{where}.{key}", warnings, at)
    return out


def _string_list(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return [v for v in value.split(",") if v]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{where}: expected a list of source names")


def build_config(
    data: Any, origin: str = "config", lines: Mapping[str, int] | None = None
) -> WorkerConfig:
    """Build a WorkerConfig from parsed YAML; raise ConfigError on bad values.

    ``lines`` (key path -> line, from ``key_lines``) puts line numbers in messages.
    """
    at = _Where(origin, lines)
    config = WorkerConfig()
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{at()}: expected a mapping at the top level")
    for key in data:
        if key not in ("core", "sources"):
            config.warnings.append(f"{at(str(key))}: unknown top-level key, ignored")
    core = data.get("core") or {}
    if not isinstance(core, Mapping):
        raise ConfigError(f"{at('core')}: expected a mapping")
    for key in core:
        if key not in _CORE_KEYS:
            config.warnings.append(f"{at(f'core.{key}')}: unknown option, ignored")
    if "sleepInterval" in core:
        try:
            interval = parse_duration(core["sleepInterval"])
        except ValueError as err:
            raise ConfigError(f"{at('core.sleepInterval')}: {err}") from None
        # Upstream raises intervals below a second to one second.
        config.core.sleep_interval = 1.0 if 0 < interval < 1 else interval
    if "featureSources" in core:
        config.core.feature_sources = _string_list(
            core["featureSources"], at("core.featureSources")
        )
    if "labelSources" in core:
        config.core.label_sources = _string_list(core["labelSources"], at("core.labelSources"))
    if core.get("sources") is not None:
        # Deprecated alias that, as upstream, wins over labelSources.
        config.core.label_sources = _string_list(core["sources"], at("core.sources"))
    if core.get("labelWhiteList") is not None:
        config.core.label_whitelist = str(core["labelWhiteList"])
        try:
            compile_re2(config.core.label_whitelist)
        except RegexError as err:
            raise ConfigError(f"{at('core.labelWhiteList')}: {err}") from None
    if "noPublish" in core:
        if not isinstance(core["noPublish"], bool):
            raise ConfigError(f"{at('core.noPublish')}: expected true or false")
        config.core.no_publish = core["noPublish"]

    sources = data.get("sources") or {}
    if not isinstance(sources, Mapping):
        raise ConfigError(f"{at('sources')}: expected a mapping")
    for name in SOURCE_NAMES:
        source = get_source(name)
        user = sources.get(name) or {}
        # A source whose upstream config is not a mapping (custom: a list of
        # rules) reshapes it; its ValueError invalidates the file, as upstream.
        normalize = getattr(source, "normalize_config", None)
        if normalize is not None:
            try:
                user = normalize(user)
            except ValueError as err:
                raise ConfigError(f"{at(f'sources.{name}')}: {err}") from None
        config.sources[name] = merge_config(
            source.default_config(), user, f"sources.{name}", config.warnings, at
        )
    for name in sources:
        if name not in SOURCE_NAMES:
            config.warnings.append(f"{at(f'sources.{name}')}: unknown source, ignored")
    return config


def load_config(path: str, must_exist: bool = False) -> WorkerConfig:
    """Load nfd-worker.conf; a missing file gives the defaults unless ``must_exist``."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        if must_exist:
            raise ConfigError(f"{path}: no such file") from None
        return build_config({}, path)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text: {err}") from None
    return parse_config_text(text, path)


def key_lines(node: Any, prefix: str = "") -> dict[str, int]:
    """Line (1-based) of every mapping key in a composed YAML tree, by dotted path."""
    import yaml

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
    import yaml  # only when there is a file: a worker without one starts faster

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


def parse_config_text(text: str, origin: str) -> WorkerConfig:
    data, lines = load_yaml_with_lines(text, origin)
    return build_config(data, origin, lines)
