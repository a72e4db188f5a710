"""The NodeFeatureRule v1alpha1 rule schema and its loader.

``load_rules`` accepts what users actually have: a NodeFeatureRule object, a
list of them (also multi-document YAML or a ``kind: List``), the bare
``spec`` (``{rules: [...]}``) or a bare list of rules. NodeFeatureRule objects
are taken in ``metadata.name`` order, as the master processes them.

Field types are checked here and reported as RuleError naming the origin,
the rule and the field. Operand problems (a ``Gt`` with two values, a bad
regexp) are left to evaluation, where upstream finds them; ``validate_rules``
reports them ahead of time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from nfd import kubeyaml
from nfd.rules.errors import RuleError
from nfd.rules.expression import MATCH_ANY, OPS, MatchExpression
from nfd.rules.legacy import convert_legacy_rule
from nfd.rules.limits import (
    MAX_EXPRESSION_VALUES,
    MAX_EXPRESSIONS_PER_RULE,
    MAX_EXPRESSIONS_PER_TERM,
    MAX_MATCH_ANY,
    MAX_NAME_LENGTH,
    MAX_RULE_TEXT_BYTES,
    MAX_RULES,
    MAX_TEMPLATE_BYTES,
    MAX_TERMS_PER_RULE,
)
from nfd.rules.model import FeatureTerm, Rule, kind_of, scalar

RULE_KEYS = {
    "name",
    "labels",
    "labelsTemplate",
    "annotations",
    "vars",
    "varsTemplate",
    "taints",
    "extendedResources",
    "matchFeatures",
    "matchAny",
}
# Accepted only in nfd-worker.conf and custom.d (the legacy v0.6-v0.14 format).
LEGACY_KEYS = {"name", "value", "matchOn"}
TERM_KEYS = {"feature", "matchExpressions", "matchName"}
EXPRESSION_KEYS = {"op", "value", "type"}
TAINT_KEYS = {"key", "value", "effect", "timeAdded"}
# Kept under its old name for callers; the limit itself is in nfd.rules.limits.
TEMPLATE_SIZE_LIMIT = MAX_TEMPLATE_BYTES


# -- entry point -------------------------------------------------------------


def load_rules(data: Any, origin: str, *, worker: bool = False) -> list[Rule]:
    """Parse rules from YAML/JSON text or already-parsed data.

    ``worker=True`` also accepts what upstream's worker-side parser accepts:
    the matchExpressions shorthands and the legacy ``matchOn`` format.
    """
    if isinstance(data, str | bytes):
        _check_text_size(data, origin)
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise RuleError(f"{origin}: not UTF-8 text: {err}") from None
    if isinstance(data, str):
        data = _parse_yaml(data, origin)
        if len(data) == 1:
            data = data[0]
    rules: list[Rule] = []
    seen = 0
    for where, raw_rules in _rule_lists(data, origin):
        if not isinstance(raw_rules, list):
            raise RuleError(f"{where}: expected a list of rules, got {kind_of(raw_rules)}")
        seen += len(raw_rules)
        if seen > MAX_RULES:
            raise RuleError(f"{where}: more than {MAX_RULES} rules (the limit, MAX_RULES)")
        for index, raw in enumerate(raw_rules):
            rules.extend(parse_rule(raw, f"{where}[{index}]", origin, worker=worker))
    return rules


def _check_text_size(data: str | bytes, origin: str) -> None:
    # Before parsing: PyYAML needs about a minute and gigabytes for 50 MB.
    size = len(data)
    if isinstance(data, str) and size <= MAX_RULE_TEXT_BYTES:
        size = len(data.encode("utf-8", "surrogatepass"))
    if size > MAX_RULE_TEXT_BYTES:
        raise RuleError(
            f"{origin}: rule text of {size} bytes is over the {MAX_RULE_TEXT_BYTES}-byte limit "
            "(MAX_RULE_TEXT_BYTES)"
        )


def _check_count(items: Any, limit: int, what: str, where: str) -> None:
    if len(items) > limit:
        raise RuleError(f"{where}: {len(items)} {what}, over the limit of {limit}")


def _parse_yaml(text: str, origin: str) -> list[Any]:
    try:
        # Kubernetes' YAML (sigs.k8s.io/yaml), as upstream reads rule files.
        docs = [d for d in kubeyaml.load_all(text) if d is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{origin}:{mark.line + 1}" if mark is not None else origin
        problem = getattr(err, "problem", None) or str(err)
        raise RuleError(f"{where}: invalid YAML: {problem}") from None
    except (ValueError, TypeError, RecursionError) as err:
        raise RuleError(f"{origin}: invalid YAML: {err}") from None
    return docs


def _is_object(doc: Any) -> bool:
    return isinstance(doc, Mapping) and ("spec" in doc or "kind" in doc)


def _rule_lists(data: Any, origin: str) -> list[tuple[str, Any]]:
    """Find the rule lists in ``data``, objects sorted by name as the master does."""
    if data is None:
        return []
    if isinstance(data, Mapping) and isinstance(data.get("items"), list):
        data = data["items"]
    if isinstance(data, Mapping):
        if _is_object(data):
            return [_object_rules(data, origin)]
        if "rules" in data:
            return [(f"{origin}: rules", data["rules"] or [])]
        if "name" in data:
            return [(origin, [data])]
        raise RuleError(f"{origin}: expected a NodeFeatureRule, a spec with 'rules' or a rule")
    if isinstance(data, list):
        _check_count(data, MAX_RULES, "entries (MAX_RULES)", origin)
        if data and all(_is_object(d) for d in data):
            objects = sorted(data, key=_object_name)
            return [_object_rules(d, origin) for d in objects]
        if any(_is_object(d) for d in data):
            raise RuleError(f"{origin}: a list must hold only NodeFeatureRule objects or rules")
        return [(origin, data)]
    raise RuleError(f"{origin}: expected a NodeFeatureRule or a list of rules, got {kind_of(data)}")


def _object_name(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    return str(metadata.get("name", "")) if isinstance(metadata, Mapping) else ""


def _object_rules(obj: Mapping[str, Any], origin: str) -> tuple[str, Any]:
    kind = obj.get("kind")
    metadata = obj.get("metadata") or {}
    name = metadata.get("name", "") if isinstance(metadata, Mapping) else ""
    where = f"{origin}: NodeFeatureRule {name!r}" if name else f"{origin}: NodeFeatureRule"
    if kind is not None and kind != "NodeFeatureRule":
        raise RuleError(f"{where}: kind {kind!r} is not NodeFeatureRule")
    spec = obj.get("spec")
    if spec is None:
        return (f"{where}: spec.rules", [])
    if not isinstance(spec, Mapping):
        raise RuleError(f"{where}: spec: expected a mapping, got {kind_of(spec)}")
    return (f"{where}: spec.rules", spec.get("rules") or [])


# -- one rule ----------------------------------------------------------------


def parse_rule(raw: Any, where: str, origin: str = "", *, worker: bool = False) -> list[Rule]:
    """One rule; a list because a legacy rule that can never match yields none."""
    if not isinstance(raw, Mapping):
        raise RuleError(f"{where}: expected a rule mapping, got {kind_of(raw)}")
    name = raw.get("name")
    label = f"{where} (rule {name!r})" if isinstance(name, str) and name else where
    if worker and "matchOn" in raw:
        return convert_legacy_rule(raw, label, origin)
    unknown = sorted(str(k) for k in raw if k not in RULE_KEYS)
    if unknown:
        hint = (
            " (the legacy 'matchOn' format is read only from the worker config)"
            if ("matchOn" in unknown)
            else ""
        )
        raise RuleError(f"{label}: unknown field(s) {', '.join(unknown)}{hint}")
    if not isinstance(name, str) or not name:
        raise RuleError(f"{label}: name: required, a non-empty string")
    _check_name(name, f"{where}: name")
    rule = Rule(name=name, origin=origin)
    rule.labels = _string_map(raw.get("labels"), f"{label}: labels")
    rule.annotations = _string_map(raw.get("annotations"), f"{label}: annotations")
    rule.vars = _string_map(raw.get("vars"), f"{label}: vars")
    rule.extended_resources = _string_map(
        raw.get("extendedResources"), f"{label}: extendedResources"
    )
    rule.labels_template = _template(raw.get("labelsTemplate"), f"{label}: labelsTemplate")
    rule.vars_template = _template(raw.get("varsTemplate"), f"{label}: varsTemplate")
    rule.taints = _taints(raw.get("taints"), f"{label}: taints")
    match_any = raw.get("matchAny")
    if match_any is not None:
        if not isinstance(match_any, list):
            raise RuleError(f"{label}: matchAny: expected a list, got {kind_of(match_any)}")
        _check_count(match_any, MAX_MATCH_ANY, "elements (MAX_MATCH_ANY)", f"{label}: matchAny")
    _check_expression_total(raw.get("matchFeatures"), match_any, label)
    rule.match_features = parse_terms(
        raw.get("matchFeatures"), f"{label}: matchFeatures", worker=worker
    )
    terms_left = MAX_TERMS_PER_RULE - len(rule.match_features)
    if match_any is not None:
        for i, elem in enumerate(match_any):
            elem_where = f"{label}: matchAny[{i}]"
            if not isinstance(elem, Mapping):
                raise RuleError(f"{elem_where}: expected a mapping with matchFeatures")
            extra = sorted(str(k) for k in elem if k != "matchFeatures")
            if extra:
                raise RuleError(f"{elem_where}: unknown field(s) {', '.join(extra)}")
            terms = parse_terms(
                elem.get("matchFeatures"),
                f"{elem_where}.matchFeatures",
                worker=worker,
                limit=terms_left,
            )
            terms_left -= len(terms)
            rule.match_any.append(terms)
    return [rule]


def _check_expression_total(match_features: Any, match_any: list[Any] | None, label: str) -> None:
    # Counted on the raw document, before any expression is built.
    term_lists = [match_features] + [
        elem.get("matchFeatures") for elem in match_any or () if isinstance(elem, Mapping)
    ]
    total = 0
    for terms in term_lists:
        if not isinstance(terms, list):
            continue
        for term in terms[: MAX_TERMS_PER_RULE + 1]:
            exprs = term.get("matchExpressions") if isinstance(term, Mapping) else None
            if isinstance(exprs, list | Mapping):
                total += len(exprs)
    if total > MAX_EXPRESSIONS_PER_RULE:
        raise RuleError(
            f"{label}: {total} matchExpressions, over the limit of {MAX_EXPRESSIONS_PER_RULE} "
            "per rule (MAX_EXPRESSIONS_PER_RULE)"
        )


def parse_terms(
    raw: Any, where: str, *, worker: bool = False, limit: int = MAX_TERMS_PER_RULE
) -> list[FeatureTerm]:
    """Feature terms; ``limit`` is what is left of the rule's MAX_TERMS_PER_RULE."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise RuleError(f"{where}: expected a list of feature terms, got {kind_of(raw)}")
    if len(raw) > limit:
        raise RuleError(
            f"{where}: more than {MAX_TERMS_PER_RULE} feature terms in the rule "
            "(the limit, MAX_TERMS_PER_RULE)"
        )
    return [_term(t, f"{where}[{i}]", worker) for i, t in enumerate(raw)]


