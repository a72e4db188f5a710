"""Sprig functions beyond the core table: semver, Go paths and URLs, merges, durations,
dates, random values; the crypto ones still fail with a clear message."""

from __future__ import annotations

import base64
import re
import string

import pytest

from nfd.rules.errors import TemplateError
from nfd.rules.template import FUNCS, UNSUPPORTED_SPRIG, Template
from nfd.rules.template.funcs.dates import format_go_duration, parse_go_duration


def render(source: str, data: object = None) -> str:
    return Template(source).execute(data if data is not None else {})


# Constraint/version pairs from Masterminds/semver v3's documentation and constraint tests.
SEMVER_CASES = [
    ("=2.0.0", "1.2.3", False),
    ("=2.0.0", "2.0.0", True),
    ("=2.0", "1.2.3", False),
    ("=2.0", "2.0.0", True),
    ("=2.0", "2.0.1", True),
    ("4.1", "4.1.0", True),
    ("!=4.1.0", "4.1.0", False),
    ("!=4.1.0", "4.1.1", True),
    ("!=4.1", "4.1.0", False),
    ("!=4.1", "4.1.1", False),
    ("!=4.1", "5.1.0-alpha.1", False),
    ("!=4.1-alpha", "4.1.0", True),
    ("!=4.1", "5.1.0", True),
    ("<11", "0.1.0", True),
    ("<11", "11.1.0", False),
    ("<1.1", "0.1.0", True),
    ("<1.1", "1.1.0", False),
    ("<1.1", "1.1.1", False),
    ("<=11", "1.2.3", True),
    ("<=11", "12.2.3", False),
    ("<=11", "11.2.3", True),
    ("<=1.1", "1.2.3", False),
    ("<=1.1", "0.1.0", True),
    ("<=1.1", "1.1.0", True),
    ("<=1.1", "1.1.1", True),
    (">1.1", "4.1.0", True),
    (">1.1", "1.1.0", False),
    (">0", "0", False),
    (">0", "1", True),
    (">0", "0.0.1-alpha", False),
    (">0.0", "0.0.1-alpha", False),
    (">0.0.0-0", "0.0.0-alpha", True),
    (">1.2.3-alpha.1", "1.2.3-alpha.2", True),
    (">1.2.3-alpha.1", "1.3.3-alpha.2", True),
    (">11", "11.1.0", False),
    (">11.1", "11.1.0", False),
    (">11.1", "11.1.1", False),
    (">11.1", "11.2.1", True),
    (">=11", "11.1.2", True),
    (">=11.1", "11.1.2", True),
    (">=11.1", "11.0.2", False),
    (">=1.1", "4.1.0", True),
    (">=1.1", "1.1.0", True),
    (">=1.1", "0.0.9", False),
    (">=0", "0.0.1-alpha", False),
    (">=0-0", "0.0.1-alpha", True),
    (">=0.0.0-0", "1.2.3", True),
    (">=0.0.0-0", "3.4.5-beta.1", True),
    ("<0", "0.0.0-alpha", False),
    ("<0-z", "0.0.0-alpha", True),
    (">=0", "0", True),
    ("=0", "1", False),
    ("*", "1", True),
    ("*", "4.5.6", True),
    ("*", "1.2.3-alpha.1", False),
    ("*-0", "1.2.3-alpha.1", True),
    ("2.*", "1", False),
    ("2.*", "3.4.5", False),
    ("2.*", "2.1.1", True),
    ("2.1.*", "2.1.1", True),
    ("2.1.*", "2.2.1", False),
    ("2", "2.1.1", True),
    ("2.1", "2.2.1", False),
    ("~1.2.3", "1.2.4", True),
    ("~1.2.3", "1.3.4", False),
    ("~1.2", "1.2.4", True),
    ("~1.2", "1.3.4", False),
    ("~1", "1.2.4", True),
    ("~1", "2.3.4", False),
    ("~0.2.3", "0.2.5", True),
    ("~0.2.3", "0.3.5", False),
    ("~1.2.3-beta.2", "1.2.3-beta.4", True),
    ("~1.2.3-beta.2", "1.2.4-beta.2", True),
    ("~1.2.3-beta.2", "1.3.4-beta.2", False),
    ("~1.2.x", "1.2.9", True),
    ("~1.x", "1.9.0", True),
    ("~>1.2", "1.2.7", True),
    ("^1.2.3", "1.8.9", True),
    ("^1.2.3", "2.8.9", False),
    ("^1.2.3", "1.2.1", False),
    ("^1.1.0", "2.1.0", False),
    ("^1.2.0", "2.2.1", False),
    ("^1.2.0", "1.2.1-alpha.1", False),
    ("^1.2.0-alpha.0", "1.2.1-alpha.1", True),
    ("^1.2.0-alpha.0", "1.2.1-alpha.0", True),
    ("^1.2.0-alpha.2", "1.2.0-alpha.1", False),
    ("^1.2", "1.8.9", True),
    ("^1.2", "2.8.9", False),
    ("^1", "1.8.9", True),
    ("^1", "2.8.9", False),
    ("^0.2.3", "0.2.5", True),
    ("^0.2.3", "0.5.6", False),
    ("^0.2", "0.2.5", True),
    ("^0.2", "0.5.6", False),
    ("^0.0.3", "0.0.3", True),
    ("^0.0.3", "0.0.4", False),
    ("^0.0", "0.0.3", True),
    ("^0.0", "0.1.4", False),
    ("^0.0", "1.0.4", False),
    ("^0", "0.2.3", True),
    ("^0", "1.1.4", False),
    ("^0.2.3-beta.2", "0.2.3-beta.4", True),
    ("^0.2.3-beta.2", "0.2.4-beta.2", True),
    ("^0.2.3-beta.2", "0.3.4-beta.2", False),
    ("^1.2.x", "1.9.0", True),
    ("^2.x", "3.0.0", False),
    # Hyphen ranges, AND (comma or space) and OR.
    ("1.2 - 1.4.5", "1.2.0", True),
    ("1.2 - 1.4.5", "1.4.5", True),
    ("1.2 - 1.4.5", "1.4.6", False),
    ("1.2 - 1.4.5", "1.1.9", False),
    ("2.3.4 - 4.5", "4.5.7", True),
    ("2.3.4 - 4.5", "4.6.0", False),
    (">= 1.2, < 3.0.0 || >= 4.2.3", "2.9.9", True),
    (">= 1.2, < 3.0.0 || >= 4.2.3", "3.1.0", False),
    (">= 1.2, < 3.0.0 || >= 4.2.3", "4.2.3", True),
    (">=1.2 <3", "2.0.0", True),
    (">=1.2 <3", "3.0.0", False),
    ("<= 2.x", "2.9.9", True),
    ("<= 2.x", "3.0.0", False),
    (">= 1.2.x", "1.2.0", True),
    ("1.2.x", "1.3.0", False),
    # Leading v, versions missing parts, metadata ignored.
    ("v1.2.3", "1.2.3", True),
    (">=1.2.3", "v1.3", True),
    ("=1.2.3", "1.2.3+build.5", True),
    # Prerelease ordering: numeric identifiers numerically and before alphanumeric ones.
    (">1.0.0-alpha.2", "1.0.0-alpha.10", True),
    (">1.0.0-alpha.beta", "1.0.0-alpha.1", False),
    (">1.0.0-alpha", "1.0.0-alpha.1", True),
    ("<1.0.0", "1.0.0-rc.1", False),
    ("<1.0.0-0", "1.0.0-rc.1", False),
    # Every constraint of an AND must name a prerelease for a prerelease version to match.
    (">=1.0.0-0, <1.0.0", "1.0.0-rc.1", False),
    (">=1.0.0-0, <1.0.0-z", "1.0.0-rc.1", True),
]


