"""The worker's NodeFeature publisher: its labels and features as one
``nfd.k8s-sigs.io/v1alpha1`` NodeFeature object, upstream v0.19's way.

The object, as upstream's worker writes it:

- name: the node name; namespace: the worker's own (the service account's namespace
  file, else ``KUBERNETES_NAMESPACE``; ``POD_NAMESPACE`` is our extra fallback);
- ``metadata.labels``: exactly ``nfd.node.kubernetes.io/node-name: <node>``;
- ``metadata.annotations``: ``nfd.node.kubernetes.io/worker.version`` and, when
  ``POD_UID`` is set, ``nfd.node.kubernetes.io/worker.pod.uid``; ours adds
  ``nfd.node.kubernetes.io/worker.local-origins`` when local labels are published (the
  features.d file or hook of each, nfd.origins; at most 8 KiB), which upstream's master
  ignores and ours shows in ``kubectl nfd explain``;
- ``metadata.ownerReferences``: from ``core.ownerRefs`` / ``-owner-refs`` (``node``,
  ``pod``, ``ds``; default pod,ds), each with ``blockOwnerDeletion: false``;
- ``spec.labels``: the worker's labels; ``spec.features``: every discovered feature
  except the keys ``core.noPublishFeatures`` / ``-no-publish-features`` names (exact, or
  a prefix when the pattern ends in ``*``).

Writes: a GET, then a create (404) or an update carrying the read resourceVersion, and
only when the object differs from what it should be; so a rediscovery that changed
nothing writes nothing. A 409 (someone else wrote in between) re-reads at once; any other
API error retries with exponential backoff and jitter (capped at 30 s). Every
``resync`` seconds the object is read again and repaired if it was changed or deleted.

This is the only worker module that imports the Kubernetes client; nfd-worker loads it
only in NodeFeature mode, so a gRPC worker never imports the client.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from nfd import __version__, origins
from nfd.features import Features

log = logging.getLogger("nfd-worker")

GROUP, VERSION, PLURAL = "nfd.k8s-sigs.io", "v1alpha1", "nodefeatures"
NODE_NAME_LABEL = "nfd.node.kubernetes.io/node-name"
WORKER_VERSION_ANNOTATION = "nfd.node.kubernetes.io/worker.version"
WORKER_POD_UID_ANNOTATION = "nfd.node.kubernetes.io/worker.pod.uid"
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

MAX_BACKOFF = 30.0
RESYNC = 60.0


class NodeFeatureError(RuntimeError):
    """The NodeFeature object could not be written; the message says why."""


def worker_namespace(sa_file: str = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """Upstream's GetKubernetesNamespace, then POD_NAMESPACE; NodeFeatureError if none."""
    try:
        with open(sa_file, encoding="utf-8") as f:
            text = f.read().strip()
        if text:
            return text
    except OSError:
        pass
    for var in ("KUBERNETES_NAMESPACE", "POD_NAMESPACE"):
        value = os.environ.get(var, "").strip()
        if value:
            return value
    raise NodeFeatureError(
        "cannot tell the worker's namespace for its NodeFeature object: no service account "
        f"namespace file ({sa_file}) and neither KUBERNETES_NAMESPACE nor POD_NAMESPACE is set"
    )


def load_api_client(kubeconfig: str | None) -> Any:
    """ApiClient from --kubeconfig, else in-cluster config, else the default kubeconfig."""
    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    try:
        config.load_incluster_config()
        return client.ApiClient()
    except config.ConfigException:
        return config.new_client_from_config()


