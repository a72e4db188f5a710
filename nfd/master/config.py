"""nfd-master.conf (upstream's master config file, reference §7.2) and its live reload.

The file is YAML; ``--options`` is an inline YAML/JSON overlay on it, and flags given
on the command line win over both. A config is loaded whole or not at all: a broken
file raises ConfigError naming the file and line, and a running master keeps the
config it has. Unknown keys are reported as warnings, as upstream ignores them.

Only the label policy (extraLabelNs, denyLabelNs, labelWhiteList, resourceLabels,
enableTaints) changes live; the other options are read at start and a change to
them is logged as needing a restart.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import select
import stat
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nfd.configfile import ConfigError, is_devnull, load_yaml_with_lines
from nfd.configfile import Where as _Where
from nfd.durations import parse_duration
from nfd.labels import name_errors, value_errors
from nfd.master.policy import PolicyConfig, PolicyError
from nfd.regex import RegexError, compile_re2

log = logging.getLogger("nfd-master")

DEFAULT_MASTER_CONFIG_PATH = "/etc/kubernetes/node-feature-discovery/nfd-master.conf"


# restrictions.* (upstream v0.17+), with upstream's defaults.
RESTRICTION_DEFAULTS: dict[str, bool] = {
    "disableLabels": False,
    "disableExtendedResources": False,
    "disableAnnotations": False,
    "denyNodeFeatureLabels": False,
    "allowOverwrite": True,
}
# The restrictions this master does not enforce yet: set to anything but the default, each
# gets a warning at load. Whoever implements one removes it from here. (All of upstream
# v0.19's are enforced: docs/compatibility.md §6.)
UNENFORCED_RESTRICTIONS: frozenset[str] = frozenset()
_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


@dataclass(frozen=True)
class Restrictions:
    """Upstream v0.19's ``restrictions`` (NFDConfig.Restrictions)."""

    # A metav1.LabelSelector as a mapping (matchLabels, matchExpressions); None: every
    # namespace's NodeFeatures count.
    node_feature_namespace_selector: Mapping[str, Any] | None = None
    disable_labels: bool = False
    disable_extended_resources: bool = False
    disable_annotations: bool = False
    deny_node_feature_labels: bool = False
    allow_overwrite: bool = True


_RESTRICTION_FIELDS = {
    "disableLabels": "disable_labels",
    "disableExtendedResources": "disable_extended_resources",
    "disableAnnotations": "disable_annotations",
    "denyNodeFeatureLabels": "deny_node_feature_labels",
    "allowOverwrite": "allow_overwrite",
}


@dataclass(frozen=True)
class MasterConfig:
    no_publish: bool = False
    extra_label_ns: frozenset[str] = frozenset()
    deny_label_ns: frozenset[str] = frozenset()
    label_whitelist: str | None = None
    resource_labels: frozenset[str] = frozenset()
    enable_taints: bool = False
    resync_period: float = 3600.0
    nfd_api_parallelism: int = 10
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    # Page size of the NodeFeature list (upstream's informerPageSize, default 200).
    informer_page_size: int = 200
    restrictions: Restrictions = field(default_factory=Restrictions)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def policy(self, gpu_marking: bool, disable_auto_prefix: bool = False) -> PolicyConfig:
        return PolicyConfig(
            extra_label_ns=self.extra_label_ns,
            deny_label_ns=self.deny_label_ns,
            label_whitelist=self.label_whitelist,
            resource_labels=self.resource_labels,
            enable_taints=self.enable_taints,
            gpu_marking=gpu_marking,
            disable_labels=self.restrictions.disable_labels,
            disable_extended_resources=self.restrictions.disable_extended_resources,
            disable_annotations=self.restrictions.disable_annotations,
            disable_auto_prefix=disable_auto_prefix,
        )


# MasterConfig field -> (upstream key, nfd-master flag dest).
FIELDS: dict[str, tuple[str, str]] = {
    "no_publish": ("noPublish", "no_publish"),
    "extra_label_ns": ("extraLabelNs", "extra_label_ns"),
    "deny_label_ns": ("denyLabelNs", "deny_label_ns"),
    "label_whitelist": ("labelWhiteList", "label_whitelist"),
    "resource_labels": ("resourceLabels", "resource_labels"),
    "enable_taints": ("enableTaints", "enable_taints"),
    "resync_period": ("resyncPeriod", "resync_period"),
    "nfd_api_parallelism": ("nfdApiParallelism", "nfd_api_parallelism"),
    "lease_duration": ("leaderElection.leaseDuration", "leader_elect_lease_duration"),
    "renew_deadline": ("leaderElection.renewDeadline", "leader_elect_renew_deadline"),
    "retry_period": ("leaderElection.retryPeriod", "leader_elect_retry_period"),
    "informer_page_size": ("informerPageSize", "informer_page_size"),
}
# What a running master can take over without a restart: the label policy.
LIVE_FIELDS = frozenset(
    {"extra_label_ns", "deny_label_ns", "label_whitelist", "resource_labels", "enable_taints"}
)
_SET_FIELDS = frozenset({"extra_label_ns", "deny_label_ns", "resource_labels"})
_LIST_KEYS = {
    "extraLabelNs": "extra_label_ns",
    "denyLabelNs": "deny_label_ns",
    "resourceLabels": "resource_labels",
}
# Upstream keys we accept quietly (logging is ours, there is no informer) or that
# this master does not implement (warned about, not an error, as upstream ignores
# unknown keys).
_QUIET_KEYS: frozenset[str] = frozenset()
_UNSUPPORTED_KEYS = frozenset({"featureGates", "autoDefaultNs"})


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"{where}: expected true or false, got {value!r}")


