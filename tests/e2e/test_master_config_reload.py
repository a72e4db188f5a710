"""nfd-master.conf is watched: a real master changes its label policy on the real
control plane without a restart, and a broken file leaves the old policy in force."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.master_harness import FNK, Harness, make_harness, register
from tests.kube.controlplane import ControlPlane, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def harness(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Harness]:
    yield from make_harness(control_plane, tmp_path)


def test_policy_follows_config_file_without_restart(harness: Harness, tmp_path: Path) -> None:
    node = register(harness, "cfg")
    conf = tmp_path / "conf" / "nfd-master.conf"
    conf.parent.mkdir()
    conf.write_text("denyLabelNs: []\nklog: {v: 2}\n")
    master, port = harness.master(f"--config={conf}")
    pid = master.popen.pid
    fdir = tmp_path / "features"
    fdir.mkdir()
    (fdir / "e2e").write_text("e2e-a=1\nvendor.io/x=2\n")
    harness.worker(node, "cpu-only", f"127.0.0.1:{port}", fdir)
    harness.wait_labels(
        node, lambda lb: lb.get("vendor.io/x") == "2" and f"{FNK}/e2e-a" in lb, "labels"
    )

    # Deny vendor.io in the file: the master drops the label, no restart, no resend needed.
    conf.write_text("denyLabelNs: [vendor.io]\n")
    labels = harness.wait_labels(node, lambda lb: "vendor.io/x" not in lb, "deny vendor.io")
    assert labels[f"{FNK}/e2e-a"] == "1"
    wait_until(lambda: "reloaded" in master.text(), 10, "reload logged")

    # A broken file: rejected with file and line, the deny stays in force.
    conf.write_text("denyLabelNs: [vendor.io]\nlabelWhiteList: '(unclosed'\n")
    wait_until(lambda: "config reload rejected" in master.text(), 10, "rejection logged")
    assert f"keeping the previous config: {conf}:2: labelWhiteList" in master.text()
    (fdir / "e2e").write_text("e2e-a=1\ne2e-b=1\nvendor.io/x=2\n")
    labels = harness.wait_labels(node, lambda lb: f"{FNK}/e2e-b" in lb, "new worker label")
    assert "vendor.io/x" not in labels

    # A whitelist: only names matching it stay; fixed again, the file is taken over.
    conf.write_text("denyLabelNs: [vendor.io]\nlabelWhiteList: '^e2e-a$'\n")
    labels = harness.wait_labels(node, lambda lb: f"{FNK}/e2e-b" not in lb, "whitelist")
    assert labels[f"{FNK}/e2e-a"] == "1"
    assert not any(k.startswith(f"{FNK}/system-") for k in labels)

    # Dropping the restrictions brings everything back.
    conf.write_text("# defaults\n")
    harness.wait_labels(
        node,
        lambda lb: lb.get("vendor.io/x") == "2" and f"{FNK}/e2e-b" in lb,
        "labels back",
    )
    # One master process did it all.
    assert master.alive() and master.popen.pid == pid
    assert "needs a restart" not in master.text()


def test_flag_wins_over_file_and_restart_only_options_say_so(
    harness: Harness, tmp_path: Path
) -> None:
    node = register(harness, "cfgflag")
    conf = tmp_path / "nfd-master.conf"
    conf.write_text("denyLabelNs: [vendor.io]\n")
    # The flag given on the command line wins over the file, also after a reload.
    master, port = harness.master(f"-config={conf}", "--deny-label-ns=other.io")
    fdir = tmp_path / "features"
    fdir.mkdir()
    (fdir / "e2e").write_text("vendor.io/x=2\nother.io/y=3\n")
    harness.worker(node, "cpu-only", f"127.0.0.1:{port}", fdir)
    labels = harness.wait_labels(node, lambda lb: "vendor.io/x" in lb, "labels")
    assert "other.io/y" not in labels
    conf.write_text("denyLabelNs: [vendor.io]\nnfdApiParallelism: 3\n")
    wait_until(lambda: "needs a restart" in master.text(), 10, "restart notice")
    assert "nfdApiParallelism changed: needs a restart" in master.text()
    assert "other.io/y" not in harness.node_labels(node)
    assert "vendor.io/x" in harness.node_labels(node)
