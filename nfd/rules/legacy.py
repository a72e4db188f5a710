"""The legacy custom rule format of v0.6-v0.14 (``matchOn``), converted to rules.

Each ``matchOn`` entry becomes one ``matchAny`` element (logical OR); the
rules inside an entry become its terms (logical AND):

* ``pciId``/``usbId`` -> ``pci.device``/``usb.device`` instances, one
  ``In`` expression per non-empty attribute list;
* ``loadedKMod`` -> ``kernel.loadedmodule``, each module ``Exists``;
* ``cpuId`` -> ``cpu.cpuid``, each flag ``Exists``;
* ``kConfig`` -> ``kernel.config``, ``OPT`` ``In [y, m]``, ``OPT=v`` ``In [v]``;
* ``nodename`` -> ``system.name`` ``nodename`` ``InRegexp`` (invalid
  patterns skipped, as upstream did).

The label is ``custom-<name>`` (``<name>`` as-is when it contains ``/``) with
``value`` (default ``"true"``), as the v0.10-v0.14 legacy runner produced. An
empty ``matchOn`` matches unconditionally (v0.10-v0.14); an entry that can
never match (e.g. ``pciId`` with no lists) is dropped, and a rule left with
no entries yields no rule at all.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from nfd.regex import RegexError, compile_re2
from nfd.rules.errors import RuleError
from nfd.rules.expression import MatchExpression
from nfd.rules.limits import MAX_EXPRESSIONS_PER_TERM, MAX_MATCH_ANY, MAX_NAME_LENGTH
from nfd.rules.model import FeatureTerm, Rule, scalar

log = logging.getLogger(__name__)

LEGACY_MATCHERS = ("pciId", "usbId", "loadedKMod", "cpuId", "kConfig", "nodename")
_DEVICE_ATTRS = ("class", "vendor", "device")


def _strings(raw: Any, where: str) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise RuleError(f"{where}: expected a list of strings")
    if len(raw) > MAX_EXPRESSIONS_PER_TERM:
        raise RuleError(
            f"{where}: {len(raw)} entries, over the limit of {MAX_EXPRESSIONS_PER_TERM} "
            "(MAX_EXPRESSIONS_PER_TERM)"
        )
    return [scalar(v, where) for v in raw]


def _device_term(raw: Any, feature: str, where: str) -> FeatureTerm | None:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise RuleError(f"{where}: expected a mapping with class, vendor, device lists")
    unknown = sorted(str(k) for k in raw if k not in _DEVICE_ATTRS)
    if unknown:
        raise RuleError(f"{where}: unknown field(s) {', '.join(unknown)}")
    exprs = {}
    for attr in _DEVICE_ATTRS:
        values = _strings(raw.get(attr), f"{where}.{attr}")
        if values:
            exprs[attr] = MatchExpression("In", tuple(values))
    if not exprs:
        return None  # upstream: all lists empty never matches
    return FeatureTerm(feature, exprs)


def _convert_matcher(raw: Any, where: str) -> list[FeatureTerm] | None:
    """One matchOn entry; None when it can never match."""
    if not isinstance(raw, Mapping):
        raise RuleError(f"{where}: expected a mapping of legacy matchers")
    unknown = sorted(str(k) for k in raw if k not in LEGACY_MATCHERS)
    if unknown:
        raise RuleError(
            f"{where}: unknown matcher(s) {', '.join(unknown)} "
            f"(expected {', '.join(LEGACY_MATCHERS)})"
        )
    terms: list[FeatureTerm] = []
    for key in ("pciId", "usbId"):
        if key in raw:
            feature = "pci.device" if key == "pciId" else "usb.device"
            term = _device_term(raw[key], feature, f"{where}.{key}")
            if term is None:
                return None
            terms.append(term)
    if "loadedKMod" in raw:
        mods = _strings(raw["loadedKMod"], f"{where}.loadedKMod")
        terms.append(
            FeatureTerm("kernel.loadedmodule", {m: MatchExpression("Exists") for m in mods})
        )
    if "cpuId" in raw:
        flags = _strings(raw["cpuId"], f"{where}.cpuId")
        terms.append(FeatureTerm("cpu.cpuid", {f: MatchExpression("Exists") for f in flags}))
    if "kConfig" in raw:
        exprs = {}
        for entry in _strings(raw["kConfig"], f"{where}.kConfig"):
            opt, sep, value = entry.partition("=")
            exprs[opt] = MatchExpression("In", (value,) if sep else ("y", "m"))
        terms.append(FeatureTerm("kernel.config", exprs))
    if "nodename" in raw:
        patterns = []
        for pattern in _strings(raw["nodename"], f"{where}.nodename"):
            try:
                compile_re2(pattern)
            except RegexError as err:
                log.warning("%s.nodename: %s, skipped", where, err)
                continue
            patterns.append(pattern)
        if not patterns:
            return None
        terms.append(
            FeatureTerm("system.name", {"nodename": MatchExpression("InRegexp", tuple(patterns))})
        )
    return terms


def legacy_label_name(name: str) -> str:
    return name if "/" in name else f"custom-{name}"


def convert_legacy_rule(raw: Mapping[str, Any], where: str, origin: str = "") -> list[Rule]:
    """A legacy rule as zero or one new-format rule."""
    unknown = sorted(str(k) for k in raw if k not in ("name", "value", "matchOn"))
    if unknown:
        raise RuleError(f"{where}: unknown field(s) {', '.join(unknown)} in a legacy rule")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise RuleError(f"{where}: name: required, a non-empty string")
    if len(name) > MAX_NAME_LENGTH:
        raise RuleError(f"{where}: name: over the limit of {MAX_NAME_LENGTH} (MAX_NAME_LENGTH)")
    value = raw.get("value")
    value = "true" if value is None else scalar(value, f"{where}: value")
    match_on = raw.get("matchOn")
    if match_on is not None and not isinstance(match_on, list):
        raise RuleError(f"{where}: matchOn: expected a list of matchers")
    if match_on is not None and len(match_on) > MAX_MATCH_ANY:
        raise RuleError(
            f"{where}: matchOn: {len(match_on)} entries, over the limit of {MAX_MATCH_ANY} "
            "(MAX_MATCH_ANY)"
        )
    log.warning("%s: legacy 'matchOn' rule format is deprecated; converted", where)
    rule = Rule(name=name, labels={legacy_label_name(name): value}, origin=origin)
    entries = match_on or []
    for i, entry in enumerate(entries):
        terms = _convert_matcher(entry, f"{where}: matchOn[{i}]")
        if terms is not None:
            rule.match_any.append(terms)
    if entries and not rule.match_any:
        return []
    return [rule]
