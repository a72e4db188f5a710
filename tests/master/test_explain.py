"""The explanation of a node's labels (nfd.master.explain), the master's /explain
route and the kubectl nfd explain rendering: pure, no processes."""

from __future__ import annotations

import json

from nfd.cli import explain as cli
from nfd.features import Features
from nfd.gpu.marking import compute_gpu_labels
from nfd.master.core import Master
from nfd.master.explain import NAMED_SOURCES, explain_node, explain_route
from nfd.master.policy import PolicyConfig
from nfd.rules import load_rules
from nfd.sources import SOURCE_NAMES
from nfd.wire import features_to_proto

FNK = "feature.node.kubernetes.io"

RULES = load_rules(
    """
apiVersion: nfd.k8s-sigs.io/v1alpha1
kind: NodeFeatureRule
metadata: {name: gpu-nodes}
spec:
  rules:
    - name: fast-kernel
      labels: {kernel6: "true"}
      matchFeatures:
        - feature: kernel.version
          matchExpressions: {major: {op: Gt, value: ["5"]}}
    - name: rhel
      labels: {os-rhel: "true"}
      matchFeatures:
        - feature: system.osrelease
          matchExpressions: {ID: {op: In, value: [rhel]}}
    - name: chained
      labels: {chained: "yes"}
      matchFeatures:
        - feature: rule.matched
          matchExpressions: {kernel6: {op: IsTrue}}
    - name: override
      labels: {"kernel-version.major": "overridden"}
      matchFeatures:
        - feature: kernel.version
          matchExpressions: {major: {op: Exists}}
""",
    "NodeFeatureRule gpu-nodes",
)

FEATURES = Features.from_dict(
    {
        "attributes": {
            "kernel.version": {"elements": {"major": "6", "minor": "8"}},
            "system.osrelease": {"elements": {"ID": "ubuntu"}},
            "local.label": {"elements": {"from-file": "1"}},
        },
    }
)
WORKER = {
    f"{FNK}/cpu-cpuid.AVX2": "true",
    f"{FNK}/kernel-version.major": "6",
    f"{FNK}/from-file": "1",
    "vendor.example.com/custom": "x",
    "kubernetes.io/hostname": "refused",
}


def explained(**kw):  # type: ignore[no-untyped-def]
    return explain_node("n1", WORKER, FEATURES, RULES, PolicyConfig(), **kw)


def by_name(doc):  # type: ignore[no-untyped-def]
    return {e["name"]: e for e in doc["labels"]}


def test_named_sources_are_the_workers_sources_less_local_and_custom():
    assert set(SOURCE_NAMES) - {"local", "custom"} == NAMED_SOURCES


def test_every_label_has_its_origin():
    labels = by_name(explained())
    assert labels[f"{FNK}/cpu-cpuid.AVX2"] == {
        "name": f"{FNK}/cpu-cpuid.AVX2",
        "value": "true",
        "origin": "worker",
        "source": "cpu",
        "feature": "cpuid.AVX2",
    }
    assert labels[f"{FNK}/from-file"]["source"] == "local"
    assert "does not report which" in labels[f"{FNK}/from-file"]["detail"]
    assert labels["vendor.example.com/custom"]["source"] == "custom"
    assert labels[f"{FNK}/kernel6"] == {
        "name": f"{FNK}/kernel6",
        "value": "true",
        "origin": "NodeFeatureRule",
        "nodeFeatureRule": "gpu-nodes",
        "rule": "fast-kernel",
    }
    # Chained through rule.matched; a rule label overrides the worker's.
    assert labels[f"{FNK}/chained"]["rule"] == "chained"
    assert labels[f"{FNK}/kernel-version.major"]["value"] == "overridden"
    assert labels[f"{FNK}/kernel-version.major"]["rule"] == "override"
    assert f"{FNK}/os-rhel" not in labels