@pytest.mark.parametrize(("constraint", "version", "expected"), SEMVER_CASES)
def test_semver_compare(constraint: str, version: str, expected: bool) -> None:
    got = render("{{ semverCompare .c .v }}", {"c": constraint, "v": version})
    assert got == ("true" if expected else "false")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('{{ semverCompare "foo" "1.0.0" }}', "improper constraint: foo"),
        ('{{ semverCompare ">1 ||| <2" "1.0.0" }}', "improper constraint"),
        ('{{ semverCompare ">1" "one" }}', "Invalid Semantic Version"),
        ('{{ semver "1.2.3.4" }}', "Invalid Semantic Version"),
        ('{{ semver "1.2.3-01" }}', "Version segment starts with 0"),
        ('{{ semver "" }}', "Invalid Semantic Version"),
        # NewConstraint validates each alternative, so an empty constraint is an error.
        ('{{ semverCompare "" "1.0.0" }}', "improper constraint: "),
        ('{{ semverCompare ">1 || " "1.0.0" }}', "improper constraint: "),
    ],
)
def test_semver_errors(source: str, message: str) -> None:
    with pytest.raises(TemplateError, match=re.escape(message)):
        render(source)


def test_semver_fields() -> None:
    src = (
        '{{ $v := semver "v1.2.3-alpha.1+123" }}'
        "{{ $v.Major }} {{ $v.Minor }} {{ $v.Patch }} {{ $v.Prerelease }} {{ $v.Metadata }} "
        "{{ $v.Original }}"
    )
    assert render(src) == "1 2 3 alpha.1 123 v1.2.3-alpha.1+123"
    assert render('{{ (semver "2").Minor }}') == "0"
    assert render("{{ if gt (semver .k).Major 5 }}new{{ end }}", {"k": "6.1.0"}) == "new"


