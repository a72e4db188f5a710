"""The string-method parsers that replaced regexes (start-up: no ``re`` on the
worker's discovery path) give exactly the old regexes' results.

Each ``old_*`` function is the regex version as it was; the new one must agree on
random text and on text built from the characters where the two could differ
(Unicode digits and spaces, newlines, the label character set's edges).
"""

from __future__ import annotations

import itertools
import re
import sys
from datetime import UTC, datetime

from hypothesis import example, given, settings
from hypothesis import strategies as st

from nfd.gpu import devices
from nfd.labels import MAX_NAME_LEN, MAX_PREFIX_LEN, MAX_VALUE_LEN, name_errors, value_errors
from nfd.sources import _cpu_sysfs, cpu, kernel, local, memory, system

ALL_CHARS = "".join(map(chr, range(sys.maxunicode + 1)))

# Characters around every boundary the rewrites draw.
TRICKY = (
    "aAzZ09-_./=@ .\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u2028\u2029\u3000"
    "٣६\uff10²½ⅫéßİK\u212a\u0131ſ"  # Unicode digits/numerics, case-changing letters
    "\"'#:+MGTHzk"  # quotes and the brand-string units
    "\udc80\udcff\udc7f\ud800\x00"
)
tricky_text = st.text(alphabet=TRICKY, max_size=40)
any_text = st.one_of(tricky_text, st.text(max_size=40))

EQUIV = settings(max_examples=500, deadline=None)


# -- the character classes ------------------------------------------------------


def test_character_classes_match_str_methods() -> None:
    assert set(re.findall(r"\s", ALL_CHARS)) == {c for c in ALL_CHARS if c.isspace()}
    assert set(re.findall(r"\d", ALL_CHARS)) == {c for c in ALL_CHARS if c.isdecimal()}
    assert set(re.findall(r"\w", ALL_CHARS)) == {c for c in ALL_CHARS if c.isalnum() or c == "_"}
    ascii_alnum = {chr(i) for i in range(128) if chr(i).isalnum()}
    assert ascii_alnum == set(re.findall("[A-Za-z0-9]", ALL_CHARS))


def test_line_breaks_of_splitlines() -> None:
    breaks = {c for c in ALL_CHARS if len(f"a{c}b".splitlines()) == 2}
    assert breaks == {"\n", *kernel._OTHER_LINE_BREAKS}


# -- labels ---------------------------------------------------------------------
# The reference is Kubernetes' Go regexes, whose ``$`` is the end of the text:
# ``fullmatch`` here (``re.match`` also let one trailing newline through).

_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_RE = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")


def old_name_errors(key: str) -> list[str]:
    errors: list[str] = []
    prefix, sep, name = key.rpartition("/")
    if sep:
        if not prefix:
            errors.append("prefix part must be non-empty")
        elif len(prefix) > MAX_PREFIX_LEN:
            errors.append(f"prefix part must be no more than {MAX_PREFIX_LEN} characters")
        elif not _DNS1123_SUBDOMAIN_RE.fullmatch(prefix):
            errors.append(f"prefix part {prefix!r} must be a lowercase DNS-1123 subdomain")
        if "/" in prefix:
            errors.append("a qualified name must consist of at most one '/'")
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > MAX_NAME_LEN:
        errors.append(f"name part must be no more than {MAX_NAME_LEN} characters")
    elif not _NAME_RE.fullmatch(name):
        errors.append(
            f"name part {name!r} must consist of alphanumerics, '-', '_' or '.', "
            "and start and end with an alphanumeric"
        )
    return errors


def old_value_errors(value: str) -> list[str]:
    if len(value) > MAX_VALUE_LEN:
        return [f"value must be no more than {MAX_VALUE_LEN} characters"]
    if not _VALUE_RE.fullmatch(value):
        return [
            f"value {value!r} must be empty or consist of alphanumerics, '-', '_' or '.', "
            "and start and end with an alphanumeric"
        ]
    return []


label_text = st.text(alphabet="aZ09-_./\n\tKé٣İ", max_size=20)


@EQUIV
@given(st.one_of(label_text, any_text))
@example("a\n")
@example("example.com\n/a")
@example("\n")
@example("Example.com/a")
@example("k\u212a.io/a")
@example("a..b/c")
@example("-a.b/c")
@example("a.b-/c")
def test_label_checks(text: str) -> None:
    assert name_errors(text) == old_name_errors(text)
    assert value_errors(text) == old_value_errors(text)