def test_refused_labels_are_listed_with_the_reason():
    doc = explained()
    assert "kubernetes.io/hostname" not in by_name(doc)
    (rej,) = doc["rejected"]
    assert rej["name"] == "kubernetes.io/hostname" and rej["kind"] == "label"


def test_an_absent_label_names_the_rule_and_the_failed_expression_with_the_node_value():
    one = explained(label="os-rhel")["label"]
    assert one["name"] == f"{FNK}/os-rhel" and one["set"] is False
    (miss,) = one["rulesThatDidNotMatch"]
    assert miss["rule"] == "rhel" and miss["nodeFeatureRule"] == "gpu-nodes"
    assert "ID {op: In, value: [rhel]}" in miss["failed"]
    assert "'ubuntu'" in miss["failed"]
    text = cli.render_table(explained(label="os-rhel"))
    kernel6 = cli.render_table(explained(label="kernel6"))
    assert "origin: rule fast-kernel of NodeFeatureRule gpu-nodes" in kernel6
    assert "origin: nfd-worker's cpu source, feature cpuid.AVX2" in cli.render_table(
        explained(label="cpu-cpuid.AVX2")
    )
    assert "feature.node.kubernetes.io/os-rhel: not set on this node" in text
    assert "rule rhel (NodeFeatureRule gpu-nodes) could set it but did not match" in text


def test_a_set_label_and_a_label_nobody_sets():
    one = explained(label=f"{FNK}/kernel6")["label"]
    assert one["set"] and one["origin"]["rule"] == "fast-kernel"
    assert one["rulesThatSetIt"][0]["rule"] == "fast-kernel"
    nobody = explained(label="nope")["label"]
    assert nobody["set"] is False and not nobody["rulesThatDidNotMatch"]
    assert "no NodeFeatureRule names it" in cli.render_label(nobody)
    refused = explained(label="kubernetes.io/hostname")["label"]
    assert "kubernetes.io" in refused["rejected"]


def test_disable_auto_prefix_names_labels_as_written_and_disable_labels_says_why():
    worker = {"plain": "1", f"{FNK}/cpu-cpuid.AVX2": "true"}
    doc = explain_node("n1", worker, FEATURES, RULES, PolicyConfig(disable_auto_prefix=True))
    names = by_name(doc)
    assert "plain" in names and f"{FNK}/plain" not in names
    assert names["kernel6"]["rule"] == "fast-kernel"
    assert explain_node(
        "n1", worker, FEATURES, RULES, PolicyConfig(disable_auto_prefix=True), label="plain"
    )["label"]["set"]
    off = explain_node("n1", worker, FEATURES, RULES, PolicyConfig(disable_labels=True), label="x")
    assert not off["labels"] and "disableLabels" in off["label"]["rejected"]


def test_gpu_marking_labels():
    doc = explained(
        gpu_hardware=True, gpu_marking=lambda labels, hw: compute_gpu_labels(labels, set(), hw)
    )
    entry = by_name(doc)["nvidia.com/gpu.present"]
    assert entry["origin"] == "gpu-marking" and entry["value"] == "true"
    assert doc["gpuMarking"] == {"enabled": True, "hardware": True}
    assert "GPU marking" in cli.origin_text(entry)


def test_master_explains_from_its_kept_state():
    master = Master(PolicyConfig(), None)
    master.set_rules(RULES)
    assert master.explain("n1") is None
    master.handle_update("n1", WORKER, features_to_proto(FEATURES))
    doc = master.explain("n1", "os-rhel")
    assert doc is not None
    assert by_name(doc)[f"{FNK}/kernel6"]["rule"] == "fast-kernel"
    assert doc["label"]["rulesThatDidNotMatch"][0]["rule"] == "rhel"


