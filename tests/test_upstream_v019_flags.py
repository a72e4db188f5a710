"""Every flag and config key of upstream v0.19.0's nfd-master and nfd-worker is accepted.

The lists come from upstream's source in its v0.19.0 Go module (cmd/*/main.go, the config
structs in pkg/nfd-master and pkg/nfd-worker), cached by ``hack/upstream-nfd.sh build``; a
flag or key upstream adds makes this test fail until it has a sample value here. Then the
port layouts (docs/compatibility.md, "Ports") with real processes.
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest

from nfd.cli import master as master_cli
from nfd.cli import worker as worker_cli
from nfd.cli.upstream_flags import (
    FEATURE_GATES,
    KLOG_BOOL_FLAGS,
    KLOG_VALUE_FLAGS,
    FeatureGateError,
    parse_feature_gates,
)
from nfd.master.config import MasterConfig, Restrictions, parse_master_config
from nfd.worker.config import parse_config_text
from tests.compat.upstream import current_binary, current_source
from tests.kube.controlplane import free_port, wait_until

BIN = Path(sys.executable).parent

# A value for each upstream flag (None: a bool flag given bare).
MASTER_SAMPLES: dict[str, str | None] = {
    "version": None,
    "instance": "second",
    "config": "/dev/null",
    "kubeconfig": "/tmp/kubeconfig",
    "port": "8080",
    "prune": None,
    "options": "{noPublish: true}",
    "enable-leader-election": None,
    "extra-label-ns": "nvidia.com",
    "label-whitelist": "^gpu",
    "enable-taints": None,
    "no-publish": None,
    "deny-label-ns": "*.example.com",
    "resync-period": "30m",
    "nfd-api-parallelism": "5",
    "informer-page-size": "50",
    "feature-gates": "NodeFeatureGroupAPI=true,DisableAutoPrefix=false",
}
WORKER_SAMPLES: dict[str, str | None] = {
    "version": None,
    "config": "/dev/null",
    "kubeconfig": "/tmp/kubeconfig",
    "oneshot": None,
    "port": "8080",
    "options": "{core: {sleepInterval: 10s}}",
    "no-publish": None,
    "no-owner-refs": None,
    "owner-refs": "node,pod",
    "feature-sources": "all,-pci",
    "label-sources": "cpu",
    "no-publish-features": "pci.device,usb.*",
    "feature-gates": "NodeFeatureAPI=true",
}


def upstream_go(path: str) -> str:
    return (current_source() / path).read_text()


def go_flags(main_go: str) -> set[str]:
    """Flag names registered in a Go main.go (flagset.XxxVar, flagset.Xxx, flagset.Var)."""
    names = set(
        re.findall(r"flag(?:set|s)\.\w+\(\s*(?:&[\w.]+,\s*|[\w.]+,\s*)?\"([\w-]+)\"", main_go)
    )
    if "NFDMutableFeatureGate.AddFlag" in main_go:
        names.add("feature-gates")
    return names


def go_struct_fields(source: str, name: str) -> list[str]:
    body = re.search(rf"type {name} struct {{(.*?)\n}}", source, re.S)
    assert body, f"no struct {name} in upstream's source"
    return re.findall(r"^\s+([A-Z]\w*)\s", body.group(1), re.M)


def config_key(field: str) -> str:
    """encoding/json matches keys case-insensitively; upstream documents lowerCamel."""
    return field[0].lower() + field[1:]


def argv_for(samples: dict[str, str | None], name: str) -> list[str]:
    value = samples[name]
    return [f"-{name}"] if value is None else [f"-{name}={value}"]


def test_sample_lists_are_upstreams_flags() -> None:
    master = go_flags(upstream_go("cmd/nfd-master/main.go"))
    worker = go_flags(upstream_go("cmd/nfd-worker/main.go"))
    # klog's flags come from klog.InitFlags (KLOG_* here), not from main.go.
    assert "InitKlogFlags" in upstream_go("cmd/nfd-master/main.go")
    assert master == set(MASTER_SAMPLES)
    assert worker == set(WORKER_SAMPLES)


def binary_flags(program: str) -> dict[str, str]:
    """name -> Go flag type ("" for a bool) from the built v0.19.0 binary's -help."""
    result = subprocess.run(
        [str(current_binary(program)), "-help"], capture_output=True, text=True, timeout=30
    )
    flags = {}
    for line in (result.stdout + result.stderr).splitlines():
        m = re.match(r"  -(\S+)(?: (\S+))?$", line)
        if m:
            flags[m.group(1)] = m.group(2) or ""
    assert "port" in flags and "version" in flags, result.stderr
    return flags