def _term(raw: Any, where: str, worker: bool) -> FeatureTerm:
    if not isinstance(raw, Mapping):
        raise RuleError(f"{where}: expected a mapping with 'feature', got {kind_of(raw)}")
    unknown = sorted(str(k) for k in raw if k not in TERM_KEYS)
    if unknown:
        raise RuleError(f"{where}: unknown field(s) {', '.join(unknown)}")
    feature = raw.get("feature")
    if not isinstance(feature, str) or not feature:
        raise RuleError(f"{where}: feature: required, a string like 'cpu.cpuid'")
    _check_name(feature, f"{where}: feature")
    where = f"{where} (feature {feature!r})"
    exprs = raw.get("matchExpressions")
    parsed: dict[str, MatchExpression] | None = None
    if exprs is not None:
        parsed = _expression_set(exprs, f"{where}: matchExpressions", worker)
    match_name = raw.get("matchName")
    name_expr = None
    if match_name is not None:
        name_expr = parse_expression(match_name, f"{where}: matchName", worker=False)
    return FeatureTerm(feature, parsed, name_expr)


def _check_name(name: str, where: str) -> None:
    if len(name) > MAX_NAME_LENGTH:
        raise RuleError(
            f"{where}: {len(name)} characters, over the limit of {MAX_NAME_LENGTH} "
            "(MAX_NAME_LENGTH)"
        )