# -- paths (Go path/filepath on Linux) -------------------------------------------------


@pytest.mark.parametrize(
    ("func", "arg", "expected"),
    [
        ("osClean", "", "."),
        ("osClean", "abc/../../..", "../.."),
        ("osClean", "/../abc", "/abc"),
        ("osClean", "a//b", "a/b"),
        ("osClean", "//a/./b/..", "/a"),
        ("osClean", "abc/./../def", "def"),
        ("osClean", "/", "/"),
        ("osBase", "", "."),
        ("osBase", "/", "/"),
        ("osBase", "////", "/"),
        ("osBase", "a/b/", "b"),
        ("osBase", "/usr/lib/libc.so.6", "libc.so.6"),
        ("osDir", "", "."),
        ("osDir", "/", "/"),
        ("osDir", ".", "."),
        ("osDir", "x/", "x"),
        ("osDir", "/a/b", "/a"),
        ("osDir", "a/b/", "a/b"),
        ("osDir", "a/../b", "."),
        ("osDir", "//a//b", "/a"),
        ("osExt", "path.go", ".go"),
        ("osExt", "a.dir/b", ""),
        ("osExt", "a.dir/b.go", ".go"),
        ("osExt", "a.dir/", ""),
        ("osExt", ".bashrc", ".bashrc"),
        ("osExt", "x.tar.gz", ".gz"),
        ("osIsAbs", "/x", "true"),
        ("osIsAbs", "x/y", "false"),
        ("osIsAbs", "", "false"),
    ],
)
def test_os_paths(func: str, arg: str, expected: str) -> None:
    assert render(f"{{{{ {func} .p }}}}", {"p": arg}) == expected


