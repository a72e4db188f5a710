"""The pure parts of bench/bench_nodefeature_scale.py: the API server's request counters,
the report, and results.md sections replaced per N (the benchmark itself needs a control
plane and both masters; it runs under ``make bench``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from bench.bench_nodefeature_scale import (
    Figures,
    Setup,
    by_verb,
    parse_request_counts,
    render,
    write_results,
)

METRICS = """\
# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",resource="nodes",subresource="",verb="GET"} 12
apiserver_request_total{code="404",resource="nodes",subresource="",verb="GET"} 3
apiserver_request_total{code="200",resource="nodes",subresource="",verb="PATCH"} 7
apiserver_request_total{code="200",resource="",subresource="/metrics",verb="GET"} 99
apiserver_request_duration_seconds_count{resource="nodes",verb="GET"} 5
"""


def test_request_counts_sum_codes_and_skip_non_resource_paths() -> None:
    counts = parse_request_counts(METRICS)
    assert counts == Counter({("GET", "nodes"): 15, ("PATCH", "nodes"): 7})
    assert by_verb(counts - Counter({("GET", "nodes"): 5})) == Counter({"GET": 10, "PATCH": 7})


def figures(side: str, all_s: float | None) -> Figures:
    f = Figures(side, [f"/bin/{side}-master", "-kubeconfig=/x", "-a=1"], 10, labelled=10)
    f.all_s, f.first_s, f.peak_rss_mib, f.cpu_s = all_s, 1.0, 100.0, 4.0
    f.requests = Counter({("PATCH", "nodes"): 10, ("GET", "nodes"): 10})
    return f


def test_report_has_both_sides_ratio_and_settings_without_kubeconfig() -> None:
    text = render(
        Setup(10, 146.0, 0.1, 1.0, "0 0 0", [figures("upstream", 8.0), figures("ours", 4.0)])
    )
    assert "| time from master start to every Node labelled | 8.0 s | 4.0 s | 0.50 |" in text
    assert "| API requests: PATCH | 10 | 10 | 1.00 |" in text
    assert "`upstream-master -a=1`" in text and "kubeconfig" not in text


def test_a_side_that_did_not_finish_says_so() -> None:
    f = figures("ours", None)
    f.labelled, f.error = 7, "7 of 10 labelled after 60 s"
    text = render(Setup(10, 146.0, 0.1, 1.0, "0 0 0", [figures("upstream", 8.0), f]))
    assert "not all: 7 (7 of 10 labelled after 60 s)" in text


def test_sections_are_replaced_per_n_and_the_rest_kept(tmp_path: Path) -> None:
    results = tmp_path / "results.md"
    results.write_text("# head\n\n## Measured by hand: x\n\nkept\n")

    def one(n: int, body: str) -> str:
        return (
            f"<!-- nodefeature-scale N={n} begin (b) -->\n{body}\n"
            f"<!-- nodefeature-scale N={n} end -->\n"
        )

    write_results(one(200, "first"), 200, results)
    write_results(one(5000, "big"), 5000, results)
    write_results(one(200, "second"), 200, results)
    text = results.read_text()
    assert "kept" in text and "big" in text and "second" in text and "first" not in text
    assert text.index("second") < text.index("big")
