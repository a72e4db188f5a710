"""Golden files: the complete ``nfd export labels|features`` output for each fixture tree.

Every tree in TREES is exported by the real ``nfd`` command, with a fixed node
name, an explicit (empty) config and the local/custom directories pointed into
the tree, so nothing of the machine running the test leaks in. The outputs are
checked in as ``tests/golden/<tree>/{labels,features}.json``; ``tests/test_golden.py``
compares and shows a unified diff.

Regenerate after an intended change, then review ``git diff tests/golden``:

    .venv/bin/python -m tests.golden regen
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fixture_paths import PCI_ROOTFS_1, PROCFS

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LOCAL_FIXTURES = REPO / "tests" / "fixtures"

# Golden name -> host prefix (a directory; the upstream copies are never written).
TREES: dict[str, Path] = {
    "procfs": PROCFS,
    "pci-rootfs-1": PCI_ROOTFS_1,
    "host-full": LOCAL_FIXTURES / "host-full",
    "cpu-only": LOCAL_FIXTURES / "cpu-only",
    "gpu-consumer": LOCAL_FIXTURES / "gpu-consumer",
    "gpu-datacenter": LOCAL_FIXTURES / "gpu-datacenter",
}
KINDS = ("labels", "features")
NODE_NAME = "golden-node"
# Defaults only: the machine's /etc/kubernetes/node-feature-discovery/nfd-worker.conf
# must not count.
CONFIG = HERE / "nfd-worker.conf"
REGEN_COMMAND = ".venv/bin/python -m tests.golden regen"


def golden_path(tree: str, kind: str) -> Path:
    return HERE / tree / f"{kind}.json"


def export_command(tree: str, kind: str) -> list[str]:
    prefix = TREES[tree]
    nfd_dir = f"{prefix}/etc/kubernetes/node-feature-discovery"
    nfd = Path(sys.executable).parent / "nfd"
    return [
        sys.executable,
        str(nfd),
        "export",
        kind,
        "--host-prefix",
        f"{prefix}/",
        "--config",
        str(CONFIG),
        # Upstream reads these without the host prefix; here they live in the tree.
        "--features-dir",
        f"{nfd_dir}/features.d",
        "--hooks-dir",
        f"{nfd_dir}/source.d",
        "--rules-dir",
        f"{nfd_dir}/custom.d",
    ]


def export(tree: str, kind: str) -> subprocess.CompletedProcess:
    """Run ``nfd export <kind>`` on a tree; stdout is the golden text."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NFD_")}
    env["NODE_NAME"] = NODE_NAME
    return subprocess.run(
        export_command(tree, kind),
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def regen(trees: list[str] | None = None) -> int:
    for tree in trees or list(TREES):
        for kind in KINDS:
            proc = export(tree, kind)
            if proc.returncode != 0:
                print(f"{tree} {kind}: nfd export failed:\n{proc.stderr}", file=sys.stderr)
                return 1
            path = golden_path(tree, kind)
            path.parent.mkdir(parents=True, exist_ok=True)
            old = path.read_text() if path.exists() else None
            path.write_text(proc.stdout)
            state = "new" if old is None else ("changed" if old != proc.stdout else "same")
            print(f"{state:8} {path.relative_to(REPO)}")
    return 0