# -- URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "fields"),
    [
        (
            "https://user:pa%20ss@host.example:8443/a%20b/c?q=go+lang&x=1#frag%21",
            {
                "scheme": "https",
                "userinfo": "user:pa%20ss",
                "host": "host.example:8443",
                "hostname": "host.example",
                "path": "/a b/c",
                "query": "q=go+lang&x=1",
                "fragment": "frag!",
                "opaque": "",
            },
        ),
        ("mailto:webmaster@golang.org", {"scheme": "mailto", "opaque": "webmaster@golang.org"}),
        ("file:///etc/hosts", {"scheme": "file", "host": "", "path": "/etc/hosts"}),
        (
            "http://[fe80::1%25en0]:8080/",
            {"host": "[fe80::1%en0]:8080", "hostname": "fe80::1%en0", "path": "/"},
        ),
        ("HTTP://Example.COM", {"scheme": "http", "host": "Example.COM", "path": ""}),
        ("/relative/path?x", {"scheme": "", "path": "/relative/path", "query": "x"}),
        ("//host/p", {"host": "host", "path": "/p"}),
        ("*", {"path": "*"}),
    ],
)
def test_url_parse(url: str, fields: dict[str, str]) -> None:
    got = FUNCS["urlParse"](url)
    assert set(got) == {
        "scheme",
        "host",
        "hostname",
        "path",
        "query",
        "opaque",
        "fragment",
        "userinfo",
    }
    for key, value in fields.items():
        assert got[key] == value, key
    # Through a template too, as rules use it.
    assert render("{{ (urlParse .u).path }}", {"u": url}) == fields.get("path", got["path"])


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://host:port/", 'invalid port ":port" after host'),
        ("a:b/c", ""),  # a valid opaque URL with scheme "a"
        ("1a:b", "first path segment in URL cannot contain colon"),
        (":x", "missing protocol scheme"),
        ("http://h/%zz", "invalid URL escape"),
        ("http://h/\x7f", "invalid control character"),
    ],
)
def test_url_parse_errors(url: str, message: str) -> None:
    if not message:
        assert FUNCS["urlParse"](url)["opaque"] == "b/c"
        return
    with pytest.raises(TemplateError, match=re.escape(message)):
        render("{{ urlParse .u }}", {"u": url})


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pass@host.example:8443/a%20b/c?q=go+lang#frag",
        "mailto:webmaster@golang.org",
        "file:///etc/hosts",
        "http://example.com",
        "/just/a/path?x=1",
    ],
)
def test_url_join_round_trip(url: str) -> None:
    assert render("{{ urlParse .u | urlJoin }}", {"u": url}) == url


def test_url_join_from_dict() -> None:
    src = (
        '{{ urlJoin (dict "scheme" "https" "host" "h:80" "path" "a b" "query" "x=1" '
        '"fragment" "f g" "userinfo" "me:p@ss") }}'
    )
    assert render(src) == "https://me:p%40ss@h:80/a%20b?x=1#f%20g"
    assert render('{{ urlJoin (dict "path" "a:b") }}') == "./a:b"
    with pytest.raises(TemplateError, match="expected map"):
        render('{{ urlJoin "http://x" }}')


# -- dicts -----------------------------------------------------------------------------


def test_merge_keeps_destination_values() -> None:
    # Sprig's documented example, plus nested maps merged in place.
    src = (
        '{{ $dst := dict "default" "default" "overwrite" "me" "key" true "n" (dict "a" 1) }}'
        '{{ $src := dict "overwrite" "overwritten" "key" false "n" (dict "a" 9 "b" 2) "e" "" }}'
        "{{ $out := merge $dst $src }}{{ $out }} {{ $dst }}"
    )
    merged = "map[default:default e: key:true n:map[a:1 b:2] overwrite:me]"
    assert render(src) == f"{merged} {merged}"


def test_merge_fills_empty_values_and_several_sources() -> None:
    src = '{{ merge (dict "a" "" "b" 0) (dict "a" "x") (dict "b" 2 "c" 3) }}'
    assert render(src) == "map[a:x b:2 c:3]"


def test_merge_overwrite() -> None:
    src = (
        '{{ mergeOverwrite (dict "default" "default" "overwrite" "me" "key" true) '
        '(dict "overwrite" "overwritten" "key" false) }}'
    )
    assert render(src) == "map[default:default key:false overwrite:overwritten]"
    assert render('{{ mustMergeOverwrite (dict "n" (dict "a" 1)) (dict "n" (dict "a" 2)) }}') == (
        "map[n:map[a:2]]"
    )