def test_route_answers_json_404_400_and_503_on_a_standby():
    master = Master(PolicyConfig(), None)
    master.handle_update("n1", WORKER, features_to_proto(FEATURES))
    leader = [True]
    route = explain_route(lambda n, lb: master.explain(n, lb), lambda: leader[0])
    code, ctype, body = route("n1", {"label": ["x"]})
    assert code == 200 and ctype == "application/json"
    assert json.loads(body)["label"]["name"] == f"{FNK}/x"
    code, _, body = route("other", {})
    assert code == 404 and b"no state for node other" in body
    assert route("Bad_Name", {})[0] == 400
    assert route("", {})[0] == 400
    assert route("n1", {"label": ["x" * 400]})[0] == 400
    leader[0] = False
    code, _, body = route("n1", {})
    assert code == 503 and b"standby" in body and b"leader" in body


def test_proxy_path_and_table():
    assert cli.proxy_path("node-feature-discovery", "nfd-master", "metrics", "n1", None) == (
        "/api/v1/namespaces/node-feature-discovery/services/nfd-master:metrics/proxy/explain/n1"
    )
    assert cli.proxy_path("ns", "svc", "8081", "n1", "vendor.io/a b").endswith(
        "svc:8081/proxy/explain/n1?label=vendor.io%2Fa%20b"
    )
    text = cli.render_table(explained())
    lines = text.splitlines()
    assert lines[0] == "Node n1: 6 labels (feature.node.kubernetes.io/ left out of names)"
    assert lines[1].split() == ["LABEL", "VALUE", "ORIGIN"]
    assert any(ln.split()[:2] == ["cpu-cpuid.AVX2", "true"] for ln in lines)
    assert any(ln.split() == ["cpu-cpuid.AVX2", "true", "worker/cpu"] for ln in lines)
    assert "rule gpu-nodes/fast-kernel" in text
    assert "worker/local: a features.d file or hook the worker did not name" in text
    assert "rule NFR/RULE: rule RULE of NodeFeatureRule NFR" in text
    assert "Refused by the master's label policy (1)" in text
    narrow = cli.render_table(explained(), width=60)
    assert all(len(line) <= 60 for line in narrow.splitlines()[1:-1] if "..." in line)
    assert "-o yaml shows them whole" in narrow
    assert "clipped" not in text


def test_route_bounds_concurrent_explanations():
    import threading

    entered, release = threading.Event(), threading.Event()

    def slow(node, label):  # type: ignore[no-untyped-def]
        entered.set()
        release.wait(5)
        return {"labels": []}

    route = explain_route(slow, lambda: True, concurrent=1)
    first = threading.Thread(target=route, args=("n1", {}))
    first.start()
    assert entered.wait(5)
    code, _, body = route("n2", {})
    assert code == 429 and b"busy" in body
    release.set()
    first.join(5)
    assert route("n3", {})[0] == 200


GFD_KEY = ("gpu-operator", "nvidia-features-for-n1")


def nodefeature(namespace: str, name: str, labels: dict[str, str]) -> dict:
    return {
        "metadata": {
            "namespace": namespace,
            "name": name,
            "labels": {"nfd.node.kubernetes.io/node-name": "n1"},
        },
        "spec": {"labels": labels},
    }


