"""The Go text/template subset: syntax, semantics, functions and clear errors."""

from __future__ import annotations

import pytest

from nfd.rules.errors import TemplateError
from nfd.rules.template import Template, expand_map

DATA = {
    "fake": {
        "instance": [{"name": "i1", "n": "3"}, {"name": "i2", "n": "10"}],
        "attribute": [{"Name": "a", "Value": "x"}, {"Name": "b", "Value": "y"}],
    },
    "cpu": {"cpuid": [{"Name": "AVX"}, {"Name": "AVX2"}]},
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("plain", "plain"),
        ("{{ range .fake.instance }}{{ .name }};{{ end }}", "i1;i2;"),
        ("{{ range $i, $e := .fake.attribute }}{{ $i }}{{ $e.Name }}{{ end }}", "0a1b"),
        ("{{ range $e := .cpu.cpuid }}{{ $e.Name }} {{ end }}", "AVX AVX2 "),
        ("{{ range list }}x{{ else }}empty{{ end }}", "empty"),
        ("{{ range 3 }}{{ . }}{{ end }}", "012"),
        (
            '{{ range .fake.instance }}{{ if eq .name "i2" }}{{ break }}{{ end }}'
            "{{ .name }}{{ end }}",
            "i1",
        ),
        (
            '{{ range .fake.instance }}{{ if eq .name "i1" }}{{ continue }}{{ end }}{{ .name }}'
            "{{ end }}",
            "i2",
        ),
        ("{{ if .fake.instance }}yes{{ else }}no{{ end }}", "yes"),
        ('{{ if false }}a{{ else if 0 }}b{{ else if "s" }}c{{ else }}d{{ end }}', "c"),
        ("{{ with .fake.attribute }}{{ len . }}{{ end }}", "2"),
        ('{{ with "" }}a{{ else with "w" }}{{ . }}{{ end }}', "w"),
        ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", "2"),
        ("{{ $.fake.attribute | len }}", "2"),
        ("a {{- /* comment */ -}} b", "ab"),
        ('a\n  {{- "x" -}}  \nb', "axb"),
        (
            '{{ define "row" }}[{{ .Name }}]{{ end }}{{ range .cpu.cpuid }}{{ template "row" . }}'
            "{{ end }}",
            "[AVX][AVX2]",
        ),
        ('{{ block "b" . }}B{{ end }}', "B"),
        ("{{ (index .fake.instance 1).name }}", "i2"),
        ('{{ and 1 0 }} {{ or 0 "" "z" }} {{ not true }}', "0 z false"),
        (
            '{{ printf "%s-%d-%05.1f-%q-%v-%x" "a" 7 3.14159 "q" true 255 }}',
            'a-7-003.1-"q"-true-ff',
        ),
        ('{{ print 1 2 "a" "b" 3 }}', "1 2ab3"),
        (
            "{{ 1.5 }} {{ 1e6 }} {{ 100000.0 }} {{ 0x10 }} {{ 'a' }} {{ print nil }}",
            "1.5 1e+06 100000 16 97 <nil>",
        ),
        ('{{ lt 1 2 }} {{ ge "b" "a" }} {{ ne 1 2 }} {{ eq 1 3 2 1 }}', "true true true true"),
        ('{{ len "héllo" }}', "6"),
        ('{{ "a\\tb\\u00e9" }}', "a\tbé"),
        ("{{ `raw\\n` }}", "raw\\n"),
        # Sprig
        (
            '{{ "Hello" | upper }} {{ lower "X" }} {{ title "ab cd" }} {{ trim "  t " }}',
            "HELLO x Ab Cd t",
        ),
        (
            '{{ replace "a" "b" "aXa" }} {{ trimPrefix "v" "v1.2" }} {{ trimSuffix "-x" "a-x" }}',
            "bXb 1.2 a",
        ),
        (
            '{{ contains "b" "abc" }} {{ hasPrefix "a" "abc" }} {{ hasSuffix "c" "abc" }}',
            "true true true",
        ),
        ('{{ splitList "," "a,b" | join "+" }} {{ (split "." "6.8.0")._1 }}', "a+b 8"),
        (
            '{{ default "d" "" }} {{ default "d" "v" }} {{ empty list }} {{ coalesce "" "c" }}',
            "d v true c",
        ),
        (
            '{{ add 1 "2" 3 }} {{ sub 5 7 }} {{ mul 2 3 }} {{ div -7 2 }} {{ mod -7 2 }}'
            " {{ max 1 9 4 }}",
            "6 -2 6 -3 -1 9",
        ),
        ('{{ atoi "42" }} {{ atoi "x" }} {{ int "7" }} {{ toString 5 }}', "42 0 7 5"),
        (
            '{{ regexMatch "^AVX[0-9]*$" "AVX2" }} {{ regexFind "[0-9]+" "abc123" }}'
            ' {{ regexReplaceAll "a(x*)b" "-ab-axxb-" "${1}W" }}',
            "true 123 -W-xxW-",
        ),
        (
            "{{ list 3 1 2 | sortAlpha }} {{ list 1 2 3 | first }} {{ list 1 2 3 | last }}"
            " {{ list 1 1 2 | uniq }} {{ has 2 (list 1 2) }}",
            "[1 2 3] 1 3 [1 2] true",
        ),
        (
            '{{ $d := dict "k" "v" "a" 1 }}{{ keys $d }} {{ get $d "k" }} {{ hasKey $d "a" }}',
            "[a k] v true",
        ),
        (
            '{{ quote "a" }} {{ squote "b" }} {{ b64enc "hi" }} {{ "hi" | sha256sum | trunc 8 }}',
            "\"a\" 'b' aGk= 8f434346",
        ),
        (
            '{{ ternary "y" "n" true }} {{ until 3 }} {{ seq 3 }} {{ toJson (dict "a" 1) }}',
            'y [0 1 2] 1 2 3 {"a":1}',
        ),
    ],
)
def test_render(source: str, expected: str) -> None:
    assert Template(source).execute(DATA) == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ .fake.missing }}", 'map has no entry for key "missing"'),  # missingkey=error
        ("{{ range .fake.instance }}{{ .nokey }}{{ end }}", "no entry"),
        ('{{ env "HOME" }}', "not defined"),
        ('{{ expandenv "$HOME" }}', "not defined"),
        ('{{ getHostByName "x" }}', "not defined"),
        ('{{ bcrypt "x" }}', "not supported"),
        ("{{ nosuchfunc }}", "not defined"),
        ("{{ if true }}", "missing {{end}}"),
        ("{{ end }}", "unexpected"),
        ("{{ $undefined }}", "undefined variable"),
        ("{{ .fake.instance 1 }}", "can't give argument to non-function"),
        ("{{ nil | print }}", "nil is not a command"),
        ('{{ "unterminated }}', "unterminated"),
        ('{{ range "str" }}{{ end }}', "can't iterate"),
        ("{{ break }}", "outside"),
        ('{{ template "nope" }}', "no such template"),
        ('{{ eq 1 "1" }}', "incompatible types"),
        ('{{ fail "boom" }}', "boom"),
        ('{{ regexMatch "(" "x" }}', "invalid regular expression"),
        ("{{ div 1 0 }}", "divide by zero"),
        ('{{ define "r" }}{{ template "r" }}{{ end }}{{ template "r" }}', "depth"),
    ],
)
def test_errors_are_clear(source: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("(", r"\(").replace("{", r"\{")):
        Template(source).execute(DATA)


def test_size_limit() -> None:
    with pytest.raises(TemplateError, match="larger than"):
        Template("x" * (64 * 1024 + 1))


def test_expand_map() -> None:
    assert expand_map("  a=1 \n\n b=x=y\nc=\n") == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(TemplateError, match="format must be"):
        expand_map("a=1\nnoequals")


def test_deep_nesting_is_a_clear_error() -> None:
    for source in [
        "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",
        "{{ if 1 }}" * 3000 + "{{ end }}" * 3000,
    ]:
        with pytest.raises(TemplateError, match="too deep"):
            Template(source).execute({})
