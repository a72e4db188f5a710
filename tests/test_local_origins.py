"""Where local labels came from (nfd.origins): the local source records the features.d
file or source.d hook of each label, the worker sends it beside (never as) features, the
master keeps it bounded and /explain names it. Pure parts; no processes, no API server
(tests/e2e/test_explain.py runs the real worker and master)."""

from __future__ import annotations

import json
import random
import string
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from nfd import origins
from nfd.cli import explain as cli
from nfd.features import Features
from nfd.hostfs import HostFS
from nfd.master.core import Master
from nfd.master.explain import explain_node
from nfd.master.nodefeatures import NodeFeatureStore
from nfd.master.policy import PolicyConfig
from nfd.sources import SourceContext
from nfd.sources.local import SOURCE
from nfd.wire import features_to_proto
from nfd.worker.publish import Publisher, _local_origins

FNK = "feature.node.kubernetes.io"


def hook(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def discover(tmp_path: Path, hooks: bool = True) -> Features:
    config = {
        "featuresDir": str(tmp_path / "features.d"),
        "hooksDir": str(tmp_path / "source.d"),
        "hooksEnabled": hooks,
    }
    return SOURCE.discover(SourceContext(HostFS("/"), config, "n1", Features()))


@pytest.fixture
def local_tree(tmp_path: Path) -> Path:
    files, hooks = tmp_path / "features.d", tmp_path / "source.d"
    files.mkdir()
    hooks.mkdir()
    (files / "10-team").write_text("team=blue\nshared=file10\nraw-only\n")
    (files / "20-override").write_text("shared=file20\n# +no-label\nfeature-only=1\n")
    (files / ".hidden").write_text("hidden=1\n")
    hook(hooks, "gpu.sh", "echo gpu=yes\necho shared=hook\n")
    return tmp_path


# -- the local source ----------------------------------------------------------------


def test_the_local_source_records_each_labels_file_or_hook_in_order(local_tree: Path) -> None:
    features = discover(local_tree)
    assert features.origins == {
        "team": ("file:10-team",),
        "raw-only": ("file:10-team",),
        "shared": ("file:10-team", "file:20-override", "hook:gpu.sh"),
        "gpu": ("hook:gpu.sh",),
    }
    # Not a feature: upstream's two sets, unchanged, and nothing else.
    assert set(features.attributes) == {"local.label", "local.feature"}
    assert "origins" not in json.dumps(features.to_dict())
    assert features_to_proto(features) == features_to_proto(
        Features(attributes=dict(features.attributes))
    )
    assert features.attributes["local.label"]["shared"] == "hook"
    # feature-only (# +no-label) is no label, so it has no origin.
    assert "feature-only" in features.attributes["local.feature"]


def test_origins_survive_copy_and_merge_but_not_equality(local_tree: Path) -> None:
    features = discover(local_tree, hooks=False)
    merged = Features()
    merged.merge(features)
    assert merged.origins == features.origins == features.copy().origins
    assert features == Features(attributes=dict(features.attributes))


# -- bounds and the encoded form --------------------------------------------------------


def test_bound_drops_bad_entries_cuts_setters_and_counts_what_it_leaves_out() -> None:
    given: dict[str, Any] = {
        "ok": ["file:a", "file:b", "file:c", "file:d", "hook:e"],
        "bad-kind": ["script:x"],
        "slash": ["file:a/b"],
        "dots": ["file:.."],
        "": ["file:a"],
        "long-name": ["file:" + "x" * 256],
        "one": "hook:h",
    }
    kept, omitted = origins.bound(given, omitted=2)
    assert kept == {"ok": ("file:b", "file:c", "file:d", "hook:e"), "one": ("hook:h",)}
    assert omitted == 2 + 5
    # The last MAX_SETTERS entries are looked at, the valid ones of them kept.
    assert origins.bound({"x": ["file:a", "bad", "file:b", "file:c", "file:d"]})[0] == {
        "x": ("file:b", "file:c", "file:d")
    }


def test_bound_caps_labels_and_bytes() -> None:
    many = {f"label-{i:05}": [f"file:{'f' * 200}-{i}"] for i in range(2000)}
    kept, omitted = origins.bound(many)
    text = origins.encode(kept, omitted)
    assert len(text) <= origins.MAX_BYTES
    assert len(kept) + omitted == 2000 and omitted > 0
    assert sorted(kept) == sorted(many)[: len(kept)]  # name order
    small = {f"l{i}": ["file:f"] for i in range(origins.MAX_LABELS + 10)}
    kept, omitted = origins.bound(small)
    assert (len(kept), omitted) == (origins.MAX_LABELS, 10)
    flood = {f"l{i}": ["file:f"] for i in range(origins.MAX_GIVEN + 1)}
    assert origins.bound(flood) == ({}, origins.MAX_GIVEN + 1)


def test_encode_decode_round_trip_and_bad_documents() -> None:
    kept = {"b": ("file:x",), "a": ("file:y", "hook:z")}
    text = origins.encode(kept, 3)
    assert text == '{"labels":{"a":["file:y","hook:z"],"b":["file:x"]},"omitted":3}'
    assert origins.decode(text) == (kept, 3)
    assert origins.unpack(origins.pack(kept, 3)) == (kept, 3)
    assert origins.pack({}) == b"" and origins.unpack(b"") is None
    for bad, why in [
        ("nope", "not JSON"),
        ("[]", "expected"),
        ('{"labels": {"a": "file:x"}}', "labels.a: expected a list"),
        ('{"labels": {}, "omitted": -1}', "omitted"),
        ('{"labels": {}, "omitted": true}', "omitted"),
        ("x" * (4 * origins.MAX_BYTES + 1), "over"),
    ]:
        with pytest.raises(origins.OriginsError, match=why):
            origins.decode(bad)


def test_describe_names_the_winner_and_what_it_overrode() -> None:
    assert origins.describe(("file:a", "hook:b")) == {"hook": "b", "alsoSetBy": [{"file": "a"}]}
    assert origins.describe(("file:a",)) == {"file": "a"}
    assert origins.describe(()) == {}


# -- the worker's publishers ------------------------------------------------------------


def test_published_origins_are_only_those_of_labels_the_worker_sends(local_tree: Path) -> None:
    features = discover(local_tree)
    labels = {"team": "blue", "shared": "hook", "gpu": "other-source-won"}
    kept, omitted = _local_origins(labels, features)
    assert kept == {"team": ("file:10-team",), "shared": features.origins["shared"]}
    assert omitted == 0


def test_the_stream_update_carries_origins_and_set_labels_stays_as_it_was(
    local_tree: Path,
) -> None:
    from nfd._proto import labeler_pb2

    features = discover(local_tree)
    labels = dict(features.attributes["local.label"])
    pub = Publisher("127.0.0.1:1", "n1")
    msg = pub._update_msg(1, labels, features_to_proto(features), _local_origins(labels, features))
    assert list(msg.local_origins["gpu"].set_by) == ["hook:gpu.sh"]
    assert list(msg.local_origins["shared"].set_by)[-1] == "hook:gpu.sh"
    unary = pub._unary_msg(labels, features_to_proto(features))
    assert set(labeler_pb2.SetLabelsRequest.DESCRIPTOR.fields_by_name) == {
        "nfd_version",
        "node_name",
        "labels",
        "features",
    }
    assert b"10-team" not in unary.SerializeToString()
    # A label moving to another file is an update, though labels and features are equal.
    before = pub._digest
    pub.update(labels, features)
    moved = features.copy()
    assert moved.origins is not None
    moved.origins["team"] = ("file:30-elsewhere",)
    first = pub._digest
    pub.update(labels, moved)
    assert before != first != pub._digest


def test_the_nodefeature_object_gets_the_annotation_only_with_local_labels(
    local_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.worker.test_nodefeature_publisher import FakeCustom, make

    pub = make(FakeCustom(), monkeypatch)
    features = discover(local_tree)
    labels = dict(features.attributes["local.label"])
    obj = pub.desired(labels, features)
    text = obj["metadata"]["annotations"][origins.ANNOTATION]
    assert origins.decode(text)[0]["gpu"] == ("hook:gpu.sh",)
    assert "origins" not in json.dumps(obj["spec"])
    plain = pub.desired({"cpu-x": "1"}, Features())
    assert origins.ANNOTATION not in plain["metadata"]["annotations"]


# -- the master -------------------------------------------------------------------------


def local_input(tmp_path: Path) -> tuple[dict[str, str], Features]:
    features = discover(tmp_path)
    return dict(features.attributes["local.label"]), features


def test_master_keeps_the_origins_and_explain_names_file_and_hook(local_tree: Path) -> None:
    labels, features = local_input(local_tree)
    master = Master(PolicyConfig(), None)
    sent = origins.bound(_local_origins(labels, features)[0])
    master.handle_update("n1", labels, features_to_proto(features), local_origins=sent)
    doc = master.explain("n1", "shared")
    assert doc is not None
    by_name = {e["name"]: e for e in doc["labels"]}
    assert by_name[f"{FNK}/team"] == {
        "name": f"{FNK}/team",
        "value": "blue",
        "origin": "worker",
        "source": "local",
        "file": "10-team",
    }
    assert by_name[f"{FNK}/gpu"]["hook"] == "gpu.sh"
    shared = doc["label"]["origin"]
    assert shared["hook"] == "gpu.sh"
    assert shared["alsoSetBy"] == [{"file": "10-team"}, {"file": "20-override"}]
    # The same update again is unchanged; one whose only change is an origin is not.
    assert master.handle_update(
        "n1", labels, features_to_proto(features), local_origins=sent
    ).unchanged
    moved = ({**sent[0], "team": ("file:99-new",)}, 0)
    master.handle_update("n1", labels, features_to_proto(features), local_origins=moved)
    doc = master.explain("n1")
    assert doc is not None
    assert {e["name"]: e for e in doc["labels"]}[f"{FNK}/team"]["file"] == "99-new"


def test_a_worker_that_reports_no_origins_and_one_over_the_bounds(local_tree: Path) -> None:
    labels, features = local_input(local_tree)
    master = Master(PolicyConfig(), None)
    master.handle_update("n1", labels, features_to_proto(features))  # as upstream's worker
    doc = master.explain("n1", "team")
    assert doc is not None
    assert "does not report which" in doc["label"]["origin"]["detail"]
    master.handle_update(
        "n1", labels, features_to_proto(features), local_origins=({"gpu": ("hook:gpu.sh",)}, 3)
    )
    doc = master.explain("n1", "team")
    assert doc is not None
    assert "not recorded" in doc["label"]["origin"]["detail"]
    assert "3 labels" in doc["label"]["origin"]["detail"]


def test_the_nodefeature_annotation_is_read_bounded_and_a_bad_one_costs_only_itself(
    local_tree: Path, caplog: pytest.LogCaptureFixture
) -> None:
    labels, features = local_input(local_tree)
    kept = _local_origins(labels, features)
    store = NodeFeatureStore("nfd")

    def obj(annotation: str | None, name: str = "n1") -> dict[str, Any]:
        meta: dict[str, Any] = {
            "namespace": "nfd",
            "name": name,
            "labels": {"nfd.node.kubernetes.io/node-name": "n1"},
        }
        if annotation is not None:
            meta["annotations"] = {origins.ANNOTATION: annotation}
        return {"metadata": meta, "spec": {"labels": labels, "features": features.to_dict()}}

    assert store.upsert(obj(origins.encode(*kept))) == {"n1"}
    assert store.local_origins(("nfd", "n1")) == kept
    # Only the annotation changed: the node's input changed.
    assert store.upsert(obj(origins.encode({"team": ("file:x",)}))) == {"n1"}
    assert store.upsert(obj("{broken")) == {"n1"}
    assert store.local_origins(("nfd", "n1")) is None
    assert "annotation nfd.node.kubernetes.io/worker.local-origins: not JSON" in caplog.text
    assert store.merged("n1") is not None  # the object's labels and features still count

    store.upsert(obj(origins.encode(*kept)))
    doc = explain_node(
        "n1",
        store.merged("n1").labels,  # type: ignore[union-attr]
        features,
        [],
        PolicyConfig(),
        label="shared",
        label_sources=store.label_sources("n1"),
        grpc_labels={},
        own_object=("nfd", "n1"),
        object_origins=store.local_origins(("nfd", "n1")),
    )
    origin = doc["label"]["origin"]
    assert origin["nodeFeature"] == "nfd/n1" and origin["hook"] == "gpu.sh"


# -- the command's rendering ------------------------------------------------------------


def test_kubectl_nfd_explain_prints_file_and_hook(local_tree: Path) -> None:
    labels, features = local_input(local_tree)
    master = Master(PolicyConfig(), None)
    sent = _local_origins(labels, features)
    master.handle_update("n1", labels, features_to_proto(features), local_origins=sent)
    doc = master.explain("n1")
    assert doc is not None
    table = cli.render_table(doc)
    rows = {ln.split()[0]: ln.split()[2:] for ln in table.splitlines()[2:] if ln.strip()}
    assert rows["team"] == ["features.d/10-team"]
    assert rows["gpu"] == ["source.d/gpu.sh"]
    assert rows["shared"] == ["source.d/gpu.sh", "(+2)"]
    assert "features.d/FILE, source.d/HOOK: nfd-worker's local source" in table
    assert table.count("(+N): ") == 1
    one = master.explain("n1", "shared")
    assert one is not None
    text = cli.render_table(one)
    assert "origin: nfd-worker's local source: source.d hook gpu.sh" in text
    assert "    features.d/10-team\n    features.d/20-override\n" in text


# -- memory -----------------------------------------------------------------------------

TYPICAL = {
    "team": ("file:10-team",),
    "rack": ("file:10-team",),
    "zone": ("file:20-site",),
    "gpu.driver": ("file:20-site", "hook:gpu-driver.sh"),
    "licensed": ("hook:license-check",),
}


def kept_bytes(nodes: int, make: Any) -> int:
    """tracemalloc's growth of a Master fed ``nodes`` updates, with ``make(i)`` as the
    local origins of node i, less the same Master fed the same updates without them."""
    features = Features(attributes={"local.label": {k: "1" for k in TYPICAL}})
    proto = features_to_proto(features)
    labels = dict.fromkeys(TYPICAL, "1")
    sizes = []
    for with_origins in (False, True):
        master = Master(PolicyConfig(), None)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(nodes):
            local = origins.bound(make(i)) if with_origins else None
            master.handle_update(f"node-{i}", labels, proto, local_origins=local)
        sizes.append(tracemalloc.get_traced_memory()[0] - before)
        tracemalloc.stop()
        del master
    return sizes[1] - sizes[0]


def test_master_memory_for_origins_at_10000_nodes() -> None:
    """Measured 2026-12-04 (tracemalloc, 10,000 nodes): the master's extra memory for
    local origins is ~173 bytes per node with five local labels from three files and two
    hooks (1.7 MB at 10,000 nodes); a worker at the bounds (8 KiB of random names, which
    zlib cannot shrink much) costs ~5.8 KB per node, 58 MB at 10,000 such nodes: the
    bound's worst case (origins.MAX_BYTES caps it at 8 KiB + overhead per node)."""
    nodes = 10_000
    typical = kept_bytes(nodes, lambda i: TYPICAL)
    per_node = typical / nodes
    print(f"local origins, typical node: {per_node:.0f} B/node, {typical / 1e6:.2f} MB at {nodes}")
    assert per_node < 300

    rng = random.Random(21)
    letters = string.ascii_letters + string.digits

    def name(n: int) -> str:  # incompressible: the worst case for zlib
        return "".join(rng.choices(letters, k=n))

    def worst(i: int) -> dict[str, list[str]]:
        return {name(60): [f"file:{name(200)}", f"hook:{name(200)}"] for _ in range(300)}

    sample = 200
    heavy = kept_bytes(sample, worst) / sample
    total = heavy * nodes / 1e6
    print(f"local origins at the bounds: {heavy:.0f} B/node, {total:.0f} MB at {nodes}")
    assert heavy <= origins.MAX_BYTES + 1024


# -- over real gRPC ---------------------------------------------------------------------


def test_a_real_publisher_sends_origins_over_the_stream_and_a_flood_costs_only_itself(
    local_tree: Path,
) -> None:
    import grpc

    from nfd._proto import nfdstream_pb2, nfdstream_pb2_grpc
    from tests.master.conftest import start_master

    running = start_master()
    try:
        labels, features = local_input(local_tree)
        pub = Publisher(running.address, "n1")
        pub.publish_once(labels, features)
        doc = running.master.explain("n1", "shared")
        assert doc is not None and doc["label"]["origin"]["hook"] == "gpu.sh"

        # A stream Update with origins for far more labels than any worker sends: the
        # labels are taken, the origins counted as omitted and explained as not recorded.
        update = nfdstream_pb2.Update(seq=1, node_name="n2", full=True)
        update.labels.update(labels)
        update.features.CopyFrom(features_to_proto(features))
        for i in range(origins.MAX_GIVEN + 1):
            update.local_origins[f"l{i}"].set_by.append("file:f")
        with grpc.insecure_channel(running.address) as ch:
            stub = nfdstream_pb2_grpc.FeatureStreamStub(ch)
            msgs = iter([nfdstream_pb2.WorkerMessage(update=update)])
            reply = next(iter(stub.Connect(msgs, timeout=10)))
        assert reply.ack.labels[f"{FNK}/team"] == "blue"
        doc = running.master.explain("n2", "team")
        assert doc is not None and "not recorded" in doc["label"]["origin"]["detail"]
    finally:
        running.stop()