@EQUIV
@given(st.lists(st.text(alphabet="a0-.A\n", max_size=6), min_size=1, max_size=4))
def test_label_checks_on_dns_like_prefixes(parts: list[str]) -> None:
    key = ".".join(parts) + "/name"
    assert name_errors(key) == old_name_errors(key)


def test_a_trailing_newline_is_not_a_valid_label() -> None:
    # The apiserver would refuse it, and with it the whole Node patch.
    assert value_errors("true\n") and name_errors("a\n") and name_errors("example.com\n/a")


def test_label_checks_on_every_short_string() -> None:
    for size in range(6):
        for chars in itertools.product("a0-._A\n", repeat=size):
            text = "".join(chars)
            assert name_errors(text) == old_name_errors(text), text
            assert name_errors(text + "/x") == old_name_errors(text + "/x"), text
            assert value_errors(text) == old_value_errors(text), text


# -- cpu ------------------------------------------------------------------------

_SANITIZE_RE = re.compile(r"[^-A-Za-z0-9_.]+")
_NOMINAL_FREQ_RE = re.compile(r"@\s*(\d+(?:\.\d+)?)\s*([MGT])Hz")


def old_nominal_base_mhz(model_name: str) -> int | None:
    match = _NOMINAL_FREQ_RE.search(model_name)
    if not match:
        return None
    scale = {"M": 1, "G": 1000, "T": 1000000}[match.group(2)]
    return int(float(match.group(1)) * scale)


@EQUIV
@given(any_text)
@example("a_!b")
@example("__  x")
def test_cpu_sanitize_value(text: str) -> None:
    assert cpu.sanitize_value(text) == _SANITIZE_RE.sub("_", text)


freq_text = st.text(alphabet="@ \t\u3000.0129٣MGTHzk", max_size=24)


@EQUIV
@given(st.one_of(freq_text, any_text))
@example("Intel(R) Xeon(R) Gold 6140 CPU @ 2.30GHz")
@example("@ @ 1.GHz @3 MHz")
@example("@1.5.GHz@2GHz")
@example("@\u3000٣.٣GHz")
@example("@ 3 THz")
def test_nominal_base_mhz(text: str) -> None:
    assert _cpu_sysfs.nominal_base_mhz(text) == old_nominal_base_mhz(text)


# -- kernel ---------------------------------------------------------------------

_FULL_VERSION_FORBIDDEN = re.compile(r"[^-A-Za-z0-9_.]")
_VERSION_RE = re.compile(r"^(\d+)(\.(\d+))?(\.(\d+))?(-.*)?$")


def old_parse_osrelease_version(text: str) -> dict[str, str]:
    full = _FULL_VERSION_FORBIDDEN.sub("_", text.strip()).strip("-_.")
    version = {"full": full}
    match = _VERSION_RE.match(full)
    if match:
        version.update(
            major=match.group(1), minor=match.group(3) or "", revision=match.group(5) or ""
        )
    return version


