"""Property tests: no input to the loaders raises anything but our own errors."""

from __future__ import annotations

from datetime import UTC, datetime

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nfd.features import Features
from nfd.rules import RuleError, execute_rules, load_rules, validate_rules
from nfd.rules.errors import TemplateError
from nfd.rules.template import Template
from nfd.sources.local import parse_feature_text

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
keys = st.sampled_from(
    [
        "name",
        "labels",
        "matchFeatures",
        "matchAny",
        "feature",
        "matchExpressions",
        "matchName",
        "op",
        "value",
        "type",
        "taints",
        "key",
        "effect",
        "labelsTemplate",
        "vars",
        "extendedResources",
        "spec",
        "rules",
        "kind",
        "metadata",
        "In",
        "Gt",
        "matchOn",
        "pciId",
        "items",
    ]
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(keys, st.text(max_size=8)), children, max_size=5),
    ),
    max_leaves=30,
)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(documents, st.booleans())
def test_rule_loader_raises_only_rule_error(doc: object, worker: bool) -> None:
    try:
        rules = load_rules(doc, "prop", worker=worker)
    except RuleError:
        return
    validate_rules(rules, "prop")
    execute_rules(rules, Features())


@SETTINGS
@given(st.text(max_size=300))
def test_rule_loader_on_text(text: str) -> None:
    try:
        load_rules(text, "prop")
    except RuleError:
        pass


@SETTINGS
@given(documents)
def test_rule_loader_on_dumped_yaml(doc: object) -> None:
    try:
        text = yaml.safe_dump(doc)
    except yaml.YAMLError:
        return
    try:
        load_rules(text, "prop", worker=True)
    except RuleError:
        pass


@SETTINGS
@given(st.text(max_size=200))
def test_template_parser_raises_only_template_error(source: str) -> None:
    try:
        Template(source).execute({"a": {"b": [{"Name": "x", "Value": "1"}]}})
    except TemplateError:
        pass


lines = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "# +no-label",
            "# +no-feature",
            "# +expiry-time=2080-01-01T00:00:00Z",
            "# +expiry-time=garbage",
            "# +bogus",
            "#",
            "=",
            "a=b=c",
            "key",
        ]
    ),
)


@SETTINGS
@given(st.lists(lines, max_size=20))
def test_feature_file_parser_never_raises(file_lines: list[str]) -> None:
    parsed = parse_feature_text("\n".join(file_lines), "prop", datetime(2026, 1, 1, tzinfo=UTC))
    assert all(k for k in parsed.features) and all(k for k in parsed.labels)
