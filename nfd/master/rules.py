"""Watching NodeFeatureRule objects (nfd.k8s-sigs.io/v1alpha1, cluster-scoped).

On every change the whole set is re-listed, sorted by name, loaded with the rules
engine and handed to ``on_rules``; an object that does not load is logged and
skipped, never costing the other objects their rules.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("nfd-master")

GROUP, VERSION, PLURAL = "nfd.k8s-sigs.io", "v1alpha1", "nodefeaturerules"


def load_rule_objects(objects: list[dict[str, Any]], on_error: Callable[[str], None]) -> list[Any]:
    """Rules of all objects in name order (as upstream)."""
    from nfd.rules import RuleError, load_rules
    from nfd.rules.schema import parse_rule

    rules: list[Any] = []
    for obj in sorted(objects, key=lambda o: (o.get("metadata") or {}).get("name", "")):
        name = (obj.get("metadata") or {}).get("name", "?")
        origin = f"NodeFeatureRule {name}"
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


class RuleWatcher:
    def __init__(
        self,
        api_client: Any,
        on_rules: Callable[[list[Any]], None],
        on_error: Callable[[str], None],
    ) -> None:
        from kubernetes import client

        self.api: Any = client.CustomObjectsApi(api_client)
        self.on_rules = on_rules
        self.on_error = on_error
        self._specs: list[Any] | None = None
        self._stop = threading.Event()
        self.synced = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="nfd-rule-watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _relist(self) -> str:
        body = self.api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        items = body.get("items") or []
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
