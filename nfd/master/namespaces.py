"""restrictions.nodeFeatureNamespaceSelector: which namespaces' NodeFeature objects count.

Upstream v0.19's nfd-master runs a Namespace informer and, for every NodeFeature, asks
whether its namespace is among those the selector (a metav1.LabelSelector) selects;
objects elsewhere give the node nothing. The master's own namespace is not special:
a selector that does not select it leaves out the nfd-workers' objects too. With no
selector every namespace counts and no Namespace is read.

``selector_matches`` is the pure part (metav1 semantics); ``NamespaceWatcher`` lists
and watches Namespaces (the RBAC upstream grants: namespaces list, watch) and says which
namespaces entered or left the selection, so the nodes with objects there are evaluated
again at once (upstream only notices at its next resync).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("nfd-master")


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy a LabelSelector (matchLabels and matchExpressions,
    ANDed; an empty selector selects everything), as metav1.LabelSelectorAsSelector."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op = expr["key"], expr["operator"]
        values = set(expr.get("values") or [])
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


class NamespaceWatcher:
    """The namespaces a selector selects, kept current by a list and watch of
    Namespaces. ``selected(ns)`` is False for every namespace until the first list
    (``synced``); ``on_change(namespaces)`` gets those that entered or left the
    selection, ``on_sync()`` runs after the first list."""

    def __init__(
        self,
        api_client: Any,
        selector: Mapping[str, Any],
        on_change: Callable[[set[str]], None],
        on_sync: Callable[[], None],
        *,
        watch_seconds: int = 300,
    ) -> None:
        from kubernetes import client

        self.core: Any = client.CoreV1Api(api_client)
        self.selector = selector
        self.on_change, self.on_sync = on_change, on_sync
        self.watch_seconds = watch_seconds
        self.synced = threading.Event()
        self._lock = threading.Lock()
        self._selected: set[str] = set()
        self._stop = threading.Event()

    def selected(self, namespace: str) -> bool:
        with self._lock:
            return namespace in self._selected

    def names(self) -> set[str]:
        with self._lock:
            return set(self._selected)

    def start(self) -> None:
        threading.Thread(target=self._run, name="nfd-namespace-watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _matches(self, obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return selector_matches(self.selector, labels)

    def _swap(self, selected: set[str]) -> set[str]:
        with self._lock:
            changed = selected ^ self._selected
            self._selected = selected
        return changed

    def _set(self, name: str, selected: bool) -> set[str]:
        with self._lock:
            if (name in self._selected) == selected:
                return set()
            if selected:
                self._selected.add(name)
            else:
                self._selected.discard(name)
        return {name}

    def relist(self) -> str:
        selected: set[str] = set()
        cont = None
        while True:
            resp = self.core.list_namespace(limit=500, _continue=cont, _preload_content=False)
            body = json.loads(resp.data)
            for item in body.get("items") or []:
                if self._matches(item):
                    selected.add(str((item.get("metadata") or {}).get("name") or ""))
            meta = body.get("metadata") or {}
            cont = meta.get("continue")
            if not cont:
                break
        changed = self._swap(selected)
        first = not self.synced.is_set()
        self.synced.set()
        log.info(
            "restrictions.nodeFeatureNamespaceSelector selects %d namespaces: %s",
            len(selected),
            ", ".join(sorted(selected)[:20]) or "none",
        )
        if first:
            self.on_sync()
        elif changed:
            self.on_change(changed)
        return str(meta.get("resourceVersion") or "")

    def watch_from(self, version: str) -> str | None:
        from kubernetes.watch.watch import iter_resp_lines

        resp = self.core.list_namespace(
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=self.watch_seconds,
            _preload_content=False,
        )
        try:
            for line in iter_resp_lines(resp):
                if self._stop.is_set():
                    return version
                if not line:
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    return None
                meta = obj.get("metadata") or {}
                version = str(meta.get("resourceVersion") or version)
                name = str(meta.get("name") or "")
                if kind in ("ADDED", "MODIFIED"):
                    changed = self._set(name, self._matches(obj))
                elif kind == "DELETED":
                    changed = self._set(name, False)
                else:  # BOOKMARK
                    continue
                if changed:
                    log.info(
                        "namespace %s %s the NodeFeature namespace selection",
                        name,
                        "entered" if self.selected(name) else "left",
                    )
                    self.on_change(changed)
        finally:
            resp.release_conn()
        return version

    def _run(self) -> None:
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self.relist()
                version = self.watch_from(version)
            except Exception as err:  # noqa: BLE001 - API down, RBAC missing: keep trying
                code = getattr(err, "status", None)
                if code == 403:
                    log.error(
                        "restrictions.nodeFeatureNamespaceSelector: cannot list/watch "
                        "namespaces (403): the nfd-master ClusterRole needs namespaces "
                        "list and watch, as upstream's; no NodeFeature counts until then"
                    )
                elif code != 410:
                    log.warning("Namespace watch: %s (retrying)", err)
                version = None
                self._stop.wait({410: 0.0, 403: 10.0}.get(code or 0, 2.0))