def pattern_matches(key: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        return key.startswith(pattern[:-1])
    return key == pattern


def strip_features(features: Features, patterns: Sequence[str]) -> tuple[Features, list[str]]:
    """A copy of ``features`` without the keys ``patterns`` match, and the patterns that
    matched nothing (a typo, or hardware this node lacks)."""
    out = features.copy()
    if not patterns:
        return out, []
    used = [False] * len(patterns)
    for table in (out.flags, out.attributes, out.instances):
        for key in list(table):
            hit = False
            for i, p in enumerate(patterns):
                if pattern_matches(key, p):
                    used[i] = hit = True
            if hit:
                del table[key]
    return out, [p for i, p in enumerate(patterns) if not used[i]]


def _api_error(err: ApiException) -> str:
    reason = err.reason or ""
    try:
        message = json.loads(err.body or "{}").get("message") or ""
    except (ValueError, AttributeError):
        message = ""
    return f"{err.status} {reason}{': ' + message if message else ''}"


def _norm_refs(refs: Any) -> list[dict[str, Any]]:
    out = []
    for r in refs or []:
        if isinstance(r, Mapping):
            out.append({k: v for k, v in r.items() if v is not None})
    return out


def _norm_spec(spec: Any) -> tuple[dict[str, str], dict[str, Any]]:
    spec = spec if isinstance(spec, Mapping) else {}
    labels = {str(k): "" if v is None else str(v) for k, v in (spec.get("labels") or {}).items()}
    try:
        features = Features.from_dict(spec.get("features")).to_dict()
    except ValueError:
        features = {"invalid": True}
    return labels, features


def differs(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """True when ``current`` (as read) is not what the worker would write: its labels,
    annotations, owner references or spec differ (empty and absent are the same, as in
    upstream's semantic comparison)."""
    cm, dm = current.get("metadata") or {}, desired["metadata"]
    return (
        dict(cm.get("labels") or {}) != dm["labels"]
        or dict(cm.get("annotations") or {}) != dm["annotations"]
        or _norm_refs(cm.get("ownerReferences")) != _norm_refs(dm["ownerReferences"])
        or _norm_spec(current.get("spec")) != _norm_spec(desired["spec"])
    )


class NodeFeaturePublisher:
    """Keeps this node's NodeFeature object equal to the worker's latest state.

    The same small interface as the gRPC ``Publisher``: ``update()``, ``start()``,
    ``close()``, ``publish_once()``, ``connected``.
    """

    def __init__(
        self,
        node_name: str,
        *,
        namespace: str | None = None,
        kubeconfig: str | None = None,
        owner_refs: Sequence[str] = ("pod", "ds"),
        no_publish_features: Sequence[str] = (),
        api_client: Any = None,
        max_backoff: float = MAX_BACKOFF,
        resync: float = RESYNC,
    ) -> None:
        if not node_name:
            raise NodeFeatureError("node name is empty (set NODE_NAME)")
        self.node_name = node_name
        self.namespace = namespace or worker_namespace()
        try:
            self.api_client = api_client or load_api_client(kubeconfig)
        except Exception as err:  # noqa: BLE001 - any kubeconfig problem is the user's to fix
            where = f"--kubeconfig {kubeconfig}" if kubeconfig else "in-cluster or ~/.kube/config"
            raise NodeFeatureError(
                f"cannot load a Kubernetes client config ({where}): {err}"
            ) from None
        self.custom: Any = client.CustomObjectsApi(self.api_client)
        self.core: Any = client.CoreV1Api(self.api_client)
        self.owner_sources = list(owner_refs)
        self.no_publish_features = list(no_publish_features)
        self.max_backoff, self.resync = max_backoff, resync
        self._owners: list[dict[str, Any]] | None = None
        self._warned_patterns: set[str] = set()
        self._lock = threading.Lock()
        self._state: tuple[dict[str, str], Features] | None = None
        self._version = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()
        self.mode = "nodefeature"
        # For tests and logs: API calls made.
        self.reads = self.creates = self.updates = self.conflicts = 0

    # -- public API ------------------------------------------------------------------

    def update(self, labels: Mapping[str, str], features: Features) -> None:
        with self._lock:
            self._state = (dict(labels), features.copy())
            self._version += 1
        self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="nfd-nodefeature", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def publish_once(
        self, labels: Mapping[str, str], features: Features, timeout: float = 60.0
    ) -> None:
        """Write the object once (retrying API errors until ``timeout``)."""
        deadline = time.monotonic() + timeout
        failures = 0
        while True:
            try:
                self.sync(labels, features)
                return
            except (ApiException, OSError, NodeFeatureError) as err:
                failures += 1
                delay = self._delay(failures)
                if time.monotonic() + delay > deadline:
                    raise NodeFeatureError(self._describe(err)) from None
                log.warning("%s; retrying in %.1fs", self._describe(err), delay)
                time.sleep(delay)

    # -- one write -------------------------------------------------------------------

    def desired(self, labels: Mapping[str, str], features: Features) -> dict[str, Any]:
        published, unmatched = strip_features(features, self.no_publish_features)
        for p in unmatched:
            if p not in self._warned_patterns:
                self._warned_patterns.add(p)
                log.info(
                    "core.noPublishFeatures pattern %r matched no feature (a typo, or the "
                    "hardware it names is absent on this node)",
                    p,
                )
        annotations = {WORKER_VERSION_ANNOTATION: __version__}
        pod_uid = os.environ.get("POD_UID", "")
        if pod_uid:
            annotations[WORKER_POD_UID_ANNOTATION] = pod_uid
        local = origins.published(labels, features.origins, features.attributes.get("local.label"))
        if local[0] or local[1]:
            annotations[origins.ANNOTATION] = origins.encode(*local)
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "NodeFeature",
            "metadata": {
                "name": self.node_name,
                "namespace": self.namespace,
                "labels": {NODE_NAME_LABEL: self.node_name},
                "annotations": annotations,
                "ownerReferences": self.owner_references(),
            },
            "spec": {"features": published.to_dict(), "labels": dict(labels)},
        }

    def sync(self, labels: Mapping[str, str], features: Features) -> bool:
        """Make the object what it should be; True when something was written."""
        want = self.desired(labels, features)
        for _attempt in range(5):
            self.reads += 1
            try:
                current = self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, self.node_name
                )
            except ApiException as err:
                if err.status != 404:
                    raise
                log.info("creating NodeFeature %s/%s", self.namespace, self.node_name)
                try:
                    self.custom.create_namespaced_custom_object(
                        GROUP, VERSION, self.namespace, PLURAL, want
                    )
                except ApiException as err2:
                    if err2.status == 409:  # created meanwhile: read it and compare
                        self.conflicts += 1
                        continue
                    raise
                self.creates += 1
                return True
            if not differs(current, want):
                log.debug("NodeFeature %s/%s up to date", self.namespace, self.node_name)
                return False
            body = dict(current)
            meta = dict(current.get("metadata") or {})
            meta.update(
                labels=want["metadata"]["labels"],
                annotations=want["metadata"]["annotations"],
                ownerReferences=want["metadata"]["ownerReferences"],
            )
            body["metadata"], body["spec"] = meta, want["spec"]
            log.info("updating NodeFeature %s/%s", self.namespace, self.node_name)
            try:
                self.custom.replace_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, self.node_name, body
                )
            except ApiException as err:
                if err.status in (409, 404):  # changed or deleted meanwhile: start over
                    self.conflicts += 1
                    continue
                raise
            self.updates += 1
            return True
        raise NodeFeatureError(
            f"NodeFeature {self.namespace}/{self.node_name}: still conflicting after 5 tries"
        )

    # -- owner references ------------------------------------------------------------

    def owner_references(self) -> list[dict[str, Any]]:
        """Resolved once (API errors raise and are retried by the caller)."""
        if self._owners is None:
            owners = []
            for source in self.owner_sources:
                ref = {"node": self._node_owner, "pod": self._pod_owner, "ds": self._ds_owner}[
                    source
                ]()
                if ref is not None:
                    owners.append(ref)
            self._owners = owners
        return list(self._owners)

    def _node_owner(self) -> dict[str, Any]:
        resp = self.core.read_node(self.node_name, _preload_content=False)
        node = json.loads(resp.data)
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "name": node["metadata"]["name"],
            "uid": node["metadata"]["uid"],
            "blockOwnerDeletion": False,
        }

    def _pod_owner(self) -> dict[str, Any] | None:
        name, uid = os.environ.get("POD_NAME", ""), os.environ.get("POD_UID", "")
        if not name or not uid:
            log.info("no Pod owner reference on the NodeFeature: POD_NAME and POD_UID not set")
            return None
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": name,
            "uid": uid,
            "blockOwnerDeletion": False,
        }

    def _ds_owner(self) -> dict[str, Any] | None:
        name = os.environ.get("POD_NAME", "")
        if not name:
            log.info("no DaemonSet owner reference on the NodeFeature: POD_NAME not set")
            return None
        resp = self.core.read_namespaced_pod(name, self.namespace, _preload_content=False)
        pod = json.loads(resp.data)
        owners = [
            r
            for r in pod.get("metadata", {}).get("ownerReferences") or []
            if r.get("apiVersion") == "apps/v1" and r.get("kind") == "DaemonSet"
        ]
        if len(owners) > 1:
            raise NodeFeatureError(f"worker Pod {name} has multiple DaemonSet owners")
        if not owners:
            log.info("no DaemonSet owner reference: worker Pod %s has no DaemonSet owner", name)
            return None
        ref = dict(owners[0])
        ref["blockOwnerDeletion"] = False
        return ref

    # -- background loop -------------------------------------------------------------

    def _delay(self, failures: int) -> float:
        return min(self.max_backoff, 0.5 * 2 ** min(failures - 1, 10)) * random.uniform(0.5, 1)

    def _describe(self, err: BaseException) -> str:
        what = f"NodeFeature {self.namespace}/{self.node_name}"
        if isinstance(err, ApiException):
            return f"{what}: API error {_api_error(err)}"
        return f"{what}: {err}"

    def _run(self) -> None:
        done_version = -1
        failures = 0
        next_resync = 0.0
        while not self._stop.is_set():
            with self._lock:
                version, state = self._version, self._state
            due = state is not None and (version != done_version or time.monotonic() >= next_resync)
            if not due:
                wait = max(0.05, next_resync - time.monotonic()) if state else 1.0
                self._wake.wait(min(wait, self.resync))
                self._wake.clear()
                continue
            assert state is not None
            try:
                self.sync(*state)
            except Exception as err:  # noqa: BLE001 - never exit: retry with backoff
                self.connected.clear()
                failures += 1
                delay = self._delay(failures)
                log.warning("%s; retrying in %.1fs", self._describe(err), delay)
                self._stop.wait(delay)
                continue
            failures = 0
            done_version = version
            next_resync = time.monotonic() + self.resync
            self.connected.set()
