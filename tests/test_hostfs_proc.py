"""HostFS under upstream v0.19's DaemonSet mounts (prefix /host-: /host-sys, /host-boot and
only /host-proc/swaps of /proc): a proc file missing under the prefix is read from the
container's own /proc, as upstream reads it; a fixture tree never falls back."""

from __future__ import annotations

from pathlib import Path

from nfd.hostfs import HostFS
from nfd.sources import SourceContext
from nfd.sources.kernel import SOURCE as KERNEL


def test_a_mount_layout_prefix_reads_missing_proc_files_from_the_containers_proc(
    tmp_path: Path,
) -> None:
    (tmp_path / "host-proc").mkdir()
    (tmp_path / "host-proc" / "swaps").write_text("Filename Type Size Used Priority\n")
    (tmp_path / "host-sys").mkdir()
    host = HostFS(str(tmp_path / "host-"))
    # Mounted: read under the prefix.
    assert host.read_text("proc/swaps") == "Filename Type Size Used Priority\n"
    # Not mounted: the container's own /proc.
    osrelease = Path("/proc/sys/kernel/osrelease").read_text()
    assert host.read_text("proc/sys/kernel/osrelease") == osrelease
    assert host.path("proc/cpuinfo") == "/proc/cpuinfo"
    # Only proc: a missing sys file stays missing.
    assert host.read_text("sys/kernel/mm/transparent_hugepage/enabled") is None
    # So the kernel source finds the kernel version there.
    features = KERNEL.discover(SourceContext(host=host, config=KERNEL.default_config()))
    major = features.attributes["kernel.version"]["major"]
    assert major == osrelease.split(".")[0]


def test_a_tree_prefix_never_falls_back(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    host = HostFS(str(tmp_path))
    assert host.read_text("proc/sys/kernel/osrelease") is None
    assert host.path("proc/cpuinfo") == f"{tmp_path}/proc/cpuinfo"