def _names(value: Any, where: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):  # a comma list, as the flag takes
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
    return frozenset(v.strip() for v in value if v.strip())


def _duration(value: Any, where: str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None
    if seconds < 0:
        raise ConfigError(f"{where}: must not be negative, got {value!r}")
    return seconds


def _label_selector(value: Any, where: str) -> Mapping[str, Any] | None:
    """A metav1.LabelSelector, checked the way the API server checks one."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a label selector (matchLabels, matchExpressions)")
    for key in value:
        if key not in ("matchLabels", "matchExpressions"):
            raise ConfigError(
                f"{where}.{key}: unknown field (expected matchLabels, matchExpressions)"
            )
    labels = value.get("matchLabels") or {}
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise ConfigError(f"{where}.matchLabels: expected a mapping of strings to strings")
    for k, v in labels.items():
        _selector_label(k, v, f"{where}.matchLabels")
    expressions = value.get("matchExpressions") or []
    if not isinstance(expressions, list):
        raise ConfigError(f"{where}.matchExpressions: expected a list")
    for i, expr in enumerate(expressions):
        at = f"{where}.matchExpressions[{i}]"
        if not isinstance(expr, Mapping) or not isinstance(expr.get("key"), str):
            raise ConfigError(f"{at}: expected {{key, operator, values}}")
        op = expr.get("operator")
        if op not in _SELECTOR_OPERATORS:
            raise ConfigError(
                f"{at}.operator: {op!r} is not one of {', '.join(_SELECTOR_OPERATORS)}"
            )
        values = expr.get("values") or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ConfigError(f"{at}.values: expected a list of strings")
        if op in ("In", "NotIn") and not values:
            raise ConfigError(f"{at}.values: must be non-empty for {op}")
        if op in ("Exists", "DoesNotExist") and values:
            raise ConfigError(f"{at}.values: must be empty for {op}")
        _selector_label(expr["key"], None, at)
        for v in values:
            _selector_label(expr["key"], v, at)
    return {"matchLabels": dict(labels), "matchExpressions": [dict(e) for e in expressions]}


def _selector_label(key: str, value: str | None, where: str) -> None:
    """A selector's key must be a label name and each value a label value, as
    metav1.LabelSelectorAsSelector requires (upstream's master fails to start else)."""
    if errs := name_errors(key):
        raise ConfigError(f"{where}: key {key!r} is not a valid label name: {'; '.join(errs)}")
    if value is not None and (errs := value_errors(value)):
        raise ConfigError(
            f"{where}: value {value!r} of {key!r} is not a valid label value: {'; '.join(errs)}"
        )


def _restrictions(value: Any, at: _Where, warnings: list[str]) -> Restrictions:
    if value is None:
        return Restrictions()
    if not isinstance(value, Mapping):
        raise ConfigError(f"{at('restrictions')}: expected a mapping")
    values: dict[str, Any] = {}
    for key, sub in value.items():
        where = at(f"restrictions.{key}")
        if key == "nodeFeatureNamespaceSelector":
            values["node_feature_namespace_selector"] = _label_selector(sub, where)
            set_away = sub is not None
        elif key in _RESTRICTION_FIELDS:
            values[_RESTRICTION_FIELDS[key]] = _bool(sub, where)
            set_away = values[_RESTRICTION_FIELDS[key]] != RESTRICTION_DEFAULTS[key]
        elif key == "disableTaints":
            warnings.append(
                f"{where}: listed in upstream's example nfd-master.conf but not an option of "
                "upstream v0.19's nfd-master either (taints follow enableTaints): ignored"
            )
            continue
        else:
            warnings.append(f"{where}: unknown option, ignored")
            continue
        if set_away and key in UNENFORCED_RESTRICTIONS:
            warnings.append(f"{where}: accepted but not enforced by this nfd-master yet")
    return Restrictions(**values)


def build_master_config(
    data: Any, origin: str, lines: Mapping[str, int] | None = None
) -> MasterConfig:
    """MasterConfig from parsed YAML; ConfigError on bad values."""
    at = _Where(origin, lines)
    if data is None:
        return MasterConfig()
    if not isinstance(data, Mapping):
        raise ConfigError(f"{at()}: expected a mapping at the top level")
    values: dict[str, Any] = {}
    warnings: list[str] = []
    for key, value in data.items():
        where = at(str(key))
        if key in ("noPublish", "enableTaints"):
            values["no_publish" if key == "noPublish" else "enable_taints"] = _bool(value, where)
        elif key in _LIST_KEYS:
            values[_LIST_KEYS[key]] = _names(value, where)
        elif key == "labelWhiteList":
            if value is None or value == "":
                values["label_whitelist"] = None
                continue
            if not isinstance(value, str):
                raise ConfigError(f"{where}: expected a regexp string, got {value!r}")
            try:
                compile_re2(value)
            except RegexError as err:
                raise ConfigError(f"{where}: {err}") from None
            values["label_whitelist"] = value
        elif key == "resyncPeriod":
            values["resync_period"] = _duration(value, where)
        elif key == "nfdApiParallelism":
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{where}: expected a positive integer, got {value!r}")
            values["nfd_api_parallelism"] = value
        elif key == "leaderElection":
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: expected a mapping")
            for sub, sub_value in value.items():
                dest = {
                    "leaseDuration": "lease_duration",
                    "renewDeadline": "renew_deadline",
                    "retryPeriod": "retry_period",
                }.get(sub)
                if dest is None:
                    warnings.append(f"{at(f'{key}.{sub}')}: unknown option, ignored")
                    continue
                values[dest] = _duration(sub_value, at(f"{key}.{sub}"))
        elif key == "informerPageSize":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{where}: expected a non-negative integer, got {value!r}")
            values["informer_page_size"] = value
        elif key == "restrictions":
            values["restrictions"] = _restrictions(value, at, warnings)
        elif key == "klog":
            if value:
                warnings.append(
                    f"{where}: klog options; this nfd-master logs through Python's logging "
                    "(-v sets the level), ignored"
                )
        elif key in _QUIET_KEYS:
            continue
        elif key in _UNSUPPORTED_KEYS:
            warnings.append(f"{where}: not supported by this nfd-master, ignored")
        else:
            warnings.append(f"{where}: unknown option, ignored")
    return MasterConfig(**values, warnings=tuple(warnings))


def parse_master_config(text: str, origin: str, options: str | None = None) -> MasterConfig:
    """Parse nfd-master.conf text; ``options`` (--options) overlays it key by key."""
    data, lines = load_yaml_with_lines(text, origin)
    if not options:
        return build_master_config(data, origin, lines)
    extra, extra_lines = load_yaml_with_lines(options, "--options")
    build_master_config(extra, "--options", extra_lines)  # its own errors name --options
    if data is None:
        data = {}
    if isinstance(data, Mapping) and isinstance(extra, Mapping):
        merged = dict(data)
        for key, value in extra.items():
            if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        data = merged
    return build_master_config(data, origin, lines)


# A ConfigMap holds at most 1 MiB; a larger file is a mistake (or hostile), not config.
MAX_CONFIG_BYTES = 1 << 20


def _read_bounded(path: str) -> bytes:
    """At most MAX_CONFIG_BYTES of a regular file: a FIFO would block the reader and a
    device or an endless file would never end."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"{path}: not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes (a ConfigMap's limit)")
    return data


def read_config_text(path: str, must_exist: bool = False) -> str:
    """The file's text; "" when it is missing and not ``must_exist``, or /dev/null."""
    if is_devnull(path):
        return ""
    try:
        return _read_bounded(path).decode("utf-8")
    except FileNotFoundError:
        if must_exist:
            raise ConfigError(f"{path}: no such file") from None
        return ""
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text: {err}") from None


def load_master_config(
    path: str, options: str | None = None, must_exist: bool = False
) -> MasterConfig:
    """Load nfd-master.conf; a missing file gives the defaults unless ``must_exist``."""
    return parse_master_config(read_config_text(path, must_exist), path, options)


# -- flags ---------------------------------------------------------------------


def explicit_dests(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The dests of the flags actually given in ``argv`` (not defaulted): every
    default is replaced by SUPPRESS, so only given flags reach the namespace."""
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def _flag_value(name: str, value: Any) -> Any:
    if name in _SET_FIELDS:
        out: set[str] = set()
        for v in value or []:
            out |= {x.strip() for x in str(v).split(",") if x.strip()}
        return frozenset(out)
    if name in ("no_publish", "enable_taints"):
        return bool(value)
    return value


def merge_flags(config: MasterConfig, args: argparse.Namespace, explicit: set[str]) -> MasterConfig:
    """Flags given on the command line win over the config file."""
    changes = {
        name: _flag_value(name, getattr(args, dest))
        for name, (_key, dest) in FIELDS.items()
        if dest in explicit
    }
    return dataclasses.replace(config, **changes)


def apply_to_args(config: MasterConfig, args: argparse.Namespace) -> None:
    """Write the effective config into the flag namespace, for code that reads flags."""
    for name, (_key, dest) in FIELDS.items():
        value = getattr(config, name)
        if name in _SET_FIELDS:
            value = [",".join(sorted(value))] if value else None
        setattr(args, dest, value)


def restart_needed(old: MasterConfig, new: MasterConfig) -> list[str]:
    """Upstream keys whose change a running master cannot take over."""
    keys = [
        key
        for name, (key, _dest) in FIELDS.items()
        if name not in LIVE_FIELDS and getattr(old, name) != getattr(new, name)
    ]
    if old.restrictions != new.restrictions:
        keys.append("restrictions")
    return keys


class ConfigReloader:
    """Re-reads the config on a change: a good one swaps the label policy live, a
    broken one is logged and the running config stays in force."""

    def __init__(
        self,
        path: str,
        options: str | None,
        must_exist: bool,
        args: argparse.Namespace,
        explicit: set[str],
        running: MasterConfig,
        set_policy: Callable[[PolicyConfig], None],
        gpu_marking: bool,
        *,
        disable_auto_prefix: bool = False,
    ) -> None:
        self.path, self.options, self.must_exist = path, options, must_exist
        self.args, self.explicit = args, explicit
        self.running = running
        self.set_policy = set_policy
        self.gpu_marking = gpu_marking
        self.disable_auto_prefix = disable_auto_prefix

    def __call__(self) -> bool:
        """True when a new config was taken over."""
        try:
            new = merge_flags(
                load_master_config(self.path, self.options, self.must_exist),
                self.args,
                self.explicit,
            )
            # restrictions need a restart: the running ones stay in the policy.
            policy = dataclasses.replace(new, restrictions=self.running.restrictions).policy(
                self.gpu_marking, self.disable_auto_prefix
            )
        except (ConfigError, PolicyError) as err:
            log.error("config reload rejected, keeping the previous config: %s", err)
            return False
        for warning in new.warnings:
            log.warning("%s", warning)
        for key in restart_needed(self.running, new):
            log.warning("config %s: %s changed: needs a restart (not applied)", self.path, key)
        live = {name: getattr(new, name) for name in LIVE_FIELDS}
        changed = any(getattr(self.running, n) != v for n, v in live.items())
        self.running = dataclasses.replace(self.running, **live)
        if changed:
            self.set_policy(policy)
        log.info("config %s reloaded%s", self.path, "" if changed else " (label policy unchanged)")
        return True


# -- watching ------------------------------------------------------------------


class ConfigWatcher:
    """Calls ``on_change`` (in its own thread) when the config file's content changes.

    inotify on the file's directory through the worker's FileWatcher (stdlib only,
    so no worker dependencies come along); it sees editors' rename-over and a
    ConfigMap volume's ``..data`` swap. Where inotify is unavailable it falls back
    to comparing the file every second.
    """

    POLL_S = 1.0
    SETTLE_S = 0.05  # let a burst of writes (truncate, write, close) finish

    def __init__(self, path: str, on_change: Callable[[], object]) -> None:
        self.path = path
        self._on_change = on_change
        self._stop = threading.Event()
        self._last = self._fingerprint()
        self._thread = threading.Thread(target=self._run, name="config-watch", daemon=True)

    def _fingerprint(self) -> tuple[Any, ...]:
        try:
            return (True, _read_bounded(self.path))
        except OSError as err:
            return (False, err.errno)
        except ConfigError as err:
            return (False, str(err))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _check(self) -> None:
        current = self._fingerprint()
        if current == self._last:
            return
        self._last = current
        try:
            self._on_change()
        except Exception:  # noqa: BLE001 - the watcher must survive a bad callback
            log.exception("config reload failed")

    def _run(self) -> None:
        from nfd.filewatch import FileWatcher, WatchTarget

        files: FileWatcher | None
        try:
            files = FileWatcher()
            files.set_targets([WatchTarget(os.path.abspath(self.path), "config", is_file=True)])
        except OSError as err:
            log.warning("inotify unavailable (%s); checking %s every second", err, self.path)
            files = None
        try:
            while not self._stop.is_set():
                if files is None:
                    self._stop.wait(self.POLL_S)
                    self._check()
                    continue
                ready, _, _ = select.select([files.fileno()], [], [], self.POLL_S)
                if ready and files.read():
                    self._stop.wait(self.SETTLE_S)
                    while select.select([files.fileno()], [], [], 0)[0]:
                        files.read()
                    self._check()
        finally:
            if files is not None:
                files.close()
