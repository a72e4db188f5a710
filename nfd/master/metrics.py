"""The master's Prometheus metrics, with upstream's names; nfd.metrics_http serves them."""

from __future__ import annotations

import logging

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

from nfd import __version__

log = logging.getLogger(__name__)


class MasterMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.build_info = Gauge(
            "nfd_master_build_info", "Build information", ["version"], registry=r
        )
        self.build_info.labels(__version__).set(1)
        # prometheus_client adds the _total suffix to counters.
        self.update_requests = Counter(
            "nfd_master_node_update_requests",
            "Node update requests received (gRPC SetLabels calls and stream updates)",
            registry=r,
        )
        self.updates = Counter(
            "nfd_master_node_updates", "Node objects changed by the master", registry=r
        )
        self.update_failures = Counter(
            "nfd_master_node_update_failures", "Failed attempts to update a Node", registry=r
        )
        self.labels_rejected = Counter(
            "nfd_master_node_labels_rejected", "Labels refused by the label policy", registry=r
        )
        self.ers_rejected = Counter(
            "nfd_master_node_extendedresources_rejected",
            "Extended resources refused by the policy",
            registry=r,
        )
        self.taints_rejected = Counter(
            "nfd_master_node_taints_rejected", "Taints refused by the policy", registry=r
        )
        self.annotations_rejected = Counter(
            "nfd_master_node_annotations_rejected", "Annotations refused by the policy", registry=r
        )
        self.rule_duration = Histogram(
            "nfd_master_nodefeaturerule_processing_duration_seconds",
            "Time to evaluate all NodeFeatureRules for one node",
            buckets=(0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1),
            registry=r,
        )
        self.rule_errors = Counter(
            "nfd_master_nodefeaturerule_processing_errors",
            "Errors while loading or evaluating NodeFeatureRules",
            registry=r,
        )
        self.connected_workers = Gauge(
            "nfd_master_connected_workers", "Open worker streams", registry=r
        )
        # Labels of these metrics are fixed words, never a node or rule name: a client
        # that makes up names must not grow the registry.
        self.updates_refused = Counter(
            "nfd_master_node_update_refused",
            "Updates refused as a whole (reason: invalid-node-name, unknown-node, over-budget)",
            ["reason"],
            registry=r,
        )
        self.updates_dropped = Counter(
            "nfd_master_node_update_dropped",
            "Node updates dropped after a permanent API error (4xx other than 409/422/429)",
            registry=r,
        )
        self.node_states = Gauge(
            "nfd_master_node_states", "Nodes the master holds worker state for", registry=r
        )
        self.rule_failures = Counter(
            "nfd_master_nodefeaturerule_failures",
            "Rule evaluations that failed (reason: error, budget) or were skipped (skipped)",
            ["reason"],
            registry=r,
        )
        self.patches_skipped = Counter(
            "nfd_master_node_unchanged_updates",
            "Updates that needed no Node write (state unchanged)",
            registry=r,
        )

        # As upstream's nfd-gc, whose work the master does for NodeFeature objects.
        self.group_updates = Counter(
            "nfd_master_node_feature_group_update_requests",
            "NodeFeatureGroup status.nodes writes (upstream: group evaluations)",
            registry=r,
        )
        self.gc_deleted = Counter(
            "nfd_gc_objects_deleted",
            "NodeFeature objects deleted because their Node is gone (kind: NodeFeature)",
            ["kind"],
            registry=r,
        )
        self.gc_delete_failures = Counter(
            "nfd_gc_object_delete_failures",
            "Failed deletions of NodeFeature objects whose Node is gone (kind: NodeFeature)",
            ["kind"],
            registry=r,
        )

    def count_rejection(self, kind: str) -> None:
        {
            "label": self.labels_rejected,
            "extended-resource": self.ers_rejected,
            "taint": self.taints_rejected,
            "annotation": self.annotations_rejected,
        }.get(kind, self.labels_rejected).inc()