@pytest.mark.parametrize("program", ["nfd-master", "nfd-worker"])
def test_every_flag_the_v019_binary_has_is_accepted(program: str) -> None:
    """The real upstream v0.19.0 binary (hack/upstream-nfd.sh build) lists its flags, klog's
    included; each one, with a value of its type, parses here."""
    flags = binary_flags(program)
    samples = MASTER_SAMPLES if program == "nfd-master" else WORKER_SAMPLES
    klog = set(KLOG_BOOL_FLAGS) | set(KLOG_VALUE_FLAGS) | {"v"}
    assert set(flags) == (set(samples) | klog), "update the samples or the klog lists"
    for name, kind in sorted(flags.items()):
        if name == "version":
            continue
        if name in samples:
            argv = argv_for(samples, name)
        elif name == "v":
            argv = ["-v=2"]
        else:
            argv = [f"-{name}"] if kind == "" else [f"-{name}=1"]
        if program == "nfd-master":
            norm = master_cli.normalize_argv(argv)
            args = master_cli.build_parser().parse_args(norm)
            explicit = master_cli.explicit_dests(master_cli.build_parser(), norm)
            master_cli.resolve_feature_gates(args, explicit)
            master_cli.resolve_ports(args, explicit)
        else:
            worker_cli.parse_args(argv)


@pytest.mark.parametrize("name", sorted(set(MASTER_SAMPLES) - {"version"}))
def test_every_master_flag_is_accepted(name: str) -> None:
    argv = master_cli.normalize_argv(argv_for(MASTER_SAMPLES, name))
    args = master_cli.build_parser().parse_args(argv)
    explicit = master_cli.explicit_dests(master_cli.build_parser(), argv)
    master_cli.resolve_feature_gates(args, explicit)
    master_cli.resolve_ports(args, explicit)


@pytest.mark.parametrize("name", sorted(set(WORKER_SAMPLES) - {"version"}))
def test_every_worker_flag_is_accepted(name: str) -> None:
    worker_cli.parse_args(argv_for(WORKER_SAMPLES, name))


@pytest.mark.parametrize("name", [*KLOG_BOOL_FLAGS, *KLOG_VALUE_FLAGS])
def test_klog_flags_are_accepted_with_a_warning(name: str) -> None:
    argv = [f"-{name}"] if name in KLOG_BOOL_FLAGS else [f"-{name}=x"]
    worker = worker_cli.parse_args(argv)
    warnings = worker_cli.upstream_flag_warnings(worker, parse_config_text("", "none"))
    assert len(warnings) == 1 and warnings[0].startswith(f"-{name}=")
    assert "klog option" in warnings[0]
    master_cli.build_parser().parse_args(master_cli.normalize_argv(argv))


def test_master_v019_values_land_in_its_config() -> None:
    argv = master_cli.normalize_argv(
        ["-informer-page-size=50", "-feature-gates=NodeFeatureGroupAPI=true", "-v=2"]
    )
    args = master_cli.build_parser().parse_args(argv)
    explicit = master_cli.explicit_dests(master_cli.build_parser(), argv)
    assert master_cli.resolve_feature_gates(args, explicit) == []
    assert args.feature_gates == {
        "NodeFeatureAPI": True,
        "DisableAutoPrefix": False,
        "NodeFeatureGroupAPI": True,
    }
    from nfd.master.config import merge_flags

    config = merge_flags(parse_master_config("informerPageSize: 10\n", "m.conf"), args, explicit)
    assert config.informer_page_size == 50  # the flag wins over the file
    assert parse_master_config("informerPageSize: 10\n", "m.conf").informer_page_size == 10
    assert MasterConfig().informer_page_size == 200
    assert args.verbose == 2


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["Bogus=true"], "unrecognized feature gate: Bogus"),
        (["NodeFeatureGroupAPI"], "missing bool value for NodeFeatureGroupAPI"),
        (["NodeFeatureGroupAPI=maybe"], "invalid value of NodeFeatureGroupAPI=maybe"),
    ],
)
def test_bad_feature_gates_are_refused(values: list[str], message: str) -> None:
    with pytest.raises(FeatureGateError, match=message):
        parse_feature_gates(values)