def old_parse_kconfig(text: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("CONFIG_"):
            continue
        name, sep, value = line.partition("=")
        if sep:
            options[name[7:]] = value.strip('"')
    return options


version_text = st.text(alphabet="0123.-_a+ ٣\n", max_size=16)


@EQUIV
@given(st.one_of(version_text, any_text))
@example("6.8.0-rc1")
@example("6.8")
@example("1.2.3.4")
@example("1.-x")
@example("1..2")
@example("6.8.0+")
def test_osrelease_version(text: str) -> None:
    assert kernel.parse_osrelease_version(text) == old_parse_osrelease_version(text)


kconfig_line = st.one_of(
    st.sampled_from(["CONFIG_A=y", "CONFIG_B=m", 'CONFIG_S="x y"', "# CONFIG_C is not set"]),
    st.sampled_from(["", "CONFIG_", "CONFIG_D", "CONFIG_=1", "CONFIG_A=n", " CONFIG_E=y"]),
    tricky_text.map(lambda s: "CONFIG_" + s),
    tricky_text,
)
line_break = st.sampled_from(["\n", "\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028"])


@EQUIV
@given(st.lists(st.tuples(kconfig_line, line_break), max_size=12), any_text)
@example([("CONFIG_A=y", "\r\n"), ("CONFIG_A=n", "\n")], "")
def test_parse_kconfig(lines: list[tuple[str, str]], tail: str) -> None:
    text = "".join(line + brk for line, brk in lines) + tail
    new, old = kernel.parse_kconfig(text), old_parse_kconfig(text)
    assert new == old
    assert list(new) == list(old)  # same key order too


# -- memory, system -------------------------------------------------------------

_NODE_RE = re.compile(r"^node\d+$")


@EQUIV
@given(st.one_of(st.text(alphabet="node0١\n", max_size=10), any_text))
@example("node1\n")
@example("node\n")
@example("node1\n\n")
@example("node١٢")
def test_is_node_dir(name: str) -> None:
    assert memory.is_node_dir(name) == bool(_NODE_RE.match(name))


_LINE_RE = re.compile(r"^(\w+)=(.+)")
_VERSION_ID_RE = re.compile(r"^(\d+)(\.(\d+))?(\..*)?$")


def old_parse_os_release(text: str) -> dict[str, str]:
    release: dict[str, str] = {}
    for line in text.splitlines():
        match = _LINE_RE.match(line)
        if match:
            release[match.group(1)] = match.group(2).strip().strip("\"'")
    version_id = release.get("VERSION_ID")
    if version_id:
        parts = _VERSION_ID_RE.match(version_id)
        if parts:
            release["VERSION_ID.major"] = parts.group(1)
            if parts.group(3):
                release["VERSION_ID.minor"] = parts.group(3)
    return release


os_release_line = st.one_of(
    st.sampled_from(['ID="ubuntu"', "ID=", "=x", "_=1", "A B=c", "ID_LIKE=debian"]),
    st.text(alphabet="0123.a٣ _-\"'", max_size=10).map(lambda s: "VERSION_ID=" + s),
    st.text(alphabet="IDa_٣é-= .\"'", max_size=12),
    tricky_text,
)


@EQUIV
@given(st.lists(st.tuples(os_release_line, line_break), max_size=8))
@example([("VERSION_ID=1.2a", "\n")])
@example([("VERSION_ID=1.", "\n")])
@example([("VERSION_ID=22.04.3", "\n")])
@example([("VERSION_ID=٣.٣", "\n")])
def test_parse_os_release(lines: list[tuple[str, str]]) -> None:
    text = "".join(line + brk for line, brk in lines)
    new, old = system.parse_os_release(text), old_parse_os_release(text)
    assert new == old
    assert list(new) == list(old)


# -- gpu ------------------------------------------------------------------------

_NOT_LABEL_CHARS = re.compile(r"[^A-Za-z0-9\-_. ]")
_DRIVER_VERSION_RE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?$")
_PROC_VERSION_RE = re.compile(r"Kernel Module\b[^\n]*?\s(\d+\.\d+(?:\.\d+)?)(?=\s|$)")


def old_parse_driver_version(text: str) -> tuple[str, str, str] | None:
    text = text.strip()
    match = _DRIVER_VERSION_RE.match(text)
    if match is None:
        proc = _PROC_VERSION_RE.search(text)
        if proc is None:
            return None
        match = _DRIVER_VERSION_RE.match(proc.group(1))
        if match is None:
            return None
    return match.group(1), match.group(2), match.group(3) or ""


def old_sanitise_label_value(text: str) -> str:
    value = _NOT_LABEL_CHARS.sub("", text.strip()).replace(" ", "-")
    return value[:MAX_VALUE_LEN].strip("-_.")


@EQUIV
@given(st.one_of(st.text(alphabet="0159.٣ \n", max_size=14), any_text))
@example("550.54.15\n")
@example("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar 5 2024")
@example("1.2.3.4")
@example("٥٥٠.١")
def test_parse_driver_version(text: str) -> None:
    assert devices.parse_driver_version(text) == old_parse_driver_version(text)


@EQUIV
@given(any_text)
@example("NVIDIA H100 80GB HBM3 (rev a1)")
def test_sanitise_label_value(text: str) -> None:
    assert devices.sanitise_label_value(text) == old_sanitise_label_value(text)


# -- local ----------------------------------------------------------------------

_UNDECODED = re.compile("[\udc80-\udcff]")


@EQUIV
@given(any_text)
def test_undecoded_bytes(line: str) -> None:
    assert local._has_undecoded_bytes(line) == bool(_UNDECODED.search(line))


def test_expiry_without_now_is_judged_at_parse_time() -> None:
    text = "# +expiry-time=2000-01-01T00:00:00Z\nold\n# +expiry-time=2999-01-01T00:00:00Z\nnew\n"
    parsed = local.parse_feature_text(text, "f")
    assert parsed.labels == {"new": "true"}
    fixed = local.parse_feature_text(text, "f", datetime(1999, 1, 1, tzinfo=UTC))
    assert fixed.labels == {"old": "true", "new": "true"}
