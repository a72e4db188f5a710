"""Watching NodeFeatureRule objects (nfd.k8s-sigs.io/v1alpha1, cluster-scoped).

On every change the whole set is re-listed, sorted by name, loaded with the rules
engine and handed to ``on_rules``; an object that does not load is logged and
skipped, never costing the other objects their rules. A rule that fails when it is
evaluated is reported as a Warning Event on its NodeFeatureRule
(``report_rule_failure``), once per version of the rule.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("nfd-master")

GROUP, VERSION, PLURAL = "nfd.k8s-sigs.io", "v1alpha1", "nodefeaturerules"
ORIGIN_PREFIX = "NodeFeatureRule "
# Events post in the background; failures are reported once per rule version, so more
# than this waiting means the API is down and the oldest news can go.
MAX_PENDING_EVENTS = 1000


def load_rule_objects(objects: list[dict[str, Any]], on_error: Callable[[str], None]) -> list[Any]:
    """Rules of all objects in name order (as upstream)."""
    from nfd.rules import RuleError, load_rules
    from nfd.rules.schema import parse_rule

    rules: list[Any] = []
    for obj in sorted(objects, key=lambda o: (o.get("metadata") or {}).get("name", "")):
        name = (obj.get("metadata") or {}).get("name", "?")
        origin = f"{ORIGIN_PREFIX}{name}"
        try:
            rules.extend(load_rules(obj, origin))
            continue
        except RuleError as err:
            spec = obj.get("spec")
            raw_rules = spec.get("rules") if isinstance(spec, dict) else None
            if not isinstance(raw_rules, list):
                on_error(f"{origin}: {err}")
                continue
        # One bad rule costs only itself, as upstream: load the object rule by rule.
        for index, raw in enumerate(raw_rules):
            try:
                rules.extend(parse_rule(raw, f"{origin}: spec.rules[{index}]", origin))
            except RuleError as err:
                on_error(str(err))
    return rules


def rule_failure_event(
    rule_object: str, uid: str, namespace: str, message: str, blown: bool
) -> dict[str, Any]:
    """A core/v1 Warning Event about a NodeFeatureRule (cluster-scoped, so the Event
    lives in the master's namespace; ``kubectl describe nodefeaturerule`` shows it)."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    involved = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "NodeFeatureRule", "name": rule_object}
    if uid:
        involved["uid"] = uid
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{rule_object}.", "namespace": namespace},
        "involvedObject": involved,
        "type": "Warning",
        "reason": "RuleBudgetExceeded" if blown else "RuleFailed",
        "message": message[:1000],
        "source": {"component": "nfd-master", "host": socket.gethostname()},
        "reportingComponent": "nfd-master",
        "reportingInstance": socket.gethostname(),
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class RuleWatcher:
    def __init__(
        self,
        api_client: Any,
        on_rules: Callable[[list[Any]], None],
        on_error: Callable[[str], None],
        *,
        events_namespace: str = "default",
    ) -> None:
        from kubernetes import client

        self.api: Any = client.CustomObjectsApi(api_client)
        self.core: Any = client.CoreV1Api(api_client)
        self.on_rules = on_rules
        self.on_error = on_error
        self.events_namespace = events_namespace
        self._specs: list[Any] | None = None
        self._uids: dict[str, str] = {}  # NodeFeatureRule name -> uid, for Events
        self._events: queue.Queue[dict[str, Any]] = queue.Queue(MAX_PENDING_EVENTS)
        self._stop = threading.Event()
        self.synced = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="nfd-rule-watch", daemon=True).start()
        threading.Thread(target=self._post_events, name="nfd-rule-events", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def report_rule_failure(self, rule: Any, message: str, blown: bool) -> None:
        """Post a Warning Event on the rule's NodeFeatureRule (in the background: this is
        called from rule evaluation)."""
        origin = str(getattr(rule, "origin", ""))
        if not origin.startswith(ORIGIN_PREFIX):
            return
        name = origin.removeprefix(ORIGIN_PREFIX)
        event = rule_failure_event(
            name, self._uids.get(name, ""), self.events_namespace, message, blown
        )
        try:
            self._events.put_nowait(event)
        except queue.Full:
            log.warning("Event for NodeFeatureRule %s dropped: too many pending", name)

    def _post_events(self) -> None:
        while not self._stop.is_set():
            try:
                event = self._events.get(timeout=1.0)
            except queue.Empty:
                continue
            try:
                self.core.create_namespaced_event(self.events_namespace, event)
            except Exception as err:  # noqa: BLE001 - the log line was written already
                log.warning("cannot post an Event for a NodeFeatureRule: %s", err)

    def _relist(self) -> str:
        body = self.api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        items = body.get("items") or []
        self._uids = {
            (i.get("metadata") or {}).get("name", ""): (i.get("metadata") or {}).get("uid", "")
            for i in items
        }
        specs = sorted(((i.get("metadata") or {}).get("name"), i.get("spec")) for i in items)
        if specs != self._specs:
            self._specs = specs
            self.on_rules(load_rule_objects(items, self._report))
        self.synced.set()
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

    def _report(self, message: str) -> None:
        log.error("%s", message)
        self.on_error(message)

    def _run(self) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            try:
                version = self._relist()
                w = watch.Watch()
                for _event in w.stream(
                    self.api.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    PLURAL,
                    resource_version=version,
                    timeout_seconds=300,
                ):
                    if self._stop.is_set():
                        return
                    version = self._relist()
            except Exception as err:  # noqa: BLE001 - CRD missing, API down: keep trying
                if getattr(err, "status", None) == 404:
                    # No CRD installed: no rules. Still ready; pick them up once it exists.
                    if not self.synced.is_set():
                        log.warning("NodeFeatureRule CRD not installed: running without rules")
                        self._specs = []
                        self.on_rules([])
                    self.synced.set()
                else:
                    log.warning("NodeFeatureRule watch: %s (retrying)", err)
                self._stop.wait(2.0)
                time.sleep(0)
