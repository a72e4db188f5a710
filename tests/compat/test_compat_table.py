"""The helpers behind the parity tests: upstream's log format, the table in
docs/compatibility.md, and the comparison."""

from __future__ import annotations

import pytest

from tests.compat import upstream

LOG = """I1128 15:30:01.000000  123 nfd-worker.go:293] "Node Feature Discovery Worker"
I1128 15:30:01.100000  123 nfd-worker.go:664] "starting feature discovery..."
I1128 15:30:01.200000  123 nfd-worker.go:675] "feature discovery completed" labels=<
\tfeature.node.kubernetes.io/cpu-cpuid.AVX: "true"
\tfeature.node.kubernetes.io/kernel-version.major: "6"
\tvendor.example.com/x: "007"
 >
"""


def test_parse_worker_labels_reads_the_klog_multiline_dump() -> None:
    assert upstream.parse_worker_labels(LOG) == {
        "feature.node.kubernetes.io/cpu-cpuid.AVX": "true",
        "feature.node.kubernetes.io/kernel-version.major": "6",
        "vendor.example.com/x": "007",
    }


def test_parse_worker_labels_empty_map() -> None:
    log = 'I1 x.go:1] "feature discovery completed" labels=<\n\t{}\n >\n'
    assert upstream.parse_worker_labels(log) == {}


def test_parse_worker_labels_needs_verbosity() -> None:
    with pytest.raises(ValueError, match="-v=1"):
        upstream.parse_worker_labels('I1 x.go:1] "feature discovery completed"\n')


def test_parse_worker_labels_unterminated() -> None:
    with pytest.raises(ValueError, match="unterminated"):
        upstream.parse_worker_labels(LOG.replace(" >\n", ""))


DOC = """intro
<!-- label-differences:begin -->
| scope | label | kind | reason |
|---|---|---|---|
| host | `a/cpu-*` | only-ours | newer table |
| fixtures | `a/kernel-version.*` | value | osrelease is read without prefix |
| procfs | `a/x` | only-upstream | upstream bug |
| cpu-only | `a/k*` | any | different input |
<!-- label-differences:end -->
"""


def test_parse_allowed_rows_and_scopes() -> None:
    rows = upstream.parse_allowed(DOC)
    assert [(r.scope, r.pattern, r.kind) for r in rows] == [
        ("host", "a/cpu-*", "only-ours"),
        ("fixtures", "a/kernel-version.*", "value"),
        ("procfs", "a/x", "only-upstream"),
        ("cpu-only", "a/k*", "any"),
    ]
    assert rows[3].covers("cpu-only", "a/kx", "value")
    assert rows[3].covers("cpu-only", "a/kx", "only-ours")
    assert not rows[3].covers("procfs", "a/kx", "value")
    assert rows[0].line == 5
    assert rows[0].covers("host", "a/cpu-Y", "only-ours")
    assert not rows[0].covers("procfs", "a/cpu-Y", "only-ours")
    assert not rows[0].covers("host", "a/cpu-Y", "value")
    assert rows[1].covers("cpu-only", "a/kernel-version.full", "value")
    assert not rows[1].covers("host", "a/kernel-version.full", "value")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("| host | a | sometimes | r |", "kind 'sometimes'"),
        ("| host | a | value | |", "must not be empty"),
        ("| host | a | value |", "expected 4 cells"),
    ],
)
def test_parse_allowed_rejects_bad_rows_with_the_line(row: str, message: str) -> None:
    doc = DOC.replace("| procfs | `a/x` | only-upstream | upstream bug |", row)
    with pytest.raises(ValueError, match=message) as err:
        upstream.parse_allowed(doc, "c.md")
    assert "c.md:7" in str(err.value)


def test_unexplained_lists_only_uncovered_differences() -> None:
    rows = upstream.parse_allowed(DOC)
    ours = {"a/cpu-Z": "true", "a/same": "1", "a/kernel-version.full": "6", "a/mine": "1"}
    theirs = {"a/same": "1", "a/kernel-version.full": "5", "a/x": "1", "a/theirs": "2"}
    assert [str(d.label) for d in upstream.unexplained("host", ours, theirs, rows)] == [
        "a/kernel-version.full",
        "a/mine",
        "a/theirs",
        "a/x",
    ]
    assert [d.label for d in upstream.unexplained("procfs", ours, theirs, rows)] == [
        "a/cpu-Z",
        "a/mine",
        "a/theirs",
    ]


def test_the_real_table_parses_and_every_row_has_a_reason() -> None:
    rows = upstream.load_allowed()
    scopes = {"*", "host", "fixtures"} | set(__import__("tests.golden").golden.TREES)
    for row in rows:
        assert row.scope in scopes, f"docs/compatibility.md:{row.line}: unknown scope {row.scope}"
        assert len(row.reason) > 10, f"docs/compatibility.md:{row.line}: reason too short"


def test_missing_upstream_binary_fails_with_make_install(monkeypatch) -> None:
    env = dict(upstream.script_env())
    env["NFD_UPSTREAM_NFD_WORKER"] = "/nonexistent/upstream-nfd-worker"
    monkeypatch.setattr(upstream, "script_env", lambda: env)
    with pytest.raises(upstream.UpstreamMissing, match="make install"):
        upstream.binary("nfd-worker")


FDOC = """
<!-- feature-differences:begin -->
| scope | feature | element | reason |
|---|---|---|---|
| * | `network.*` | `mtu` | added later |
| fixtures | `kernel.version` | `*` | unprefixed |
| * | `network.virtual` | `@name=bonding_*` | a file |
<!-- feature-differences:end -->
"""


def _spec(**sets: dict) -> dict:
    return {kind: {k: {"elements": v} for k, v in s.items()} for kind, s in sets.items()}


def test_feature_differences_apply_the_table() -> None:
    rows = upstream.parse_allowed_features(FDOC)
    ours = _spec(
        attributes={"kernel.version": {"major": "5"}, "system.x": {"a": "1"}},
        instances={"network.virtual": [{"attributes": {"name": "lo", "mtu": "65536"}}]},
    )
    theirs = _spec(
        attributes={"kernel.version": {"major": "6"}, "system.x": {"a": "2"}, "cpu.e": {}},
        instances={
            "network.virtual": [
                {"attributes": {"name": "lo"}},
                {"attributes": {"name": "bonding_masters"}},
            ]
        },
    )
    assert upstream.feature_differences("procfs", ours, theirs, rows) == [
        "attributes system.x.a: ours='1' upstream='2'"
    ]
    host = upstream.feature_differences("host", ours, theirs, rows)
    assert host == [
        "attributes kernel.version.major: ours='5' upstream='6'",
        "attributes system.x.a: ours='1' upstream='2'",
    ]


def test_feature_differences_report_instance_mismatch() -> None:
    ours = _spec(instances={"pci.device": [{"attributes": {"vendor": "10de"}}]})
    theirs = _spec(instances={"pci.device": [{"attributes": {"vendor": "8086"}}]})
    (line,) = upstream.feature_differences("host", ours, theirs, [])
    assert line.startswith("instances pci.device: ours=")


def test_the_real_feature_table_parses() -> None:
    rows = upstream.load_allowed_features()
    assert rows
    for row in rows:
        assert len(row.reason) > 10, f"docs/compatibility.md:{row.line}: reason too short"
