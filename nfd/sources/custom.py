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
both places. A file that is not a regular file of at most 1 MiB (a FIFO, a
device, a symlink loop, a huge file) is refused by its size and kind before
anything is read or parsed, with a warning naming it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nfd.hostfs import FileRefused, read_regular_file, stat_regular_file
from nfd.rules import Rule, RuleError, execute_rules, load_rules, static_rules
from nfd.sources import Source, SourceContext

if TYPE_CHECKING:
    from nfd.features import Features

log = logging.getLogger(__name__)

DEFAULT_RULES_DIR = "/etc/kubernetes/node-feature-discovery/custom.d"
MAX_RULE_FILE_SIZE = 1 << 20
# All rule files together: what the rules directory may cost in parsing and memory.
MAX_RULES_DIR_SIZE = 16 << 20


def _visible(directory: str) -> list[str]:
    return [
        os.path.join(directory, name)
        for name in sorted(os.listdir(directory))
        if not name.startswith(".")
    ]


def rule_files(directory: str) -> list[str]:
    """Entries of ``directory`` and of its first-level sub-directories, dot-files and
    deeper directories left out. Entries that are not regular files are kept, so that
    loading them names them and says why they are refused."""
    files: list[str] = []
    try:
        entries = _visible(directory)
    except FileNotFoundError:
        return []
    except OSError as err:
        log.warning("custom: cannot list %s: %s", directory, err.strerror)
        return []
    for path in entries:
        if not os.path.isdir(path):
            files.append(path)
            continue
        try:
            subs = _visible(path)
        except OSError as err:
            log.warning("custom: cannot list %s: %s", path, err.strerror)
            continue
        files.extend(sub for sub in subs if not os.path.isdir(sub))
    return files


# Parsed rule files by (path, mtime, size): the worker re-reads the directory
# every cycle, and unchanged files need not be parsed (or warned about) again.
_FILE_CACHE: dict[str, tuple[tuple[int, int], list[Rule]]] = {}


def _load_file(path: str, budget: int) -> tuple[list[Rule], int]:
    """The rules of one file and its size; FileRefused or RuleError naming it.

    ``budget`` is what is left of MAX_RULES_DIR_SIZE.
    """
    stat = stat_regular_file(path, MAX_RULE_FILE_SIZE)  # size and kind, before parsing
    if stat.st_size > budget:
        raise FileRefused(
            path, f"over the {MAX_RULES_DIR_SIZE} bytes allowed for all rule files together"
        )
    key = (stat.st_mtime_ns, stat.st_size)
    cached = _FILE_CACHE.get(path)
    if cached is not None and cached[0] == key:
        return cached[1], stat.st_size
    data = read_regular_file(path, MAX_RULE_FILE_SIZE)
    rules = load_rules(data, path, worker=True)
    if len(_FILE_CACHE) > 1024:
        _FILE_CACHE.clear()
    _FILE_CACHE[path] = (key, rules)
    return rules, stat.st_size


def load_rules_dir(directory: str, warnings: list[str] | None = None) -> list[Rule]:
    rules: list[Rule] = []
    budget = MAX_RULES_DIR_SIZE
    for path in rule_files(directory):
        try:
            loaded, size = _load_file(path, budget)
            rules.extend(loaded)
            budget -= size
        except (RuleError, FileRefused) as err:
            message = f"custom: rule file skipped: {err}"
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
        # A rule that failed (a bad template, an exhausted budget) is skipped; the
        # others' labels stand.
        for error in output.errors:
            log.warning("custom: rule skipped: %s", error)
        return output.labels


SOURCE = CustomSource()
