"""Cost of nfd-master's GET /explain/<node> with many nodes loaded (docs/operators.md).

Starts the test control plane (etcd + kube-apiserver) and a real nfd-master, registers
N Nodes, sends each the host-full fixture's labels and raw features over gRPC
(SetLabels, as a worker does), applies a NodeFeatureRule of 20 rules, then reads the
master's RSS and times /explain for random nodes (all labels, and one absent label).
Prints one JSON object. Run under nice: ``nice -n 19 python hack/explain-scale.py 1000``.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402
import psutil  # noqa: E402

from nfd._proto import labeler_pb2, labeler_pb2_grpc  # noqa: E402
from nfd.features import Features  # noqa: E402
from nfd.wire import features_to_proto  # noqa: E402
from tests.e2e.master_harness import Harness, install_nfr_crd, metric_value, metrics_text  # noqa: E402
from tests.kube.controlplane import ControlPlane, wait_until  # noqa: E402

GOLDEN = REPO / "tests" / "golden" / "host-full"


def rules_manifest(count: int = 20) -> str:
    rules = []
    for i in range(count):
        rules.append(
            f"""    - name: scale-{i}
      labels: {{scale-{i}: "true"}}
      matchFeatures:
        - feature: cpu.cpuid
          matchExpressions: {{AVX2: {{op: Exists}}}}
        - feature: kernel.version
          matchExpressions: {{major: {{op: Gt, value: ["{i % 8}"]}}}}"""
        )
    return (
        "apiVersion: nfd.k8s-sigs.io/v1alpha1\nkind: NodeFeatureRule\n"
        "metadata: {name: scale}\nspec:\n  rules:\n" + "\n".join(rules) + "\n"
    )


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def timed(url: str) -> float:
    began = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as resp:
        resp.read()
    return (time.perf_counter() - began) * 1000


def main(count: int) -> None:
    labels = json.loads((GOLDEN / "labels.json").read_text())
    features = features_to_proto(
        Features.from_dict(json.loads((GOLDEN / "features.json").read_text()))
    )
    plane = ControlPlane.start_new()
    tmp = Path(tempfile.mkdtemp(prefix="explain-scale."))
    h = Harness(plane, tmp)
    try:
        install_nfr_crd(plane)
        plane.kubectl("apply", "-f", "-", input=rules_manifest(), check=True)
        names = [f"scale-{i:05d}" for i in range(count)]
        began = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: plane.register_node(n), names))
        registered_s = time.monotonic() - began
        master, port = h.master()
        pid = master.popen.pid
        metrics = master.metrics_port  # type: ignore[attr-defined]
        time.sleep(2)
        idle = rss_mb(pid)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = labeler_pb2_grpc.LabelerStub(channel)

        def send(name: str) -> None:
            req = labeler_pb2.SetLabelsRequest(node_name=name, labels=labels)
            req.features.CopyFrom(features)
            stub.SetLabels(req, timeout=60)

        began = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, names))
        loaded_s = time.monotonic() - began
        wait_until(
            lambda: metric_value(metrics_text(master), "nfd_master_node_states") >= count,
            120,
            "node states",
        )
        time.sleep(3)
        loaded = rss_mb(pid)
        base = f"http://127.0.0.1:{metrics}/explain/"
        doc = json.loads(urllib.request.urlopen(base + names[0], timeout=30).read())
        rng = random.Random(1)
        whole = [timed(base + rng.choice(names)) for _ in range(200)]
        one = [timed(base + rng.choice(names) + "?label=scale-7") for _ in range(200)]
        absent = [timed(base + rng.choice(names) + "?label=never-set") for _ in range(200)]
        after = rss_mb(pid)

        def summary(ms: list[float]) -> dict[str, float]:
            ms = sorted(ms)
            return {
                "p50_ms": round(statistics.median(ms), 1),
                "p99_ms": round(ms[int(len(ms) * 0.99) - 1], 1),
                "max_ms": round(ms[-1], 1),
            }

        print(
            json.dumps(
                {
                    "nodes": count,
                    "labels_per_node": len(doc["labels"]),
                    "rules": doc["rules"],
                    "register_s": round(registered_s, 1),
                    "load_s": round(loaded_s, 1),
                    "rss_idle_mb": round(idle, 1),
                    "rss_loaded_mb": round(loaded, 1),
                    "rss_after_600_explains_mb": round(after, 1),
                    "explain_all_labels": summary(whole),
                    "explain_one_label": summary(one),
                    "explain_absent_label": summary(absent),
                    "response_bytes": len(json.dumps(doc, indent=1)),
                },
                indent=1,
            )
        )
        channel.close()
    finally:
        h.close()
        plane.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
