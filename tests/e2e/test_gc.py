"""nfd-gc (the command upstream's nfd-gc Deployment runs) against the real control plane: at
start it deletes the NodeFeature objects whose Node is gone or that name none, keeps the
others, deletes a Node's objects when the Node is deleted, and serves /healthz and
upstream's nfd_gc_* metrics on -port."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.master_harness import REPO, unique
from tests.e2e.test_master_nodefeatures import (
    create,
    exists,
    install_nf_crd,
    nodefeature,
)
from tests.kube.controlplane import ControlPlane, free_port, wait_until


@pytest.fixture
def gc_plane(control_plane: ControlPlane) -> ControlPlane:
    install_nf_crd(control_plane)
    return control_plane


def start_gc(plane: ControlPlane, tmp_path: Path, *args: str) -> Iterator[tuple[int, Path]]:
    port = free_port()
    log = tmp_path / "nfd-gc.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nfd.cli.gc",
                f"-kubeconfig={plane.kubeconfig}",
                f"-port={port}",
                "-logtostderr",
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        yield port, log
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return str(resp.read().decode())


def test_nfd_gc_deletes_the_objects_of_missing_nodes(
    gc_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    plane = gc_plane
    alive, doomed = unique("gc-alive"), unique("gc-doomed")
    plane.register_node(alive)
    plane.register_node(doomed)
    gone = unique("gc-gone")
    try:
        create(plane, nodefeature(namespace, alive, alive, {"a": "1"}))
        create(plane, nodefeature(namespace, f"{alive}-vendor", alive, {"b": "1"}))
        create(plane, nodefeature(namespace, doomed, doomed, {"c": "1"}))
        create(plane, nodefeature(namespace, gone, gone, {"d": "1"}))
        create(plane, nodefeature(namespace, "no-node-label", None, {"e": "1"}))
        runner = start_gc(plane, tmp_path, "-gc-interval=1h")
        port, log = next(runner)
        try:
            # The pass at start: the objects of no Node go, the others stay.
            wait_until(lambda: not exists(plane, namespace, gone), 30, "stale NodeFeature gone")
            wait_until(
                lambda: not exists(plane, namespace, "no-node-label"), 10, "unlabelled one gone"
            )
            assert exists(plane, namespace, alive)
            assert exists(plane, namespace, f"{alive}-vendor")
            assert exists(plane, namespace, doomed)
            assert get(port, "/healthz").strip() == "ok"

            # A Node's deletion: its objects go without waiting for the next pass (1h).
            plane.delete_node(doomed)
            wait_until(lambda: not exists(plane, namespace, doomed), 15, "deleted Node's object")
            assert exists(plane, namespace, alive)

            # Counted once the delete call has returned, a moment after the object is gone;
            # every deletion it logged is counted (at least the three above).
            series = 'nfd_gc_objects_deleted_total{kind="NodeFeature"} '

            def counted() -> str | None:
                text = get(port, "/metrics")
                value = next(
                    (float(line[len(series) :]) for line in text.splitlines()
                     if line.startswith(series)),
                    0.0,
                )  # fmt: skip
                logged = log.read_text().count("deleted: its Node is gone")
                return text if value == logged >= 3 else None

            metrics = wait_until(counted, 10, "the deletions counted as logged")
            assert "nfd_gc_build_info{" in metrics
        finally:
            next(runner, None)
        text = log.read_text()
        assert f"NodeFeature {namespace}/{gone} deleted" in text, text
    finally:
        plane.delete_node(alive)


def test_nfd_gc_refuses_a_bad_interval() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nfd.cli.gc", "-gc-interval=soon"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=30,
    )
    assert result.returncode == 2
    assert "-gc-interval" in result.stderr and "soon" in result.stderr