def _expression_set(raw: Any, where: str, worker: bool) -> dict[str, MatchExpression]:
    if isinstance(raw, list | Mapping):
        _check_count(raw, MAX_EXPRESSIONS_PER_TERM, "expressions (MAX_EXPRESSIONS_PER_TERM)", where)
    if worker and isinstance(raw, list):
        # Worker shorthand: ["A", "B=c"] means A Exists, B In [c].
        out: dict[str, MatchExpression] = {}
        for item in raw:
            if not isinstance(item, str):
                raise RuleError(
                    f"{where}: list entries must be strings like 'NAME' or 'NAME=value'"
                )
            key, sep, value = item.partition("=")
            _check_name(key, f"{where}: {key[:40]}...")
            out[key] = MatchExpression("In", (value,)) if sep else MatchExpression("Exists")
        return out
    if not isinstance(raw, Mapping):
        raise RuleError(f"{where}: expected a mapping of name to expression, got {kind_of(raw)}")
    for key in raw:
        _check_name(str(key), f"{where}: {str(key)[:40]}...")
    return {
        str(key): parse_expression(expr, f"{where}.{key}", worker=worker)
        for key, expr in raw.items()
    }


def parse_expression(raw: Any, where: str, *, worker: bool = False) -> MatchExpression:
    if worker and not isinstance(raw, Mapping):
        # Worker shorthands: null -> Exists, scalar -> In [x], list -> In list.
        if raw is None:
            return MatchExpression("Exists")
        if isinstance(raw, list):
            _check_count(raw, MAX_EXPRESSION_VALUES, "values (MAX_EXPRESSION_VALUES)", where)
            return MatchExpression("In", tuple(scalar(v, where) for v in raw))
        return MatchExpression("In", (scalar(raw, where),))
    if not isinstance(raw, Mapping):
        raise RuleError(
            f"{where}: expected a mapping like {{op: In, value: [...]}}, got {kind_of(raw)}"
        )
    unknown = sorted(str(k) for k in raw if k not in EXPRESSION_KEYS)
    if unknown:
        raise RuleError(f"{where}: unknown field(s) {', '.join(unknown)}")
    op = raw.get("op")
    if op is None:
        raise RuleError(f"{where}: op: required")
    if not isinstance(op, str):
        raise RuleError(f"{where}: op: expected a string, got {kind_of(op)}")
    # "" is upstream's MatchAny (always true, no values): valid in files and API types,
    # though the CRD's enum leaves it out.
    if op not in OPS and op != MATCH_ANY:
        raise RuleError(
            f"{where}: op: unknown operator {op!r} (expected one of {', '.join(OPS)}, "
            'or "" for MatchAny)'
        )
    value = raw.get("value")
    values: tuple[str, ...]
    if value is None:
        values = ()
    elif isinstance(value, list):
        _check_count(
            value, MAX_EXPRESSION_VALUES, "values (MAX_EXPRESSION_VALUES)", f"{where}: value"
        )
        values = tuple(scalar(v, f"{where}: value") for v in value)
    elif worker:
        values = (scalar(value, f"{where}: value"),)
    else:
        raise RuleError(f"{where}: value: expected a list of strings, got {kind_of(value)}")
    vtype = raw.get("type") or ""
    if not isinstance(vtype, str) or vtype not in ("", "version"):
        raise RuleError(f"{where}: type: unknown value type {vtype!r} (only 'version')")
    return MatchExpression(op, values, vtype)


