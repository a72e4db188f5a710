"""custom source: the worker's rules, from built-ins, nfd-worker.conf and custom.d.

Rules run in upstream's order: the built-in static rules (``rdma.capable``,
``rdma.available``), then ``sources.custom`` of nfd-worker.conf, then the
files of the rules directory. Each rule sees every discovered feature plus
``rule.matched`` from the rules before it. Only labels come out (upstream's
worker ignores annotations, taints and extended resources), with keys as
written; ``@`` dynamic values are not resolved here, as upstream's worker
does not (the master does).

Config: upstream's shape is ``sources: custom: [rule, ...]`` (a list); it is
stored as ``{"rules": [...]}`` next to ``rulesDir`` (``--rules-dir``). The
mapping form ``{rules: [...], rulesDir: ...}`` is accepted too. A bad rule in
nfd-worker.conf makes the whole config invalid, as upstream; a bad rule file
in the rules directory is skipped with a warning naming it.

The rules directory (default ``/etc/kubernetes/node-feature-discovery/custom.d``)
is a container path, not under the host prefix, as upstream mounts it. Its
files and the files of its first-level sub-directories are read in name
order; dot-files are skipped. The legacy ``matchOn`` format is accepted in
both places.
"""

from __future__ import annotations

import os

# collections.abc re-exports these; importing it loads the collections package (start-up).
from _collections_abc import Mapping

from nfd.log import get_logger
from nfd.rules import Rule, RuleError, execute_rules, load_rules, static_rules
from nfd.sources import Source, SourceContext

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from nfd.features import Features

log = get_logger(__name__)

DEFAULT_RULES_DIR = "/etc/kubernetes/node-feature-discovery/custom.d"
MAX_RULE_FILE_SIZE = 1 << 20


def rule_files(directory: str) -> list[str]:
    """Files of ``directory`` and of its first-level sub-directories, dot-files skipped."""
    files: list[str] = []
    try:
        entries = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    except OSError as err:
        log.warning("custom: cannot list %s: %s", directory, err.strerror)
        return []
    for name in entries:
        if name.startswith("."):
            continue
        path = os.path.join(directory, name)
        if os.path.isdir(path):
            try:
                subs = sorted(os.listdir(path))
            except OSError:
                continue
            files.extend(
                os.path.join(path, s)
                for s in subs
                if not s.startswith(".") and os.path.isfile(os.path.join(path, s))
            )
        elif os.path.isfile(path):
            files.append(path)
    return files


# Parsed rule files by (path, mtime, size): the worker re-reads the directory
# every cycle, and unchanged files need not be parsed (or warned about) again.
_FILE_CACHE: dict[str, tuple[tuple[int, int], list[Rule]]] = {}


def _load_file(path: str) -> list[Rule]:
    stat = os.stat(path)
    key = (stat.st_mtime_ns, stat.st_size)
    cached = _FILE_CACHE.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    if stat.st_size > MAX_RULE_FILE_SIZE:
        raise RuleError(f"{path}: larger than {MAX_RULE_FILE_SIZE} bytes")
    with open(path, "rb") as f:
        data = f.read()
    rules = load_rules(data, path, worker=True)
    if len(_FILE_CACHE) > 1024:
        _FILE_CACHE.clear()
    _FILE_CACHE[path] = (key, rules)
    return rules


def load_rules_dir(directory: str, warnings: list[str] | None = None) -> list[Rule]:
    rules: list[Rule] = []
    for path in rule_files(directory):
        try:
            rules.extend(_load_file(path))
        except RuleError as err:
            message = f"custom: rule file skipped: {err}"
            log.warning("%s", message)
            if warnings is not None:
                warnings.append(message)
        except OSError as err:
            message = f"custom: {path}: cannot read: {err.strerror}"
            log.warning("%s", message)
            if warnings is not None:
                warnings.append(message)
    return rules


class CustomSource(Source):
    name = "custom"
    priority = 10
    prefix_labels = False

    def __init__(self) -> None:
        # The parsed sources.custom rules and the config they came from.
        self._config_cache: tuple[str, list[Rule]] | None = None

    def default_config(self) -> dict[str, Any]:
        return {"rules": [], "rulesDir": DEFAULT_RULES_DIR}

    def normalize_config(self, user: Any) -> Any:
        """Upstream's list shape -> ``{"rules": [...]}``; ValueError if a rule is bad."""
        if isinstance(user, list):
            user = {"rules": user}
        if isinstance(user, Mapping) and user.get("rules"):
            try:
                load_rules(user["rules"], "sources.custom", worker=True)
            except RuleError as err:
                raise ValueError(str(err)) from None
        return user

    def config_rules(self, config: Mapping[str, Any]) -> list[Rule]:
        raw = config.get("rules") or []
        key = repr(raw)
        if self._config_cache is not None and self._config_cache[0] == key:
            return self._config_cache[1]
        try:
            rules = load_rules(raw, "sources.custom", worker=True)
        except RuleError as err:
            log.warning("custom: %s", err)
            rules = []
        self._config_cache = (key, rules)
        return rules

    def all_rules(self, config: Mapping[str, Any]) -> list[Rule]:
        directory = str(config.get("rulesDir") or DEFAULT_RULES_DIR)
        return static_rules() + self.config_rules(config) + load_rules_dir(directory)

    def labels(self, features: Features, ctx: SourceContext) -> dict[str, str]:
        config = ctx.config if isinstance(ctx.config, Mapping) else {"rules": ctx.config}
        all_features = ctx.features if not ctx.features.is_empty() else features
        output = execute_rules(self.all_rules(config), all_features, resolve_dynamic=False)
        return output.labels


SOURCE = CustomSource()
