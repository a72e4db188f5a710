"""nfd-worker.conf: upstream's ``core`` and ``sources.<name>`` sections.

A config is loaded whole or not at all: a broken file raises ConfigError
naming the file and line, so the worker never runs with half a config.
Unknown keys are kept out and reported as warnings, as upstream ignores them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nfd.durations import parse_duration
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


@dataclass(slots=True)
class CoreConfig:
    sleep_interval: float = 60.0
    feature_sources: list[str] = field(default_factory=lambda: ["all"])
    label_sources: list[str] = field(default_factory=lambda: ["all"])
    label_whitelist: str = ""
    no_publish: bool = False


@dataclass(slots=True)
class WorkerConfig:
    core: CoreConfig = field(default_factory=CoreConfig)
    # Per-source config: each source's defaults with the user's values on top.
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def source_config(self, name: str) -> dict[str, Any]:
        if name not in self.sources:
            self.sources[name] = get_source(name).default_config()
        return self.sources[name]


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


def deep_copy(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """``copy.deepcopy`` for parsed YAML/JSON data, without importing ``copy``.

    Dicts, lists and sets are copied, keeping shared and self-referencing
    containers (YAML anchors) shared and cyclic as deepcopy does; everything else
    in such data (strings, numbers, dates) is immutable and kept.
    """
    if not isinstance(value, dict | list | set):
        return value
    memo = {} if memo is None else memo
    done = memo.get(id(value))
    if done is not None:
        return done
    if isinstance(value, set):
        memo[id(value)] = copied_set = set(value)
        return copied_set
    if isinstance(value, list):
        copied_list: list[Any] = []
        memo[id(value)] = copied_list
        copied_list.extend(deep_copy(item, memo) for item in value)
        return copied_list
    copied_dict: dict[Any, Any] = {}
    memo[id(value)] = copied_dict
    for key, item in value.items():
        copied_dict[key] = deep_copy(item, memo)
    return copied_dict


def merge_config(
    defaults: Any, user: Any, where: str, warnings: list[str], at: _Where | None = None
) -> Any:
    """Overlay ``user`` on ``defaults``; keys unknown to the defaults warn."""
    at = at or _Where("")
    if not isinstance(defaults, dict) or not defaults:
        return deep_copy(user)
    if not isinstance(user, Mapping):
        warnings.append(f"{at(where)}: expected a mapping, ignored")
        return deep_copy(defaults)
    out = deep_copy(defaults)
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


def is_comments_only(text: str) -> bool:
    """True for YAML text that is blank lines and comments only: an empty document.

    As shipped, nfd-worker.conf is every option commented out; parsing it needs no
    YAML parser. Non-ASCII text and ASCII control characters other than tab, CR
    and LF go to the parser, which reports them as the reader would.
    """
    if not text.isascii():
        return False
    for line in text.splitlines():
        line = line.lstrip(" ")  # not tabs: YAML refuses a tab before a comment
        if line and not line.startswith("#"):
            return False
    return text.replace("\t", "").replace("\n", "").replace("\r", "").isprintable()


def load_yaml_with_lines(text: str, origin: str) -> tuple[Any, dict[str, int] | None]:
    """Parse one YAML document; also return each key's line for later error messages.

    Shared by the worker's and the master's config files. Raises ConfigError
    naming ``origin`` and the line of a syntax error.
    """
    if is_comments_only(text):
        return None, None
    import yaml  # only for a file with content: PyYAML's import is ~25 ms of a start

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