def test_labels_of_nodefeature_objects_name_the_object_and_what_it_won_over():
    from nfd.master.nodefeatures import NodeFeatureStore

    store = NodeFeatureStore("nfd")
    # The node's own object (what nfd-worker in NodeFeature mode writes) and GFD's.
    store.upsert(
        nodefeature("nfd", "n1", {"kernel-version.major": "6", "nvidia.com/gpu.product": "A"})
    )
    store.upsert(nodefeature(*GFD_KEY, {"nvidia.com/gpu.product": "H100", "nvidia.com/mig": "x"}))
    sources = store.label_sources("n1")
    assert sources["nvidia.com/gpu.product"] == [(("nfd", "n1"), "A"), (GFD_KEY, "H100")]
    merged = store.merged("n1")
    assert merged is not None
    policy = PolicyConfig(extra_label_ns=frozenset({"nvidia.com"}))
    grpc = {f"{FNK}/cpu-cpuid.AVX2": "true", "nvidia.com/gpu.product": "grpc"}
    doc = explain_node(
        "n1",
        {**grpc, **merged.labels},
        FEATURES,
        [],
        policy,
        label="nvidia.com/gpu.product",
        label_sources=sources,
        grpc_labels=grpc,
        own_object=("nfd", "n1"),
    )
    labels = by_name(doc)
    product = labels["nvidia.com/gpu.product"]
    assert product["value"] == "H100"
    assert product["origin"] == "NodeFeature"
    assert product["nodeFeature"] == "gpu-operator/nvidia-features-for-n1"
    assert product["overrides"] == [
        {"worker": "gRPC", "value": "grpc"},
        {"nodeFeature": "nfd/n1", "value": "A"},
    ]
    assert labels["nvidia.com/mig"]["nodeFeature"] == "gpu-operator/nvidia-features-for-n1"
    assert "overrides" not in labels["nvidia.com/mig"]
    # The node's own object: a worker origin, with the object named.
    own = labels[f"{FNK}/kernel-version.major"]
    assert (own["origin"], own["source"], own["feature"]) == ("worker", "kernel", "version.major")
    assert own["nodeFeature"] == "nfd/n1"
    # Only gRPC: as before, no object.
    assert "nodeFeature" not in labels[f"{FNK}/cpu-cpuid.AVX2"]

    text = cli.render_label(doc["label"])
    assert "origin: spec.labels of NodeFeature gpu-operator/nvidia-features-for-n1" in text
    assert "  it overrides (the last NodeFeature in upstream's merge order wins):" in text
    assert "    nfd-worker (gRPC): 'grpc'\n    NodeFeature nfd/n1: 'A'\n" in text
    whole = cli.render_table(whole_doc(doc))
    assert "NodeFeature gpu-operator/nvidia-features-for-n1 (+2)" in whole
    assert "NodeFeature NS/NAME: spec.labels of that NodeFeature object\n" in whole
    assert "(+N): N others gave it too and lost" in whole
    # In the master's namespace (the document says which), by its name alone: the column
    # is not clipped on a 100-column terminal.
    short = cli.render_table({**whole_doc(doc), "namespace": "gpu-operator"}, 100)
    assert "NodeFeature nvidia-features-for-n1 (+2)\n" in short
    assert (
        "NodeFeature [NS/]NAME: spec.labels of that NodeFeature object (no NS: gpu-operator)"
        in short
    )


def whole_doc(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "label"}


def test_a_denied_third_party_object_gives_no_label_origin():
    from nfd.master.nodefeatures import NodeFeatureStore

    store = NodeFeatureStore("nfd", deny_third_party_labels=True)
    store.upsert(nodefeature(*GFD_KEY, {"nvidia.com/gpu.product": "H100"}))
    assert store.label_sources("n1") == {}


def test_master_explains_a_node_fed_only_by_nodefeature_objects():
    from nfd.master.nodefeatures import NodeFeatureStore

    master = Master(PolicyConfig(extra_label_ns=frozenset({"nvidia.com"})), None)
    store = NodeFeatureStore("nfd")
    master.node_features = store
    store.upsert(nodefeature(*GFD_KEY, {"nvidia.com/gpu.product": "H100"}))
    doc = master.explain("n1", "nvidia.com/gpu.product")
    assert doc is not None
    assert doc["label"]["set"] is True
    assert doc["label"]["origin"]["nodeFeature"] == "gpu-operator/nvidia-features-for-n1"
    assert doc["namespace"] == "nfd"
    # With a gRPC worker too, the object's value wins and the worker's is named.
    master.handle_update("n1", {"nvidia.com/gpu.product": "grpc"}, features_to_proto(FEATURES))
    doc = master.explain("n1")
    assert doc is not None
    entry = by_name(doc)["nvidia.com/gpu.product"]
    assert entry["value"] == "H100"
    assert entry["overrides"] == [{"worker": "gRPC", "value": "grpc"}]
    assert master.explain("n2") is None
