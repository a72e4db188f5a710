"""Fuzz the rule engine's inputs: rule YAML text, parsed rule documents (NodeFeatureRule
objects, specs, bare lists, legacy matchOn), Go templates, and random features fed to
valid rules. Only RuleError (loading) or a recorded per-rule error (execution) may come
out."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nfd.features import Features
from nfd.rules import RuleError, execute_rules, load_rules, validate_rules
from nfd.rules.errors import TemplateError
from nfd.rules.expression import OPS
from nfd.rules.template import Template
from tests.fuzz.common import FUZZ, any_text, count
from tests.reliability.recording import Record

KEYS = [
    "name",
    "labels",
    "labelsTemplate",
    "vars",
    "varsTemplate",
    "annotations",
    "taints",
    "extendedResources",
    "matchFeatures",
    "matchAny",
    "feature",
    "matchExpressions",
    "matchName",
    "op",
    "value",
    "type",
    "key",
    "effect",
    "spec",
    "rules",
    "kind",
    "metadata",
    "apiVersion",
    "items",
    "matchOn",
    "pciId",
    "vendor",
    "class",
    "loadedKMod",
    "kConfig",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=16),
    st.sampled_from(sorted(OPS)),
)
documents = st.recursive(
    scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), kids, max_size=5),
    ),
    max_leaves=40,
)


def _features() -> st.SearchStrategy[Features]:
    names = st.sampled_from(["cpu.cpuid", "kernel.config", "pci.device", "local.label", "x"])
    small = st.text(max_size=10)

    def build(flags: dict, attrs: dict, insts: dict) -> Features:  # type: ignore[type-arg]
        f = Features()
        for k, v in flags.items():
            f.add_flags(k, v)
        for k, v in attrs.items():
            f.add_attributes(k, v)
        for k, v in insts.items():
            f.add_instances(k, v)
        return f

    return st.builds(
        build,
        st.dictionaries(names, st.lists(small, max_size=4), max_size=3),
        st.dictionaries(names, st.dictionaries(small, small, max_size=4), max_size=3),
        st.dictionaries(
            names, st.lists(st.dictionaries(small, small, max_size=3), max_size=3), max_size=2
        ),
    )


@FUZZ
@given(documents, st.booleans())
def test_rule_documents(record: Record, doc: object, worker: bool) -> None:
    count(record, "Rule documents (nfd.rules.load_rules on parsed data; worker and master)")
    try:
        rules = load_rules(doc, "fuzz", worker=worker)
    except RuleError as err:
        assert str(err).startswith("fuzz")
        return
    validate_rules(rules, "fuzz")
    execute_rules(rules, Features())


@FUZZ
@given(any_text)
def test_rule_yaml_text(record: Record, text: str) -> None:
    count(record, "Rule YAML text (nfd.rules.load_rules on text, any characters)")
    try:
        load_rules(text, "fuzz.yaml", worker=True)
    except RuleError as err:
        assert "fuzz.yaml" in str(err)


@FUZZ
@given(st.binary(max_size=300))
def test_rule_bytes(record: Record, data: bytes) -> None:
    count(record, "Rule files as raw bytes (not UTF-8, NULs, BOMs)")
    try:
        load_rules(data, "fuzz.bin")
    except RuleError:
        pass


template_pieces = st.sampled_from(
    [
        "{{",
        "}}",
        "{{-",
        "-}}",
        " ",
        "if",
        "else",
        "end",
        "range",
        "with",
        "define",
        "template",
        "block",
        ".",
        "$",
        "$x",
        ":=",
        "=",
        "|",
        "(",
        ")",
        '"',
        "`",
        "'",
        "printf",
        "len",
        "index",
        "eq",
        "and",
        "or",
        "not",
        "1",
        "-1",
        "1.5",
        "nil",
        "true",
        ".Name",
        ".Value",
        "x=1",
        "\n",
        "/*",
        "*/",
        "break",
        "continue",
        "toJson",
        "regexMatch",
        "until",
        "default",
    ]
)
templates = st.one_of(st.lists(template_pieces, max_size=30).map("".join), st.text(max_size=80))


@FUZZ
@given(templates)
def test_templates(record: Record, source: str) -> None:
    count(record, "Go templates (parse and execute; nfd.rules.template)")
    try:
        tmpl = Template(source)
    except TemplateError:
        return
    data = {"local": {"label": [{"Name": "a", "Value": "1"}]}, "x": [1, 2]}
    try:
        out = tmpl.execute(data)
    except TemplateError:
        return
    assert isinstance(out, str)


def _valid_rules() -> list[object]:
    rules = []
    for op in sorted(OPS):
        expr: dict[str, object] = {"op": op}
        if op in ("In", "NotIn", "InRegexp"):
            expr["value"] = ["1", "a.*"]
        elif op in ("Gt", "Lt", "Ge", "Le"):
            expr["value"] = ["1"]
        elif op in ("GtLt", "GeLe"):
            expr["value"] = ["1", "9"]
        rules.append(
            {
                "name": f"op-{op}",
                "labels": {f"op-{op}": "true"},
                "matchFeatures": [
                    {"feature": "local.label", "matchExpressions": {"a": expr}},
                    {"feature": "pci.device", "matchExpressions": {"vendor": expr}},
                ],
            }
        )
    rules.append(
        {
            "name": "template",
            "labelsTemplate": "{{ range .local.label }}t-{{ .Name }}={{ .Value }}\n{{ end }}",
            "matchFeatures": [
                {"feature": "local.label", "matchName": {"op": "InRegexp", "value": ["."]}}
            ],
        }
    )
    rules.append({"name": "dynamic", "labels": {"dyn": "@local.label.a"}})
    return load_rules({"rules": rules}, "valid")


RULES = _valid_rules()


@FUZZ
@given(_features())
def test_valid_rules_on_random_features(record: Record, features: Features) -> None:
    count(record, "Every operator and a template on random features (execute_rules)")
    out = execute_rules(RULES, features)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in out.labels.items())
    assert all(isinstance(e, str) for e in out.errors)