def test_merge_rejects_non_maps() -> None:
    with pytest.raises(TemplateError, match="expected map"):
        render('{{ merge (dict) "x" }}')


def test_deep_copy_is_independent() -> None:
    src = (
        '{{ $a := dict "n" (dict "x" 1) }}{{ $b := deepCopy $a }}'
        '{{ $_ := set $b.n "x" 2 }}{{ $a.n.x }} {{ $b.n.x }} {{ mustDeepCopy (list 1 2) }}'
    )
    assert render(src) == "1 2 [1 2]"


def test_type_is_like_dig_chunk() -> None:
    assert render('{{ typeIsLike "string" "x" }} {{ typeIsLike "int" "x" }}') == "true false"
    data = {"a": {"b": {"c": "deep"}}}
    assert render('{{ dig "a" "b" "c" "none" . }}', data) == "deep"
    assert render('{{ dig "a" "x" "c" "none" . }}', data) == "none"
    assert render("{{ chunk 2 (list 1 2 3 4 5) }}") == "[[1 2] [3 4] [5]]"
    assert render("{{ mustChunk 3 (list) }}") == "[]"


# -- durations -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1100, "1.1µs"),
        (2_200_000, "2.2ms"),
        (3_300_000_000, "3.3s"),
        (4 * 60 * 10**9 + 5 * 10**9, "4m5s"),
        (4 * 60 * 10**9 + 5_001_000_000, "4m5.001s"),
        (5 * 3600 * 10**9 + 6 * 60 * 10**9 + 7_001_000_000, "5h6m7.001s"),
        (8 * 60 * 10**9 + 1, "8m0.000000001s"),
        (-1_500_000_000, "-1.5s"),
        (2**63 - 1, "2562047h47m16.854775807s"),
    ],
)
def test_go_duration_string(ns: int, text: str) -> None:
    assert format_go_duration(ns) == text


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("5s", 5 * 10**9),
        ("1.5h", 5400 * 10**9),
        ("-1h15m30.5s", -(4530 * 10**9 + 500_000_000)),
        ("1h15m30.918273645s", 4530 * 10**9 + 918_273_645),
        ("100µs", 100_000),
        ("3us", 3000),
        (".5m", 30 * 10**9),
    ],
)
def test_go_parse_duration(text: str, ns: int) -> None:
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize("text", ["", "5", "1d", "h", "-", ".s", "1.2.3s"])
def test_go_parse_duration_errors(text: str) -> None:
    with pytest.raises(ValueError, match="time: "):
        parse_go_duration(text)


def test_duration_functions() -> None:
    assert render('{{ duration 95 }} {{ duration "3600" }} {{ duration 0 }}') == "1m35s 1h0m0s 0s"
    src = (
        '{{ durationRound "2h10m" }} {{ durationRound "25h" }} {{ durationRound "800h" }} '
        '{{ durationRound "9000h" }} {{ durationRound "400ms" }} {{ durationRound "bogus" }} '
        '{{ durationRound "-90s" }}'
    )
    assert render(src) == "2h 1d 1mo 1y 0s 0s 1m"


# -- dates -----------------------------------------------------------------------------

T = 1700000000  # 2023-11-14 22:13:20 UTC