# -- field helpers -------------------------------------------------------------


def _string_map(raw: Any, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise RuleError(f"{where}: expected a mapping of strings, got {kind_of(raw)}")
    out = {}
    for key, value in raw.items():
        if value is None:
            value = ""
        out[scalar(key, where)] = scalar(value, f"{where}.{key}")
    return out


def _template(raw: Any, where: str) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise RuleError(f"{where}: expected a string, got {kind_of(raw)}")
    if len(raw.encode("utf-8", "surrogatepass")) > TEMPLATE_SIZE_LIMIT:
        raise RuleError(f"{where}: template larger than {TEMPLATE_SIZE_LIMIT} bytes")
    return raw


def _taints(raw: Any, where: str) -> list[dict[str, str]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise RuleError(f"{where}: expected a list of taints, got {kind_of(raw)}")
    taints = []
    for i, taint in enumerate(raw):
        here = f"{where}[{i}]"
        if not isinstance(taint, Mapping):
            raise RuleError(f"{here}: expected a mapping with key and effect")
        unknown = sorted(str(k) for k in taint if k not in TAINT_KEYS)
        if unknown:
            raise RuleError(f"{here}: unknown field(s) {', '.join(unknown)}")
        key = taint.get("key")
        if not isinstance(key, str) or not key:
            raise RuleError(f"{here}: key: required, a non-empty string")
        value = taint.get("value")
        effect = taint.get("effect")
        taints.append(
            {
                "key": key,
                "value": "" if value is None else scalar(value, f"{here}.value"),
                "effect": "" if effect is None else scalar(effect, f"{here}.effect"),
            }
        )
    return taints
