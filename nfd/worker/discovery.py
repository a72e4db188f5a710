"""Run the feature sources and turn their features into labels.

One failing source costs only its own features (a warning naming it); one
invalid label costs only itself (a warning naming it).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from nfd import DEFAULT_LABEL_NS
from nfd.features import Features
from nfd.hostfs import HostFS
from nfd.labels import name_errors, value_errors
from nfd.regex import search
from nfd.sources import SourceContext, get_source, select_sources
from nfd.worker.config import WorkerConfig

log = logging.getLogger(__name__)


@dataclass(slots=True)
class DiscoveryResult:
    """One discovery: features, labels, and what went wrong."""

    features: Features
    labels: dict[str, str]
    # Human-readable problems: failed sources and dropped labels.
    warnings: list[str] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)


def discover_features(
    host: HostFS,
    config: WorkerConfig,
    node_name: str,
    sources: list[str] | None = None,
    warnings: list[str] | None = None,
    durations: dict[str, float] | None = None,
) -> Features:
    """Run ``discover`` of every enabled feature source and merge the results."""
    names = (
        sources
        if sources is not None
        else select_sources(config.core.feature_sources, "featureSources")
    )
    features = Features()
    for name in names:
        source = get_source(name)
        ctx = SourceContext(host, config.source_config(name), node_name, features)
        start = time.perf_counter()
        try:
            features.merge(source.discover(ctx))
        except Exception as err:  # a broken source must not stop the others
            message = f"source {name}: discovery failed: {type(err).__name__}: {err}"
            log.warning(message)
            if warnings is not None:
                warnings.append(message)
        if durations is not None:
            durations[name] = time.perf_counter() - start
    return features


def compute_labels(
    features: Features,
    host: HostFS,
    config: WorkerConfig,
    node_name: str,
    warnings: list[str] | None = None,
) -> dict[str, str]:
    """Labels of every enabled label source, validated and whitelist-filtered."""
    names = select_sources(config.core.label_sources, "labelSources")
    ordered = sorted((get_source(n) for n in names), key=lambda s: (s.priority, s.name))
    labels: dict[str, str] = {}
    for source in ordered:
        ctx = SourceContext(host, config.source_config(source.name), node_name, features)
        try:
            produced = source.labels(features, ctx)
        except Exception as err:
            message = f"source {source.name}: labelling failed: {type(err).__name__}: {err}"
            log.warning(message)
            if warnings is not None:
                warnings.append(message)
            continue
        for key, value in produced.items():
            if source.prefix_labels and "/" not in key:
                key = f"{DEFAULT_LABEL_NS}/{source.name}-{key}"
            value = str(value)
            problems = name_errors(key) + value_errors(value)
            if problems:
                message = f"label {key}={value!r} from source {source.name} dropped: " + "; ".join(
                    problems
                )
                log.warning(message)
                if warnings is not None:
                    warnings.append(message)
                continue
            if config.core.label_whitelist and not search(
                config.core.label_whitelist, key.rpartition("/")[2]
            ):
                log.debug("label %s not in labelWhiteList, skipped", key)
                continue
            labels[key] = value
    return dict(sorted(labels.items()))


def run_discovery(host: HostFS, config: WorkerConfig, node_name: str) -> DiscoveryResult:
    warnings: list[str] = []
    durations: dict[str, float] = {}
    features = discover_features(host, config, node_name, warnings=warnings, durations=durations)
    labels = compute_labels(features, host, config, node_name, warnings)
    return DiscoveryResult(features, labels, warnings, durations)