def test_feature_gates_repeat_and_later_wins() -> None:
    gates = parse_feature_gates(
        ["NodeFeatureGroupAPI=true", " DisableAutoPrefix = t ,", "NodeFeatureGroupAPI=false"]
    )
    assert gates == {**FEATURE_GATES, "DisableAutoPrefix": True}
    assert set(FEATURE_GATES) == set(
        re.findall(r"(\w+)\s+featuregate\.Feature = ", upstream_go("pkg/features/features.go"))
    )


def test_every_master_config_key_is_known() -> None:
    source = upstream_go("pkg/nfd-master/nfd-master.go")
    keys = [config_key(f) for f in go_struct_fields(source, "NFDConfig")]
    leader = [config_key(f) for f in go_struct_fields(source, "LeaderElectionConfig")]
    restrictions = [config_key(f) for f in go_struct_fields(source, "Restrictions")]
    samples: dict[str, Any] = {
        "denyLabelNs": ["*.example.com"],
        "extraLabelNs": ["nvidia.com"],
        "labelWhiteList": "^gpu",
        "noPublish": True,
        "enableTaints": True,
        "resyncPeriod": "30m",
        "leaderElection": {k: "5s" for k in leader},
        "nfdApiParallelism": 5,
        "klog": {"v": "2"},
        "restrictions": {
            **{k: True for k in restrictions if k != "nodeFeatureNamespaceSelector"},
            "nodeFeatureNamespaceSelector": {
                "matchLabels": {"nfd": "yes"},
                "matchExpressions": [{"key": "team", "operator": "In", "values": ["gpu"]}],
            },
        },
        "informerPageSize": 10,
    }
    assert set(keys) == set(samples)
    import yaml

    config = parse_master_config(yaml.safe_dump(samples), "m.conf")
    assert not [w for w in config.warnings if "unknown option" in w], config.warnings
    assert config.restrictions == Restrictions(
        node_feature_namespace_selector=samples["restrictions"]["nodeFeatureNamespaceSelector"],
        disable_labels=True,
        disable_extended_resources=True,
        disable_annotations=True,
        deny_node_feature_labels=True,
        allow_overwrite=True,
    )
    # Every restriction is enforced (docs/compatibility.md §6): none warns.
    assert not [w for w in config.warnings if "not enforced" in w], config.warnings
    assert parse_master_config("restrictions: {allowOverwrite: false}\n", "m").warnings == ()


def uncommented(text: str) -> str:
    return "\n".join(ln[1:] if re.match(r"#(?!#)", ln) else ln for ln in text.splitlines())


def test_upstreams_example_config_files_parse_uncommented() -> None:
    """deployment/components/*-config/*.conf.example of v0.19.0, every option uncommented:
    each key is known (the one exception is upstream's own stray restrictions.disableTaints)."""
    components = current_source() / "deployment" / "components"
    master = uncommented((components / "master-config" / "nfd-master.conf.example").read_text())
    warnings = parse_master_config(master, "nfd-master.conf.example").warnings
    assert not [w for w in warnings if "unknown" in w], warnings
    assert any("restrictions.disableTaints: listed in upstream's example" in w for w in warnings)
    assert any(": klog: klog options" in w for w in warnings)
    worker = uncommented((components / "worker-config" / "nfd-worker.conf.example").read_text())
    config = parse_config_text(worker, "nfd-worker.conf.example")
    assert [w.split(": ", 1)[1] for w in config.warnings] == [
        "core.klog: klog options; this worker logs through Python's logging (-v sets the "
        "level), ignored"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("informerPageSize: -1\n", "informerPageSize: expected a non-negative integer"),
        (
            "restrictions: {disableLabels: 3}\n",
            "restrictions.disableLabels: expected true or false",
        ),
        (
            "restrictions:\n  nodeFeatureNamespaceSelector:\n"
            "    matchExpressions: [{key: a, operator: Is}]\n",
            "operator: 'Is' is not one of In, NotIn, Exists, DoesNotExist",
        ),
        (
            "restrictions: {nodeFeatureNamespaceSelector: {matchLabel: {a: b}}}\n",
            "matchLabel: unknown field",
        ),
    ],
)
def test_bad_master_v019_config_is_refused(text: str, message: str) -> None:
    from nfd.configfile import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_master_config(text, "m.conf")


