"""nfd-master.conf: parsing, --options overlay, flag precedence, reload and watching."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from nfd.cli.master import build_parser, normalize_argv
from nfd.master.config import (
    ConfigReloader,
    ConfigWatcher,
    MasterConfig,
    apply_to_args,
    explicit_dests,
    load_master_config,
    merge_flags,
    parse_master_config,
    restart_needed,
)
from nfd.master.core import Master, WorkItem
from nfd.master.policy import PolicyConfig
from nfd.worker.config import ConfigError

FNK = "feature.node.kubernetes.io"

FULL = """\
noPublish: true
extraLabelNs: [vendor.io, other.io]
denyLabelNs: ["*.example.com"]
labelWhiteList: "^e2e-"
resourceLabels: [vendor.io/things]
enableTaints: true
resyncPeriod: 1m30s
nfdApiParallelism: 4
leaderElection:
  leaseDuration: 20s
  renewDeadline: 12s
  retryPeriod: 3s
klog:
  v: 3
"""


def test_all_upstream_options_map_to_fields() -> None:
    cfg = parse_master_config(FULL, "m.conf")
    assert cfg == MasterConfig(
        no_publish=True,
        extra_label_ns=frozenset({"vendor.io", "other.io"}),
        deny_label_ns=frozenset({"*.example.com"}),
        label_whitelist="^e2e-",
        resource_labels=frozenset({"vendor.io/things"}),
        enable_taints=True,
        resync_period=90.0,
        nfd_api_parallelism=4,
        lease_duration=20.0,
        renew_deadline=12.0,
        retry_period=3.0,
    )
    # klog is upstream's logging: accepted, with its one warning.
    assert cfg.warnings == (
        "m.conf:13: klog: klog options; this nfd-master logs through Python's logging "
        "(-v sets the level), ignored",
    )
    policy = cfg.policy(gpu_marking=False)
    assert policy.deny_label_ns == frozenset({"*.example.com"}) and policy.enable_taints


def test_empty_or_missing_file_gives_defaults(tmp_path: Path) -> None:
    assert parse_master_config("", "m.conf") == MasterConfig()
    assert parse_master_config("# only a comment\n", "m.conf") == MasterConfig()
    assert load_master_config(str(tmp_path / "absent.conf")) == MasterConfig()
    with pytest.raises(ConfigError, match=r"absent.conf: no such file"):
        load_master_config(str(tmp_path / "absent.conf"), must_exist=True)


def test_unknown_and_unsupported_keys_warn_with_their_line() -> None:
    cfg = parse_master_config(
        "enableTaints: true\nbogus: 1\nrestrictions:\n  disableLabels: true\n"
        "leaderElection:\n  nope: 1s\n",
        "m.conf",
    )
    assert cfg.enable_taints
    assert cfg.warnings == (
        "m.conf:2: bogus: unknown option, ignored",
        "m.conf:6: leaderElection.nope: unknown option, ignored",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("noPublish: false\nenableTaints: maybe\n", r"^m\.conf:2: enableTaints: expected true"),
        ("labelWhiteList: '(unclosed'\n", r"^m\.conf:1: labelWhiteList: "),
        ("a: 1\nresyncPeriod: soon\n", r"^m\.conf:2: resyncPeriod: invalid duration"),
        ("resyncPeriod: -1s\n", r"^m\.conf:1: resyncPeriod: must not be negative"),
        ("\nnfdApiParallelism: 0\n", r"^m\.conf:2: nfdApiParallelism: expected a positive"),
        ("denyLabelNs: {a: b}\n", r"^m\.conf:1: denyLabelNs: expected a list of strings"),
        (
            "leaderElection:\n  leaseDuration: 15s\n  retryPeriod: x\n",
            r"^m\.conf:3: leaderElection\.retryPeriod: invalid duration",
        ),
        ("- a\n- b\n", r"^m\.conf:1: expected a mapping at the top level"),
        ("denyLabelNs: [a\nenableTaints: true\n", r"^m\.conf:2: invalid YAML"),
    ],
)
def test_errors_name_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_master_config(text, "m.conf")


def test_options_overlay_the_file_and_name_themselves_in_errors() -> None:
    text = "enableTaints: true\ndenyLabelNs: [a.io]\nleaderElection: {leaseDuration: 30s}\n"
    cfg = parse_master_config(
        text, "m.conf", '{"denyLabelNs": ["b.io"], "leaderElection": {"retryPeriod": "5s"}}'
    )
    assert cfg.enable_taints
    assert cfg.deny_label_ns == frozenset({"b.io"})
    assert (cfg.lease_duration, cfg.retry_period) == (30.0, 5.0)
    with pytest.raises(ConfigError, match=r"^--options:1: enableTaints: expected true"):
        parse_master_config(text, "m.conf", "enableTaints: 3")
    # Options alone (no file) work too.
    assert parse_master_config("", "m.conf", "nfdApiParallelism: 7").nfd_api_parallelism == 7


def _flags(*argv: str) -> tuple[MasterConfig, object, set[str]]:
    args_list = normalize_argv(list(argv))
    args = build_parser().parse_args(args_list)
    explicit = explicit_dests(build_parser(), args_list)
    return parse_master_config(FULL, "m.conf"), args, explicit


def test_flags_given_win_and_defaults_do_not() -> None:
    file_cfg, args, explicit = _flags(
        "-deny-label-ns=x.io,y.io", "--enable-taints=false", "--nfd-api-parallelism", "2"
    )
    assert explicit == {"deny_label_ns", "enable_taints", "nfd_api_parallelism"}
    cfg = merge_flags(file_cfg, args, explicit)  # type: ignore[arg-type]
    assert cfg.deny_label_ns == frozenset({"x.io", "y.io"})
    assert cfg.enable_taints is False
    assert cfg.nfd_api_parallelism == 2
    # Not given on the command line: the file's value, not the flag default.
    assert cfg.no_publish is True
    assert cfg.label_whitelist == "^e2e-"
    assert cfg.resync_period == 90.0
    assert cfg.lease_duration == 20.0
    # Written back for the code that reads flags; merging again is idempotent.
    apply_to_args(cfg, args)  # type: ignore[arg-type]
    assert args.no_publish is True and args.resync_period == 90.0  # type: ignore[attr-defined]
    assert args.deny_label_ns == ["x.io,y.io"]  # type: ignore[attr-defined]
    assert merge_flags(file_cfg, args, explicit) == cfg  # type: ignore[arg-type]


def test_no_flags_no_file_keeps_the_flag_defaults() -> None:
    args = build_parser().parse_args([])
    cfg = merge_flags(MasterConfig(), args, explicit_dests(build_parser(), []))
    assert cfg == MasterConfig()
    apply_to_args(cfg, args)
    assert args.resync_period == 3600.0 and args.nfd_api_parallelism == 10
    assert args.extra_label_ns is None and args.label_whitelist is None


def test_restart_needed_lists_only_non_live_keys() -> None:
    old = MasterConfig()
    new = MasterConfig(deny_label_ns=frozenset({"a"}), resync_period=5, retry_period=1)
    assert restart_needed(old, new) == ["resyncPeriod", "leaderElection.retryPeriod"]


def _master() -> tuple[Master, list[tuple[str, WorkItem]]]:
    applied: list[tuple[str, WorkItem]] = []
    return Master(PolicyConfig(), lambda n, i: applied.append((n, i))), applied


def _wait(pred) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 5
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_set_policy_reevaluates_cached_nodes() -> None:
    m, applied = _master()
    m.handle_update("n", {"e2e-a": "1", "vendor.io/x": "2"}, None)
    _wait(lambda: applied)
    assert set(applied[-1][1].desired.labels) == {f"{FNK}/e2e-a", "vendor.io/x"}
    m.set_policy(PolicyConfig(deny_label_ns=frozenset({"vendor.io"})))
    _wait(lambda: len(applied) >= 2)
    assert applied[-1][1].desired.labels == {f"{FNK}/e2e-a": "1"}
    assert applied[-1][1].allow_remove
    # Already evaluated under the new policy: the same resend is unchanged.
    assert m.handle_update("n", {"e2e-a": "1", "vendor.io/x": "2"}, None).unchanged
    m.stop()


def test_reloader_swaps_policy_and_keeps_old_on_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conf = tmp_path / "nfd-master.conf"
    conf.write_text("denyLabelNs: [a.io]\n")
    args = build_parser().parse_args(["--enable-taints"])
    explicit = {"enable_taints"}
    running = merge_flags(load_master_config(str(conf)), args, explicit)
    policies: list[PolicyConfig] = []
    reload = ConfigReloader(
        str(conf), "", False, args, explicit, running, policies.append, gpu_marking=True
    )
    caplog.set_level(logging.INFO, "nfd-master")

    conf.write_text("denyLabelNs: [b.io]\nenableTaints: false\nresyncPeriod: 5s\n")
    assert reload()
    assert policies[-1] == PolicyConfig(deny_label_ns=frozenset({"b.io"}), enable_taints=True)
    assert "resyncPeriod changed: needs a restart" in caplog.text
    assert "reloaded" in caplog.text

    conf.write_text("denyLabelNs: [c.io]\nlabelWhiteList: '('\n")
    assert not reload()
    assert len(policies) == 1
    assert f"rejected, keeping the previous config: {conf}:2: labelWhiteList" in caplog.text

    conf.write_text("denyLabelNs: [b.io]\nresyncPeriod: 5s\n")
    assert reload()  # same label policy as running: nothing re-evaluated
    assert len(policies) == 1
    assert "label policy unchanged" in caplog.text


@pytest.mark.timeout(30)
def test_watcher_sees_writes_renames_and_creation(tmp_path: Path) -> None:
    conf = tmp_path / "cfg" / "nfd-master.conf"
    calls: list[float] = []
    watcher = ConfigWatcher(str(conf), lambda: calls.append(time.monotonic()))
    watcher.start()
    try:
        time.sleep(0.2)
        conf.parent.mkdir()
        conf.write_text("enableTaints: true\n")  # the file appears (directory too)
        _wait(lambda: len(calls) >= 1)
        tmp = conf.parent / ".new"
        tmp.write_text("enableTaints: false\n")
        began = time.monotonic()
        tmp.rename(conf)  # an editor's rename-over
        _wait(lambda: len(calls) >= 2)
        assert calls[-1] - began < 1.0
        n = len(calls)
        conf.write_text("enableTaints: false\n")  # same content: no reload
        time.sleep(0.5)
        assert len(calls) == n
    finally:
        watcher.stop()


def test_a_config_larger_than_a_configmap_is_refused(tmp_path: Path) -> None:
    from nfd.master.config import MAX_CONFIG_BYTES

    big = tmp_path / "nfd-master.conf"
    big.write_text("# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match="larger than 1048576 bytes"):
        load_master_config(str(big), must_exist=True)


def test_a_fifo_as_config_is_refused_without_blocking(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "nfd-master.conf"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_master_config(str(fifo), must_exist=True)


def test_dev_null_as_config_is_the_defaults() -> None:
    import os

    assert load_master_config(os.devnull, must_exist=True) == load_master_config(
        "/nonexistent/nfd-master.conf"
    )
