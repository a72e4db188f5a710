"""NodeFeature publisher logic with a fake API (fast): conflicts re-read, API errors back
off and retry, unchanged state writes nothing; and how nfd-worker picks its mode. The real
thing runs in tests/e2e/test_worker_nodefeature.py."""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from nfd import __version__
from nfd.cli import worker as worker_cli
from nfd.features import Features
from nfd.worker.nodefeature import (
    NodeFeatureError,
    NodeFeaturePublisher,
    differs,
    strip_features,
    worker_namespace,
)


class FakeCustom:
    """CustomObjectsApi's four calls on one in-memory object, with injectable failures."""

    def __init__(self) -> None:
        self.obj: dict[str, Any] | None = None
        self.rv = 0
        self.fail: list[int] = []  # statuses the next calls raise, in order
        self.conflict_once = False  # someone writes between our GET and PUT
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def _maybe_fail(self) -> None:
        if self.fail:
            raise ApiException(status=self.fail.pop(0), reason="injected")

    def get_namespaced_custom_object(self, g: str, v: str, ns: str, p: str, name: str) -> Any:
        self.calls.append("get")
        self._maybe_fail()
        if self.obj is None:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.obj)

    def create_namespaced_custom_object(self, g: str, v: str, ns: str, p: str, body: Any) -> Any:
        self.calls.append("create")
        self._maybe_fail()
        if self.obj is not None:
            raise ApiException(status=409, reason="AlreadyExists")
        self.rv += 1
        self.obj = copy.deepcopy(body)
        self.obj["metadata"]["resourceVersion"] = str(self.rv)
        return self.obj

    def replace_namespaced_custom_object(
        self, g: str, v: str, ns: str, p: str, name: str, body: Any
    ) -> Any:
        self.calls.append("replace")
        self._maybe_fail()
        assert self.obj is not None
        if self.conflict_once:
            self.conflict_once = False
            self.rv += 1
            self.obj["metadata"]["resourceVersion"] = str(self.rv)
        if body["metadata"].get("resourceVersion") != self.obj["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        self.rv += 1
        self.obj = copy.deepcopy(body)
        self.obj["metadata"]["resourceVersion"] = str(self.rv)
        return self.obj


def make(fake: FakeCustom, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> NodeFeaturePublisher:
    monkeypatch.delenv("POD_UID", raising=False)
    monkeypatch.delenv("POD_NAME", raising=False)
    pub = NodeFeaturePublisher(
        "node-1", namespace="nfd", api_client=object(), max_backoff=0.05, **kw
    )
    pub.custom = fake
    return pub


def features() -> Features:
    f = Features()
    f.add_flags("cpu.cpuid", ["AVX2"])
    f.add_attributes("kernel.version", {"major": "6"})
    f.add_instances("pci.device", [{"vendor": "10de"}])
    return f


def test_create_then_no_write_when_unchanged_then_update(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCustom()
    pub = make(fake, monkeypatch)
    assert pub.sync({"a": "1"}, features()) is True
    assert fake.calls == ["get", "create"]  # one GET (404), one create
    obj = fake.obj
    assert obj is not None
    assert obj["metadata"]["labels"] == {"nfd.node.kubernetes.io/node-name": "node-1"}
    assert obj["metadata"]["annotations"] == {"nfd.node.kubernetes.io/worker.version": __version__}
    assert obj["spec"]["features"]["flags"]["cpu.cpuid"] == {"elements": {"AVX2": {}}}
    fake.calls.clear()
    assert pub.sync({"a": "1"}, features()) is False
    assert fake.calls == ["get"]  # a read, no write
    fake.calls.clear()
    assert pub.sync({"a": "2"}, features()) is True
    assert fake.calls == ["get", "replace"]
    assert fake.obj is not None and fake.obj["spec"]["labels"] == {"a": "2"}


def test_a_conflict_rereads_and_writes_once(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCustom()
    pub = make(fake, monkeypatch)
    pub.sync({"a": "1"}, features())
    fake.calls.clear()
    fake.conflict_once = True
    assert pub.sync({"a": "2"}, features()) is True
    assert fake.calls == ["get", "replace", "get", "replace"]
    assert pub.conflicts == 1 and pub.updates == 1


def test_a_create_race_reads_the_other_object(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCustom()
    pub = make(fake, monkeypatch)
    other = make(FakeCustom(), monkeypatch)
    fake.obj = other.desired({"a": "1"}, features())
    fake.obj["metadata"]["resourceVersion"] = "7"
    # Our GET said 404 (injected), the create then finds the object: read it, no write.
    fake.fail = [404]
    assert pub.sync({"a": "1"}, features()) is False
    assert fake.calls == ["get", "create", "get"]


def test_api_errors_back_off_and_the_thread_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCustom()
    fake.fail = [500, 503, 429]
    pub = make(fake, monkeypatch)
    pub.update({"a": "1"}, features())
    pub.start()
    try:
        assert pub.connected.wait(10)
    finally:
        pub.close()
    assert fake.obj is not None and fake.obj["spec"]["labels"] == {"a": "1"}
    assert fake.calls.count("get") == 4 and pub.creates == 1


def test_publish_once_gives_up_with_the_api_error(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCustom()
    fake.fail = [403] * 100
    pub = make(fake, monkeypatch)
    with pytest.raises(NodeFeatureError, match="API error 403"):
        pub.publish_once({"a": "1"}, features(), timeout=0.3)


def test_no_publish_features_patterns() -> None:
    out, unmatched = strip_features(features(), ["cpu.*", "kernel.version", "usb.device"])
    assert out.names() == {"pci.device"}
    assert unmatched == ["usb.device"]
    everything, _ = strip_features(features(), ["*"])
    assert everything.is_empty()


def test_differs_treats_empty_and_absent_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    pub = make(FakeCustom(), monkeypatch)
    want = pub.desired({}, Features())
    current = copy.deepcopy(want)
    current["metadata"].pop("ownerReferences")
    current["spec"] = {}
    current["metadata"]["resourceVersion"] = "3"
    assert not differs(current, want)
    current["metadata"]["annotations"]["someone"] = "else"
    assert differs(current, want)  # upstream replaces the annotations whole


def test_namespace_from_the_service_account_then_env(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_NAMESPACE", raising=False)
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    sa = tmp_path / "namespace"
    with pytest.raises(NodeFeatureError, match="KUBERNETES_NAMESPACE"):
        worker_namespace(str(sa))
    monkeypatch.setenv("POD_NAMESPACE", "pod-ns")
    assert worker_namespace(str(sa)) == "pod-ns"
    monkeypatch.setenv("KUBERNETES_NAMESPACE", "kube-ns")
    assert worker_namespace(str(sa)) == "kube-ns"
    sa.write_text("sa-ns\n")
    assert worker_namespace(str(sa)) == "sa-ns"


@pytest.mark.parametrize(
    ("argv", "mode"),
    [
        ([], "nodefeature"),  # upstream v0.19's DaemonSet: bare nfd-worker
        (["-kubeconfig=/k", "-owner-refs=node"], "nodefeature"),
        (["-port=8080"], "nodefeature"),
        (["--server=nfd-master:8080"], "grpc"),  # our manifests
        (["--metrics=8081"], "grpc"),
        (["-ca-file=a", "-cert-file=b", "-key-file=c"], "grpc"),
        (["--server=m:1", "-feature-gates=NodeFeatureAPI=true"], "nodefeature"),
        (["--server=m:1", "-enable-nodefeature-api"], "nodefeature"),
        (["-feature-gates=NodeFeatureAPI=false"], "grpc"),
        (["-enable-nodefeature-api=false", "-server=m:1"], "grpc"),  # v0.16's gRPC setup
    ],
)
def test_publish_mode(argv: list[str], mode: str) -> None:
    assert worker_cli.publish_mode(worker_cli.parse_args(argv)) == mode


def test_flags_override_the_config_for_the_object() -> None:
    from nfd.worker.config import parse_config_text

    config = parse_config_text("core: {ownerRefs: [node], noPublishFeatures: [pci.*]}\n", "c")
    args = worker_cli.parse_args([])
    assert worker_cli.nodefeature_options(args, config) == {
        "owner_refs": ["node"],
        "no_publish_features": ["pci.*"],
    }
    args = worker_cli.parse_args(["-owner-refs=", "-no-publish-features=usb.*"])
    assert worker_cli.nodefeature_options(args, config) == {
        "owner_refs": [],
        "no_publish_features": ["usb.*"],
    }
    args = worker_cli.parse_args(["-no-owner-refs"])
    assert worker_cli.nodefeature_options(args, config)["owner_refs"] == []