def test_every_worker_config_key_is_known() -> None:
    source = upstream_go("pkg/nfd-worker/nfd-worker.go")
    assert [config_key(f) for f in go_struct_fields(source, "NFDConfig")] == ["core", "sources"]
    core = {config_key(f) for f in go_struct_fields(source, "coreConfig")}
    text = """
core:
  klog: {v: "2"}
  labelWhiteList: "^cpu"
  noPublish: true
  noOwnerRefs: true
  ownerRefs: [ds, node]
  featureSources: [all]
  sources: [cpu]
  labelSources: [cpu]
  noPublishFeatures: [pci.device, "usb.*"]
  sleepInterval: 30s
"""
    import yaml

    assert set(yaml.safe_load(text)["core"]) == core
    config = parse_config_text(text, "w.conf")
    assert not [w for w in config.warnings if "unknown" in w], config.warnings
    assert config.core.owner_refs == ["node", "ds"]  # upstream's order
    assert config.core.no_owner_refs is True
    assert config.core.no_publish_features == ["pci.device", "usb.*"]
    args = worker_cli.parse_args([])
    moot = worker_cli.upstream_flag_warnings(args, config)
    # core.noPublish: true, so nothing is published and the NodeFeature keys are moot.
    assert {w.split(":")[0] for w in moot} == {
        "core.ownerRefs",
        "core.noOwnerRefs",
        "core.noPublishFeatures",
        "core.noOwnerRefs / -no-owner-refs are deprecated",
    }
    # Publishing a NodeFeature object (v0.19's command line), they all mean something.
    publishing = parse_config_text(text.replace("noPublish: true", "noPublish: false"), "w")
    assert worker_cli.upstream_flag_warnings(args, publishing) == [
        "core.noOwnerRefs / -no-owner-refs are deprecated: use 'core.ownerRefs: []' "
        "or '-owner-refs='"
    ]
    # In gRPC mode (--server given), they are moot again.
    grpc_args = worker_cli.parse_args(["-server=m:8080"])
    moot = worker_cli.upstream_flag_warnings(grpc_args, publishing)
    assert "core.noPublishFeatures" in {w.split(":")[0] for w in moot}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("core: {ownerRefs: [pod, pod]}\n", "duplicate owner reference source 'pod'"),
        ("core: {ownerRefs: [owner]}\n", "invalid owner reference source 'owner'"),
        ("core: {noPublishFeatures: pci}\n", "expected a list of feature keys"),
    ],
)
def test_bad_worker_v019_config_is_refused(text: str, message: str) -> None:
    from nfd.configfile import ConfigError

    with pytest.raises(ConfigError, match=message):
        parse_config_text(text, "w.conf")


def test_worker_owner_refs_flag_is_checked_and_ordered(capsys: pytest.CaptureFixture[str]) -> None:
    assert worker_cli.parse_args(["-owner-refs=ds,node"]).owner_refs == ["node", "ds"]
    assert worker_cli.parse_args(["-owner-refs="]).owner_refs == []
    with pytest.raises(SystemExit):
        worker_cli.parse_args(["-owner-refs=pod,rs"])
    assert "invalid owner reference source 'rs'" in capsys.readouterr().err


# -- ports -----------------------------------------------------------------------


def test_worker_http_port_follows_the_spelling(capsys: pytest.CaptureFixture[str]) -> None:
    assert worker_cli.parse_args([]).metrics == 8080  # v0.19's -port default
    assert worker_cli.parse_args(["-server=m:8080"]).metrics == 8081  # v0.16's -metrics
    assert worker_cli.parse_args(["-port=9000"]).metrics == 9000
    assert worker_cli.parse_args(["-metrics=9001"]).metrics == 9001
    assert worker_cli.parse_args(["-port=9000", "-metrics=9000"]).metrics == 9000
    with pytest.raises(SystemExit):
        worker_cli.parse_args(["-port=9000", "-metrics=9001"])
    assert "name the same HTTP port" in capsys.readouterr().err