@pytest.mark.parametrize(
    ("layout", "zone", "expected"),
    [
        ("2006-01-02 15:04:05", "UTC", "2023-11-14 22:13:20"),
        ("Mon Jan _2 15:04:05 MST 2006", "UTC", "Tue Nov 14 22:13:20 UTC 2023"),
        ("2006-01-02T15:04:05Z07:00", "UTC", "2023-11-14T22:13:20Z"),
        ("2006-01-02T15:04:05Z07:00", "Europe/Paris", "2023-11-14T23:13:20+01:00"),
        ("02 Jan 06 15:04 -0700", "America/New_York", "14 Nov 23 17:13 -0500"),
        ("Monday, January 2, 2006 3:04:05 PM", "UTC", "Tuesday, November 14, 2023 10:13:20 PM"),
        ("3:04pm", "Asia/Kolkata", "3:43am"),
        ("15:04:05.000 002", "UTC", "22:13:20.000 318"),
        ("06/1/2 -07:00:00", "UTC", "23/11/14 +00:00:00"),
        ("2006-01-02", "No/Such_Zone", "2023-11-14"),
    ],
)
def test_date_in_zone(layout: str, zone: str, expected: str) -> None:
    data = {"l": layout, "z": zone, "t": T}
    assert render("{{ dateInZone .l .t .z }}", data) == expected
    assert render("{{ date_in_zone .l .t .z }}", data) == expected


def test_html_date_and_epoch() -> None:
    assert render('{{ htmlDateInZone .t "UTC" }}', {"t": T}) == "2023-11-14"
    assert render('{{ htmlDateInZone .t "Asia/Tokyo" }}', {"t": T}) == "2023-11-15"
    assert render(
        '{{ toDate "2006-01-02T15:04:05Z07:00" "2024-03-05T01:02:03+02:00" | unixEpoch }}'
    ) == ("1709593323")
    # toDate, dateModify and date all use the local zone, so this is zone independent.
    src = '{{ toDate "2006-01-02" "2024-03-05" | dateModify "+1.5h" | date "2006-01-02 15:04" }}'
    assert render(src) == "2024-03-05 01:30"
    assert render('{{ toDate "2006-01-02" "2024-03-05" | date_modify "bogus" | htmlDate }}') == (
        "2024-03-05"
    )


def test_to_date_errors_and_zero_time() -> None:
    assert render('{{ toDate "2006-01-02" "not a date" }}') == "0001-01-01 00:00:00 +0000 UTC"
    with pytest.raises(TemplateError, match="cannot parse"):
        render('{{ mustToDate "2006-01-02" "not a date" }}')
    with pytest.raises(TemplateError, match="invalid duration"):
        render('{{ now | mustDateModify "soon" }}')
    with pytest.raises(TemplateError, match="expected time.Time"):
        render('{{ unixEpoch "x" }}')


def test_to_date_fraction_and_month_names() -> None:
    src = '{{ toDate "Jan 2 2006 15:04:05.000 MST" "Mar 5 2024 01:02:03.250 UTC" | date "05.000" }}'
    assert render(src) == "03.250"
    src = '{{ mustToDate "2006-01-02 3:04PM -0700" "2024-03-05 1:02PM +0000" | unixEpoch }}'
    assert render(src) == "1709643720"


def test_to_date_layout_bomb_is_linear() -> None:
    # Many adjacent one-or-two-digit elements: exponential for a backtracking engine.
    assert render("{{ toDate .l .v }}", {"l": "1" * 200, "v": "1" * 401}).startswith("0001-01-01")


def test_now_and_ago() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", render("{{ now | htmlDate }}"))
    assert render('{{ now | dateModify "-2h" | ago }}') == "2h0m0s"
    assert render("{{ ago 0 }}").endswith("s")


# -- random ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("func", "alphabet"),
    [
        ("randAlpha", string.ascii_letters),
        ("randAlphaNum", string.ascii_letters + string.digits),
        ("randNumeric", string.digits),
        ("randAscii", "".join(chr(c) for c in range(32, 127))),
    ],
)
def test_random_strings(func: str, alphabet: str) -> None:
    got = render(f"{{{{ {func} 64 }}}}")
    assert len(got) == 64
    assert set(got) <= set(alphabet)
    assert render(f"{{{{ {func} 0 }}}}") == ""


def test_random_values() -> None:
    assert {render("{{ randInt 3 5 }}") for _ in range(50)} <= {"3", "4"}
    assert len(base64.b64decode(render("{{ randBytes 12 }}"))) == 12
    assert sorted(render('{{ shuffle "abcdef" }}')) == list("abcdef")
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
        render("{{ uuidv4 }}"),
    )
    with pytest.raises(TemplateError, match="Intn"):
        render("{{ randInt 5 5 }}")
    with pytest.raises(TemplateError, match="less than 0"):
        render("{{ randAlpha -1 }}")


