"""Where the tests' fixture data lives: tests/fixtures, inside the repository.

``procfs/`` and ``nfd-upstream/`` are byte-exact copies of upstream test data
(origin and licence in tests/fixtures/README.md); the other trees are ours.
"""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# prometheus/procfs' /sys + /proc tree, as a host prefix.
PROCFS = FIXTURES / "procfs" / "fixtures"
# kubernetes-sigs/node-feature-discovery's own test data, at upstream's paths.
NFD_UPSTREAM = FIXTURES / "nfd-upstream"
PCI_ROOTFS_1 = NFD_UPSTREAM / "testdata" / "source" / "pci" / "rootfs-1"
UPSTREAM_E2E_DATA = NFD_UPSTREAM / "test" / "e2e" / "data"