def _master_ports(*argv: str) -> tuple[int, int]:
    argv_list = master_cli.normalize_argv(list(argv))
    args = master_cli.build_parser().parse_args(argv_list)
    explicit = master_cli.explicit_dests(master_cli.build_parser(), argv_list)
    master_cli.resolve_feature_gates(args, explicit)
    master_cli.resolve_ports(args, explicit)
    return args.port, args.metrics  # (gRPC, HTTP)


def test_master_port_layouts() -> None:
    # v0.19: nothing gRPC-era given, -port is HTTP.
    assert _master_ports() == (8081, 8080)
    assert _master_ports("-port=9000") == (8081, 9000)
    assert _master_ports("-port=9000", "-grpc-port=9001") == (9001, 9000)
    # v0.16 (and our manifests): -port is gRPC.
    assert _master_ports("-port=8080", "-metrics=8081") == (8080, 8081)
    assert _master_ports("-grpc-health=8082") == (8080, 8081)
    assert _master_ports("-feature-gates=NodeFeatureAPI=false") == (8080, 8081)
    assert _master_ports("-enable-nodefeature-api=false") == (8080, 8081)
    with pytest.raises(ValueError, match="--grpc-port is for the v0.19 layout"):
        _master_ports("-metrics=8081", "-grpc-port=9001")
    with pytest.raises(ValueError, match="must differ"):
        _master_ports("-port=9000", "-grpc-port=9000")


def _healthz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def test_master_started_the_v019_way_serves_http_on_port(tmp_path: Path) -> None:
    """Upstream v0.19's manifests run `nfd-master` with v0.19 flags only and probe
    /healthz on -port: that works, and gRPC workers still find the master on -grpc-port."""
    http, grpc_port = free_port(), free_port()
    log = tmp_path / "master.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(BIN / "nfd-master"),
                "-no-publish",
                f"-port={http}",
                f"-grpc-port={grpc_port}",
                "-feature-gates=NodeFeatureGroupAPI=true",
                "-informer-page-size=50",
                "-logtostderr",
                "-v=2",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def up() -> bool:
            assert proc.poll() is None, log.read_text()
            return _healthz(http)

        wait_until(up, 30, "nfd-master /healthz on -port")
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        grpc.channel_ready_future(channel).result(timeout=10)
        channel.close()
        assert "-logtostderr=true: a klog option" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(10)


def test_worker_started_the_v019_way_serves_http_on_port(tmp_path: Path) -> None:
    port = free_port()
    conf = tmp_path / "w.conf"
    conf.write_text("core: {ownerRefs: [node]}\n")
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(BIN / "nfd-worker"),
                "-no-publish",
                f"-port={port}",
                f"-config={conf}",
                "-kubeconfig=/nonexistent",
                "-feature-gates=NodeFeatureAPI=true",
                "-no-publish-features=pci.*",
            ],
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    try:

        def up() -> bool:
            assert proc.poll() is None, log.read_text()
            return _healthz(port)

        wait_until(up, 60, "nfd-worker /healthz on -port")
        text = log.read_text()
        for what in ("--kubeconfig", "--no-publish-features", "core.ownerRefs"):
            assert f"{what}: applies to the NodeFeature object" in text, text
    finally:
        proc.terminate()
        proc.wait(10)


GC_SAMPLES = {"gc-interval": "30m", "kubeconfig": "/k", "port": "8080", "list-size": "100"}


def test_every_nfd_gc_flag_is_accepted() -> None:
    """nfd-gc (upstream's nfd-gc Deployment runs it from our image): upstream's flags, read
    from its cmd/nfd-gc/main.go, parse with upstream's single-dash spelling."""
    from nfd.cli import gc as gc_cli

    main_go = upstream_go("cmd/nfd-gc/main.go")
    assert go_flags(main_go) == {*GC_SAMPLES, "version"}
    assert "klog.InitFlags" in main_go
    parser = gc_cli.build_parser()
    args = parser.parse_args([f"-{k}={v}" for k, v in GC_SAMPLES.items()])
    assert (args.gc_interval, args.kubeconfig, args.port, args.list_size) == (
        1800.0,
        "/k",
        8080,
        100,
    )
    assert parser.parse_args(["-logtostderr", "-vmodule=x=2"]).klog_vmodule == "x=2"
    version = subprocess.run(
        [sys.executable, "-m", "nfd.cli.gc", "-version"], capture_output=True, text=True
    )
    assert version.returncode == 0 and version.stdout.startswith("nfd-gc "), version
