"""nfd-worker as a real process: JSON lines on stdout that follow real events.

The worker runs with ``--no-publish`` against the real host (HostFS "/") with
the label sources limited to the ones under test, and with the safety-net
timer off (``core.sleepInterval: 0``), so every reaction seen here was caused
by an event.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.kube.controlplane import free_port
from tests.worker.harness import (
    REPO_ROOT,
    WorkerProcess,
    add_veth,
    delete_link,
    running_worker,
    write_atomically,
)

# Generous for a loaded CI machine; bench/bench_events.py measures the real latency.
REACTION_TIMEOUT = 3.0
NO_TIMER = "{core: {sleepInterval: 0}}"


def worker_args(config: Path, *extra: str) -> list[str]:
    return ["--no-publish", "--metrics", "0", "--config", str(config), *extra]


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "nfd-worker.conf"
    path.write_text("core:\n  sleepInterval: 0s\n")
    return path


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from nfd.cli.worker import console_main; console_main()"]
    return subprocess.run(
        command + list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        env={**os.environ, "NODE_NAME": "nfd-test-node"},
    )


# -- feature files (the local source) --------------------------------------------------


def test_feature_files_written_changed_and_deleted(tmp_path: Path, config_file: Path) -> None:
    features = tmp_path / "features.d"
    features.mkdir()
    (features / "static").write_text("vendor.example/static=1\n")
    args = worker_args(
        config_file,
        "--feature-sources",
        "local",
        "--label-sources",
        "local",
        "--features-dir",
        str(features),
    )
    with running_worker(args) as worker:
        first = worker.wait_first()
        assert first.labels == {"vendor.example/static": "1"}

        (features / "gpu").write_text("vendor.example/gpu-ready=true\n")
        worker.wait_for(
            lambda labels: labels.get("vendor.example/gpu-ready") == "true",
            REACTION_TIMEOUT,
            what="the new file's label",
        )
        write_atomically(features / "gpu", "vendor.example/gpu-ready=false\n")
        worker.wait_for(
            lambda labels: labels.get("vendor.example/gpu-ready") == "false",
            REACTION_TIMEOUT,
            what="the changed value",
        )
        (features / "gpu").unlink()
        line = worker.wait_for(
            lambda labels: "vendor.example/gpu-ready" not in labels,
            REACTION_TIMEOUT,
            what="the label gone with its file",
        )
        assert line.labels == {"vendor.example/static": "1"}
        assert worker.stop() == 0
    assert not worker.bad_lines


def test_feature_directory_created_after_start(tmp_path: Path, config_file: Path) -> None:
    features = tmp_path / "not-yet" / "features.d"
    args = worker_args(
        config_file,
        "--feature-sources",
        "local",
        "--label-sources",
        "local",
        "--features-dir",
        str(features),
    )
    with running_worker(args) as worker:
        assert worker.wait_first().labels == {}
        features.mkdir(parents=True)
        write_atomically(features / "late", "vendor.example/late=yes\n")
        worker.wait_for(
            lambda labels: labels == {"vendor.example/late": "yes"},
            REACTION_TIMEOUT,
            what="the label from a directory created later",
        )
        assert worker.stop() == 0


def test_a_burst_of_file_changes_gives_few_updates(tmp_path: Path, config_file: Path) -> None:
    features = tmp_path / "features.d"
    features.mkdir()
    args = worker_args(
        config_file,
        "--feature-sources",
        "local",
        "--label-sources",
        "local",
        "--features-dir",
        str(features),
    )
    with running_worker(args) as worker:
        worker.wait_first()
        for n in range(50):
            (features / f"f{n}").write_text(f"vendor.example/f{n}=1\n")
        worker.wait_for(lambda labels: len(labels) == 50, REACTION_TIMEOUT, what="50 labels")
        time.sleep(0.5)
        # Debounced: the 50 writes gave a handful of label sets, not 50.
        assert worker.count() <= 6
        assert worker.stop() == 0


def test_custom_rule_files_follow(tmp_path: Path, config_file: Path) -> None:
    rules = tmp_path / "custom.d"
    rules.mkdir()
    rule = [
        {
            "name": "node has a name",
            "labels": {"nfd-test.example/named": "yes"},
            "matchFeatures": [
                {"feature": "system.name", "matchExpressions": {"nodename": {"op": "Exists"}}}
            ],
        }
    ]
    args = worker_args(
        config_file,
        "--feature-sources",
        "system",
        "--label-sources",
        "custom",
        "--rules-dir",
        str(rules),
    )
    with running_worker(args) as worker:
        assert worker.wait_first().labels == {}
        (rules / "team-a").mkdir()
        write_atomically(rules / "team-a" / "rules.yaml", yaml.safe_dump(rule))
        worker.wait_for(
            lambda labels: labels == {"nfd-test.example/named": "yes"},
            REACTION_TIMEOUT,
            what="the label of a new rule file in a custom.d sub-directory",
        )
        (rules / "team-a" / "rules.yaml").unlink()
        worker.wait_for(
            lambda labels: labels == {}, REACTION_TIMEOUT, what="the label gone with its rule"
        )
        assert worker.stop() == 0


# -- devices (uevents) ------------------------------------------------------------------


def test_veth_pair_changes_network_features_and_a_custom_label(
    tmp_path: Path, veth_pair: tuple[str, str]
) -> None:
    name, peer = veth_pair
    config = tmp_path / "nfd-worker.conf"
    rule = {
        "name": "test veth",
        "labels": {"nfd-test.example/veth": "present"},
        "matchFeatures": [
            {
                "feature": "network.virtual",
                "matchExpressions": {"name": {"op": "In", "value": [name]}},
            }
        ],
    }
    config.write_text(
        yaml.safe_dump({"core": {"sleepInterval": "0s"}, "sources": {"custom": [rule]}})
    )
    args = worker_args(config, "--feature-sources", "network", "--label-sources", "custom")
    with running_worker(args) as worker:
        assert "nfd-test.example/veth" not in worker.wait_first().labels
        add_veth(name, peer)
        worker.wait_for(
            lambda labels: labels.get("nfd-test.example/veth") == "present",
            REACTION_TIMEOUT,
            what="the custom label for the new veth",
        )
        # `nfd export features` sees the same interface.
        export = subprocess.run(
            [
                sys.executable,
                "-c",
                "from nfd.cli.nfd import console_main; console_main()",
                "export",
                "features",
                "--feature-sources",
                "network",
                "--config",
                str(config),
            ],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=60,
        )
        assert export.returncode == 0, export.stderr
        virtual = json.loads(export.stdout)["instances"]["network.virtual"]["elements"]
        assert {name, peer} <= {e["attributes"]["name"] for e in virtual}

        delete_link(name)
        worker.wait_for(
            lambda labels: "nfd-test.example/veth" not in labels,
            REACTION_TIMEOUT,
            what="the custom label gone with the veth",
        )
        assert worker.stop() == 0


# -- config ------------------------------------------------------------------------------


def test_config_change_applied_and_broken_config_rejected(tmp_path: Path) -> None:
    config = tmp_path / "nfd-worker.conf"
    config.write_text("core:\n  sleepInterval: 0s\n  labelSources: [system]\n")
    with running_worker(worker_args(config, "--feature-sources", "system")) as worker:
        first = worker.wait_first().labels
        assert "feature.node.kubernetes.io/system-os_release.ID" in first
        assert len(first) > 1

        write_atomically(
            config,
            "core:\n  sleepInterval: 0s\n  labelSources: [system]\n"
            "  labelWhiteList: '^system-os_release.ID$'\n",
        )
        only_id = worker.wait_for(
            lambda labels: list(labels) == ["feature.node.kubernetes.io/system-os_release.ID"],
            REACTION_TIMEOUT,
            what="the whitelist from the edited config",
        )
        count = worker.count()

        # Broken YAML: rejected with the file and line, the old config stays.
        config.write_text("core:\n  labelSources: [system\n  sleepInterval: 0s\n")
        deadline = time.monotonic() + REACTION_TIMEOUT
        while "config reload rejected" not in worker.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        stderr = worker.stderr()
        assert "config reload rejected, keeping the previous config" in stderr
        assert f"{config}:" in stderr and "invalid YAML" in stderr
        assert worker.proc.poll() is None, "a broken config must not stop the worker"
        assert worker.count() == count and worker.latest == only_id.labels

        # Fixed again: applied, every system label is back.
        config.write_text("core:\n  sleepInterval: 0s\n  labelSources: [system]\n")
        worker.wait_for(
            lambda labels: labels == first, REACTION_TIMEOUT, what="the labels without whitelist"
        )
        assert worker.stop() == 0


def test_options_overlay_the_config_file(config_file: Path) -> None:
    proc = run_cli(
        "--oneshot",
        "--no-publish",
        "--config",
        str(config_file),
        "--label-sources",
        "system",
        "--options",
        "{core: {labelWhiteList: '^system-os_release.ID$'}}",
    )
    assert proc.returncode == 0, proc.stderr
    assert list(json.loads(proc.stdout)) == ["feature.node.kubernetes.io/system-os_release.ID"]


def test_go_style_single_dash_flags(config_file: Path) -> None:
    proc = run_cli(
        "-oneshot",
        "-no-publish",
        f"-config={config_file}",
        "-label-sources=system",
        "-label-whitelist",
        "^system-os_release.ID$",
    )
    assert proc.returncode == 0, proc.stderr
    assert list(json.loads(proc.stdout)) == ["feature.node.kubernetes.io/system-os_release.ID"]


@pytest.mark.parametrize(
    "options, message",
    [
        ("{core: [", "--options: invalid YAML"),
        ("[1, 2]", "--options: expected a mapping"),
        ("{core: {sleepInterval: soon}}", "core.sleepInterval"),
    ],
)
def test_bad_options_are_a_clear_error(config_file: Path, options: str, message: str) -> None:
    proc = run_cli("--oneshot", "--no-publish", "--config", str(config_file), "--options", options)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stdout == ""


def test_tls_files_must_come_together(config_file: Path) -> None:
    proc = run_cli("--oneshot", "--config", str(config_file), "--ca-file", "/tmp/ca.pem")
    assert proc.returncode == 2
    assert "--ca-file, --cert-file and --key-file must be given together" in proc.stderr


# -- process life -------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_give_a_clean_exit(config_file: Path, signum: signal.Signals) -> None:
    worker = WorkerProcess(worker_args(config_file, "--label-sources", "system"))
    try:
        worker.wait_first()
        worker.proc.send_signal(signum)
        assert worker.proc.wait(10) == 0
        assert f"{signum.name} received, exiting" in worker.stderr()
        assert "Traceback" not in worker.stderr()
    finally:
        worker.close()


def test_metrics_and_healthz(config_file: Path) -> None:
    port = free_port()
    args = ["--no-publish", "--metrics", str(port), "--config", str(config_file)]
    with running_worker([*args, "--label-sources", "system"]) as worker:
        first = worker.wait_first()
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
            text = response.read().decode()
        assert 'nfd_worker_build_info{version="' in text
        assert (
            'nfd_worker_feature_discovery_duration_seconds_count{node="nfd-test-node"} 1.0' in text
        )
        assert 'nfd_worker_rediscoveries_total{trigger="initial"} 1.0' in text
        assert f'nfd_worker_labels{{node="nfd-test-node"}} {float(len(first.labels))}' in text
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/nothing", timeout=5)
        assert err.value.code == 404
        assert worker.stop() == 0


def test_metrics_port_in_use_is_a_clear_error(config_file: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_cli("--no-publish", "--config", str(config_file), "--metrics", str(port))
    assert proc.returncode == 2
    assert f"--metrics {port}: cannot listen" in proc.stderr
