"""nfd-worker.conf: upstream's ``core`` and ``sources.<name>`` sections.

A config is loaded whole or not at all: a broken file raises ConfigError
naming the file and line, so the worker never runs with half a config.
Unknown keys are kept out and reported as warnings, as upstream ignores them.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nfd.configfile import ConfigError, Where, is_devnull, load_yaml_with_lines
from nfd.durations import parse_duration
from nfd.hostfs import FileRefused, read_regular_file
from nfd.regex import RegexError, compile_re2
from nfd.sources import SOURCE_NAMES, get_source

# A ConfigMap holds at most 1 MiB; a larger nfd-worker.conf is a mistake, not config.
MAX_CONFIG_BYTES = 1 << 20

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


# Upstream v0.19's NodeFeature owner reference sources, in the order it writes them.
OWNER_REF_SOURCES = ("node", "pod", "ds")
DEFAULT_OWNER_REFS = ("pod", "ds")


def normalize_owner_refs(values: list[str]) -> list[str]:
    """Upstream's normalizeOwnerRefSources: known names, no repeats, canonical order."""
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate owner reference source {value!r}")
        if value not in OWNER_REF_SOURCES:
            raise ValueError(
                f"invalid owner reference source {value!r} (must be one of: node, pod, ds)"
            )
        seen.add(value)
    return [v for v in OWNER_REF_SOURCES if v in seen]


@dataclass(slots=True)
class CoreConfig:
    sleep_interval: float = 60.0
    feature_sources: list[str] = field(default_factory=lambda: ["all"])
    label_sources: list[str] = field(default_factory=lambda: ["all"])
    label_whitelist: str = ""
    no_publish: bool = False
    # NodeFeature publishing (upstream v0.17+): owners of the object, and feature keys
    # ("pci.device", "pci.*") discovered but left out of it.
    owner_refs: list[str] = field(default_factory=lambda: list(DEFAULT_OWNER_REFS))
    no_owner_refs: bool = False
    no_publish_features: list[str] = field(default_factory=list)
    # Keys of the config file that were set (core.<key>), for "has no effect" warnings.
    given: frozenset[str] = field(default=frozenset(), compare=False)


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


def merge_config(
    defaults: Any, user: Any, where: str, warnings: list[str], at: Where | None = None
) -> Any:
    """Overlay ``user`` on ``defaults``; keys unknown to the defaults warn."""
    at = at or Where("")
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
    at = Where(origin, lines)
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
    if "noOwnerRefs" in core:
        if not isinstance(core["noOwnerRefs"], bool):
            raise ConfigError(f"{at('core.noOwnerRefs')}: expected true or false")
        config.core.no_owner_refs = core["noOwnerRefs"]
    if "ownerRefs" in core:
        refs = core["ownerRefs"]
        if refs is None:
            refs = []
        if not isinstance(refs, list) or not all(isinstance(v, str) for v in refs):
            raise ConfigError(f"{at('core.ownerRefs')}: expected a list of node, pod, ds")
        try:
            config.core.owner_refs = normalize_owner_refs(refs)
        except ValueError as err:
            raise ConfigError(f"{at('core.ownerRefs')}: {err}") from None
    if core.get("noPublishFeatures") is not None:
        keys = core["noPublishFeatures"]
        if not isinstance(keys, list) or not all(isinstance(v, str) for v in keys):
            raise ConfigError(
                f"{at('core.noPublishFeatures')}: expected a list of feature keys "
                "(e.g. [pci.device, 'usb.*'])"
            )
        config.core.no_publish_features = list(keys)
    if core.get("klog"):
        if not isinstance(core["klog"], Mapping):
            raise ConfigError(f"{at('core.klog')}: expected a mapping of klog options")
        config.warnings.append(
            f"{at('core.klog')}: klog options; this worker logs through Python's logging "
            "(-v sets the level), ignored"
        )
    config.core.given = frozenset(k for k in core if k in _CORE_KEYS)

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
    """Load nfd-worker.conf; a missing file gives the defaults unless ``must_exist``.

    At most MAX_CONFIG_BYTES of a regular file is read: a FIFO would block discovery and
    a huge or growing file would cost the worker its memory. /dev/null is the empty file.
    """
    if is_devnull(path):
        return build_config({}, path)
    if not os.path.lexists(path):
        if must_exist:
            raise ConfigError(f"{path}: no such file")
        return build_config({}, path)
    try:
        text = read_regular_file(path, MAX_CONFIG_BYTES).decode("utf-8")
    except FileRefused as err:
        raise ConfigError(str(err)) from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text: {err}") from None
    return parse_config_text(text, path)


def parse_config_text(text: str, origin: str) -> WorkerConfig:
    data, lines = load_yaml_with_lines(text, origin)
    return build_config(data, origin, lines)
