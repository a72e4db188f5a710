"""nfd.master.packed: kept requests as shared parts, and the master keeping them so."""

from __future__ import annotations

import gc

from nfd._proto import labeler_pb2, v1alpha1_pb2
from nfd.master.core import Master
from nfd.master.packed import PartStore
from nfd.master.policy import PolicyConfig


def _features(kernel: str, options: int = 200) -> v1alpha1_pb2.Features:
    f = v1alpha1_pb2.Features()
    f.flags["cpu.cpuid"].elements["AVX"].SetInParent()
    f.vattributes["kernel.version"].elements["full"] = kernel
    for i in range(options):
        f.vattributes["kernel.config"].elements[f"OPTION_{i}"] = "y"
    dev = f.instances["pci.device"].elements.add()
    dev.attributes["vendor"] = "10de"
    dev.attributes["class"] = "0302"
    return f


def _request(kernel: str, **labels: str) -> labeler_pb2.SetLabelsRequest:
    req = labeler_pb2.SetLabelsRequest(labels=labels)
    req.features.CopyFrom(_features(kernel))
    return req


def _wire(msg: labeler_pb2.SetLabelsRequest) -> bytes:
    return msg.SerializeToString(deterministic=True)


def test_a_packed_request_comes_back_the_same() -> None:
    store = PartStore()
    req = _request("6.1.0", a="1", b="2")
    packed = store.pack_request(req)
    assert _wire(packed.request()) == _wire(req)
    # One part per feature set (cpu.cpuid, kernel.version, kernel.config, pci.device).
    assert len(packed.features or ()) == 4
    assert 0 < packed.size < len(_wire(req))


def test_features_absent_and_present_but_empty_stay_apart() -> None:
    store = PartStore()
    none = store.pack_request(labeler_pb2.SetLabelsRequest(labels={"a": "1"}))
    assert not none.request().HasField("features")
    empty = labeler_pb2.SetLabelsRequest(labels={"a": "1"})
    empty.features.SetInParent()
    assert store.pack_request(empty).request().HasField("features")
    assert dict(store.pack_request(labeler_pb2.SetLabelsRequest()).request().labels) == {}


def test_equal_feature_sets_are_one_object_and_go_with_their_last_holder() -> None:
    store = PartStore()
    a = store.pack_request(_request("6.1.0", x="1"))
    b = store.pack_request(_request("6.1.0", x="1"))
    c = store.pack_request(_request("6.8.0", x="2"))
    assert a.labels is b.labels and a.labels is not c.labels
    assert a.features is not None and b.features is not None and c.features is not None
    assert all(p is q for p, q in zip(a.features, b.features, strict=True))
    # Only kernel.version differs: kernel.config, cpu.cpuid and pci.device are shared.
    assert sum(p is q for p, q in zip(a.features, c.features, strict=True)) == 3
    assert len(store) == 5 + 2  # a's labels and 4 sets; c's labels and kernel.version
    del a, b
    gc.collect()
    assert len(store) == 5  # what c holds: kernel.version 6.1.0 and a's labels went
    assert _wire(c.request()) == _wire(_request("6.8.0", x="2"))


def test_the_master_keeps_one_copy_of_what_its_nodes_share() -> None:
    m = Master(PolicyConfig(), apply=lambda node, item: None, parallelism=1)
    for i in range(20):
        m.handle_update(f"node-{i}", {"worker": "1"}, _features("6.1.0", options=3000))
    m.handle_update("odd", {"worker": "2"}, _features("6.8.0", options=3000))
    kept = [m._nodes[f"node-{i}"].kept for i in range(20)]
    odd = m._nodes["odd"].kept
    assert all(k is not None and k.features is not None for k in kept) and odd is not None
    first = kept[0]
    assert first is not None and first.features is not None
    for k in kept[1:]:
        assert k is not None and k.features is not None
        assert k.labels is first.labels
        assert all(p is q for p, q in zip(k.features, first.features, strict=True))
    assert odd.labels is not first.labels
    # Rules evaluated again read the kept copy: the node's labels stay.
    m.set_rules([])
    assert dict(m._nodes["odd"].kept.request().labels) == {"worker": "2"}  # type: ignore[union-attr]
