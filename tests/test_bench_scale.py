"""The pure parts of bench/bench_scale.py: the load generator's bounds and wire encoding,
the write counts across an API server restart, argument checks and results.md sections
(the scenarios themselves need a control plane and both masters: ``make bench``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bench import bench_scale
from bench.bench_scale import GrpcLoad, node_writes, parse, write_results
from nfd._proto import nfdstream_pb2

SPEC = {
    "labels": {"feature.node.kubernetes.io/a": "1"},
    "features": {
        "flags": {"cpu.cpuid": {"elements": {"AVX": {}}}},
        "attributes": {"kernel.config": {"elements": {"X": "y"}}},
        "instances": {},
    },
}


def test_load_generator_refuses_other_than_loopback() -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        GrpcLoad("10.0.0.1:8080", ["n"], SPEC, time_limit=1)


def test_load_generator_is_bounded_in_nodes() -> None:
    with pytest.raises(ValueError, match="1..20000 nodes"):
        GrpcLoad("127.0.0.1:1", [f"n{i}" for i in range(bench_scale.MAX_NODES + 1)], SPEC, 1)
    with pytest.raises(ValueError, match="1..20000 nodes"):
        GrpcLoad("127.0.0.1:1", [], SPEC, 1)


def test_load_generator_stops_by_itself_and_encodes_full_updates() -> None:
    # Nothing listens on port 1: streams fail and retry until the time limit ends the loop.
    load = GrpcLoad("127.0.0.1:1", ["n0", "n1"], SPEC, time_limit=1.5)
    load.thread.join(10)
    assert not load.thread.is_alive()
    load.labels["n1"]["feature.node.kubernetes.io/nfbench-churn"] = "g7"
    msg = nfdstream_pb2.WorkerMessage.FromString(load._encode("n1"))
    up = msg.update
    assert up.node_name == "n1" and up.full and up.seq == load.seq
    assert dict(up.labels) == {
        "feature.node.kubernetes.io/a": "1",
        "feature.node.kubernetes.io/nfbench-churn": "g7",
    }
    assert "AVX" in up.features.flags["cpu.cpuid"].elements
    assert up.features.vattributes["kernel.config"].elements["X"] == "y"


def test_varint_matches_protobuf() -> None:
    for n in (1, 127, 128, 300, 2**21, 2**35):
        msg = nfdstream_pb2.Update(seq=n).SerializeToString()
        assert msg == b"\x08" + bench_scale._varint(n)


def test_node_writes_count_writes_of_nodes_only() -> None:
    before = Counter({("PATCH", "nodes"): 5, ("GET", "nodes"): 9})
    after = Counter({("PATCH", "nodes"): 8, ("GET", "nodes"): 20, ("PATCH", "nodefeatures"): 4})
    assert node_writes(before, after) == 3
    # After an API server restart its counters start again from 0.
    assert node_writes(Counter(), Counter({("UPDATE", "nodes"): 2})) == 2


def test_arguments_are_checked() -> None:
    with pytest.raises(SystemExit, match="--nodes"):
        parse(["--nodes", "0"])
    with pytest.raises(SystemExit, match="--sides"):
        parse(["--sides", "ours,theirs"])
    with pytest.raises(SystemExit, match="--churn-fraction"):
        parse(["--churn-fraction", "2"])
    args = parse(["--nodes", "10000"])
    assert args.sides == ["upstream", "ours", "ours-grpc"] and not args.watch_cache


def test_sections_are_replaced_per_n_and_the_rest_kept(tmp_path: Path) -> None:
    results = tmp_path / "results.md"
    results.write_text("# head\n")
    write_results("<!-- scale N=5 begin x -->\nold\n<!-- scale N=5 end -->\n", 5, results)
    write_results("<!-- scale N=7 begin x -->\nseven\n<!-- scale N=7 end -->\n", 7, results)
    write_results("<!-- scale N=5 begin x -->\nnew\n<!-- scale N=5 end -->\n", 5, results)
    text = results.read_text()
    assert text.startswith("# head\n") and "new" in text and "old" not in text
    assert "seven" in text


def test_churn_defaults_are_the_issues_from_1000_nodes() -> None:
    small, large = parse(["--nodes", "100"]), parse(["--nodes", "1000"])
    assert (small.churn_period, small.churn_fraction) == (5.0, 0.05)
    assert (large.churn_period, large.churn_fraction) == (60.0, 0.01)
    assert parse(["--nodes", "1000", "--churn-period", "7"]).churn_period == 7.0


def test_restarts_can_be_limited_to_some_sides() -> None:
    assert parse([]).restarts == ["upstream", "ours", "ours-grpc"]
    assert parse(["--no-restarts"]).restarts == []
    assert parse(["--restart-sides", "ours-grpc"]).restarts == ["ours-grpc"]
    with pytest.raises(SystemExit, match="--restart-sides"):
        parse(["--restart-sides", "mine"])


def test_report_shows_sides_that_skipped_a_scenario_as_not_run(tmp_path: Path) -> None:
    run = bench_scale.Run(parse(["--nodes", "10"]), tmp_path)
    run.load_avg = "0 0 0"
    done = bench_scale.SideFigures("ours-grpc", "gRPC", ["/x/nfd-master", "--kubeconfig=/k"])
    done.cold_s, done.changes, done.changes_seen, done.churn_writes = 2.0, 4, 4, 4
    done.lat_p50 = done.lat_p99 = 0.02
    done.back_s["master restart"], done.action_s["master restart"] = 1.5, 0.5
    skipped = bench_scale.SideFigures("ours", "NodeFeature", ["/x/nfd-master"])
    text = bench_scale.render(run, [done, skipped])
    assert "| cold start: every Node labelled | 2.0 s | not reached |" in text
    assert "| churn: Node writes per change | 1.00 |  |" in text
    assert "0.5 s / 1.5 s / 0 /" in text and "| not run |" in text
    assert "kubeconfig" not in text
