"""The worker's HTTP endpoint (upstream v0.14–v0.16 ``--metrics``, port 8081).

``/metrics`` serves Prometheus metrics with upstream's names
(``nfd_worker_build_info``, ``nfd_worker_feature_discovery_duration_seconds``)
plus a few of our own about event-driven rediscovery; ``/healthz`` answers 200
once the worker runs.
"""

from __future__ import annotations

import logging
from http.server import ThreadingHTTPServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from nfd import __version__
from nfd.metrics_http import serve_http

log = logging.getLogger(__name__)

DEFAULT_METRICS_PORT = 8081

# Upstream's buckets: 10 ms up to about 1 s.
DISCOVERY_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.build_info = Gauge(
            "nfd_worker_build_info",
            "Build information of nfd-worker",
            ["version"],
            registry=self.registry,
        )
        self.build_info.labels(version=__version__).set(1)
        self.discovery_duration = Histogram(
            "nfd_worker_feature_discovery_duration_seconds",
            "Time taken to discover features (full or event-driven partial pass)",
            ["node"],
            buckets=DISCOVERY_BUCKETS,
            registry=self.registry,
        )
        self.rediscoveries = Counter(
            "nfd_worker_rediscoveries_total",
            "Discovery passes by what triggered them",
            ["trigger"],
            registry=self.registry,
        )
        self.label_set_changes = Counter(
            "nfd_worker_feature_set_changes_total",
            "Discovery passes whose labels or features differed from the previous pass",
            registry=self.registry,
        )
        self.labels = Gauge(
            "nfd_worker_labels",
            "Labels in the worker's current label set (what it sends for its node)",
            ["node"],
            registry=self.registry,
        )
        self.config_reload_failures = Counter(
            "nfd_worker_config_reload_failures_total",
            "Changed config files that were rejected (the previous config stayed in force)",
            registry=self.registry,
        )

    def observe_discovery(self, node: str, seconds: float, trigger: str) -> None:
        self.discovery_duration.labels(node=node).observe(seconds)
        self.rediscoveries.labels(trigger=trigger).inc()

    def label_count(self, node: str, count: int) -> None:
        self.labels.labels(node=node).set(count)

    def label_set_changed(self) -> None:
        self.label_set_changes.inc()

    def config_reload_failed(self) -> None:
        self.config_reload_failures.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def serve_metrics(metrics: WorkerMetrics, port: int, host: str = "") -> ThreadingHTTPServer:
    """Serve /metrics and /healthz on a daemon thread; OSError if the port is taken."""
    # A long poll interval: the thread sleeps in select until a request comes,
    # instead of waking twice a second (the default) on an idle node.
    return serve_http(
        port, metrics.registry, host=host, poll_interval=3600, thread_name="nfd-worker-metrics"
    )