@pytest.mark.parametrize("source", ["{{ randAlpha 100000000 }}", "{{ randBytes 100000000 }}"])
def test_random_sizes_are_bounded(source: str) -> None:
    # Refused up front instead of building 100 MB first.
    with pytest.raises(TemplateError, match="exceeds the template output limit"):
        render(source)


def test_semver_constraint_parsing_is_linear() -> None:
    # Upstream uses RE2; a backtracking engine takes exponential time on this input.
    with pytest.raises(TemplateError, match="improper constraint"):
        render("{{ semverCompare .c .v }}", {"c": "1  " * 5000 + "!", "v": "1.0.0"})


# -- what is still not supported --------------------------------------------------------


@pytest.mark.parametrize("name", sorted(UNSUPPORTED_SPRIG - {"call", "getHostByName"}))
def test_crypto_functions_still_fail_clearly(name: str) -> None:
    assert name not in FUNCS
    with pytest.raises(TemplateError, match=f"function '{name}' \\(Sprig\\) is not supported"):
        render(f"{{{{ {name} }}}}")


def test_derive_password() -> None:
    # Sprig's own test vector (Master Password algorithm: scrypt + HMAC-SHA256).
    src = '{{ derivePassword 1 "long" "password" "user" "example.com" }}'
    assert render(src) == "ZedaFaxcZaso9*"
    assert render('{{ derivePassword 1 "pin" "p" "u" "s" }}').isdigit()
    assert (
        render('{{ derivePassword 1 "nope" "p" "u" "s" }}') == "cannot find password template nope"
    )


def _cbc(key: bytes, iv: bytes, data: bytes, encrypt: bool) -> bytes:
    # Reference AES from the dev-only `cryptography` package (nfd itself does not use it).
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    op = cipher.encryptor() if encrypt else cipher.decryptor()
    return op.update(data) + op.finalize()


@pytest.mark.parametrize(
    ("password", "plaintext"),
    [("secretkey", "plaintext"), ("", "x" * 16), ("k" * 40, "ünïcode and more than one block")],
)
def test_aes_matches_reference(password: str, plaintext: str) -> None:
    key = password.encode()[:32].ljust(32, b"\0")
    crypt = base64.b64decode(render("{{ encryptAES .p .t }}", {"p": password, "t": plaintext}))
    padded = _cbc(key, crypt[:16], crypt[16:], encrypt=False)
    assert padded[: len(padded) - padded[-1]].decode() == plaintext
    # And the other way: decrypt what the reference encrypted.
    data = plaintext.encode()
    pad = 16 - len(data) % 16
    iv = bytes(range(16))
    theirs = base64.b64encode(iv + _cbc(key, iv, data + bytes([pad]) * pad, encrypt=True)).decode()
    assert render("{{ decryptAES .p .c }}", {"p": password, "c": theirs}) == plaintext
    # Sprig's documented round trip.
    src = "{{ encryptAES .p .t | decryptAES .p }}"
    assert render(src, {"p": password, "t": plaintext}) == plaintext


def test_aes_edge_cases() -> None:
    assert render('{{ encryptAES "k" "" }} {{ decryptAES "k" "" }}') == " "
    with pytest.raises(TemplateError, match="not full blocks"):
        render('{{ decryptAES "k" "YWJj" }}')
    with pytest.raises(TemplateError, match="base64"):
        render('{{ decryptAES "k" "!!" }}')
    with pytest.raises(TemplateError, match="exceeds the limit"):
        render("{{ encryptAES .k .t }}", {"k": "k", "t": "x" * (64 * 1024 + 1)})


def test_time_type_name() -> None:
    assert render('{{ typeOf now }} {{ typeIsLike "time.Time" now }}') == "time.Time true"
