"""Upstream v0.19 flags that nfd-master and nfd-worker share: ``-feature-gates`` and klog's.

``-feature-gates`` takes upstream's gates with Kubernetes' syntax (``A=true,B=false``, the
flag may repeat, later values win; an unknown gate or a bad boolean is an error, as
upstream's). klog's flags (``-logtostderr``, ``-vmodule=...``) are accepted so that upstream
manifests start, and each one given gets a warning: logging here is Python's, to stderr,
and ``-v`` is the only knob.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from nfd.cli.flags import GO_FALSE, GO_TRUE, go_bool

# Upstream v0.19.0's gates (pkg/features) and their defaults. NodeFeatureAPI is locked to
# true there; v0.16 allowed false (gRPC only), which we keep accepting for v0.16 setups.
FEATURE_GATES: Mapping[str, bool] = {
    "NodeFeatureAPI": True,
    "DisableAutoPrefix": False,
    "NodeFeatureGroupAPI": False,
}

# klog v2's flags (klog.InitFlags), which upstream's commands all register: bool ones take
# =true/=false like any Go bool flag, the others a value.
KLOG_BOOL_FLAGS = (
    "add_dir_header",
    "alsologtostderr",
    "legacy_stderr_threshold_behavior",
    "logtostderr",
    "one_output",
    "skip_headers",
    "skip_log_headers",
)
KLOG_VALUE_FLAGS = (
    "alsologtostderrthreshold",
    "log_backtrace_at",
    "log_dir",
    "log_file",
    "log_file_max_size",
    "stderrthreshold",
    "vmodule",
)


class FeatureGateError(ValueError):
    """A ``-feature-gates`` value upstream would refuse."""


def parse_feature_gates(values: list[str] | None) -> dict[str, bool]:
    """Every gate's value: the defaults, overridden by each ``-feature-gates`` in order."""
    gates = dict(FEATURE_GATES)
    for value in values or []:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            name, eq, text = item.partition("=")
            name, text = name.strip(), text.strip()
            if not eq:
                raise FeatureGateError(f"-feature-gates: missing bool value for {name}")
            if text in GO_TRUE:
                enabled = True
            elif text in GO_FALSE:
                enabled = False
            else:
                raise FeatureGateError(
                    f"-feature-gates: invalid value of {name}={text} (expected true or false)"
                )
            if name not in FEATURE_GATES:
                raise FeatureGateError(
                    f"-feature-gates: unrecognized feature gate: {name} "
                    f"(known: {', '.join(FEATURE_GATES)})"
                )
            gates[name] = enabled
    return gates


def add_feature_gates(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--feature-gates",
        action="append",
        metavar="GATE=BOOL,...",
        help="upstream's feature gates, e.g. NodeFeatureGroupAPI=true (defaults: "
        + ", ".join(f"{k}={str(v).lower()}" for k, v in FEATURE_GATES.items())
        + ")",
    )


def add_klog_flags(parser: argparse.ArgumentParser) -> None:
    """klog's flags, accepted and ignored (see :func:`klog_warnings`)."""
    group = parser.add_argument_group("klog's flags (upstream's logging; accepted, ignored)")
    for name in KLOG_BOOL_FLAGS:
        group.add_argument(
            f"--{name}",
            dest=f"klog_{name}",
            nargs="?",
            const=True,
            default=None,
            type=go_bool,
            metavar="BOOL",
            help="klog",
        )
    for name in KLOG_VALUE_FLAGS:
        group.add_argument(f"--{name}", dest=f"klog_{name}", default=None, help="klog")


def klog_warnings(args: argparse.Namespace) -> list[str]:
    """One line per klog flag given."""
    out = []
    for name in (*KLOG_BOOL_FLAGS, *KLOG_VALUE_FLAGS):
        value = getattr(args, f"klog_{name}", None)
        if value is None:
            continue
        if isinstance(value, bool):
            value = str(value).lower()
        out.append(
            f"-{name}={value}: a klog option; this program logs to stderr through Python's "
            "logging (-v sets the level), ignored"
        )
    return out
