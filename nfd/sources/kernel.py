"""kernel source: version, kconfig, loaded and built-in modules, SELinux, KVM.

Unlike upstream, ``proc/sys/kernel/osrelease``, ``proc/modules``,
``proc/config.gz`` and ``lib/modules/<kver>/build/.config`` are read under
the host prefix too, so a captured tree describes one host completely. The
``kconfigFile`` option is a path as the worker sees it (not prefixed), as
upstream reads it.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Iterable
from typing import Any

from nfd.features import Features
from nfd.hostfs import HostFS
from nfd.sources.base import Source, SourceContext

log = logging.getLogger(__name__)

DEFAULT_CONFIG_OPTS = ("NO_HZ", "NO_HZ_IDLE", "NO_HZ_FULL", "PREEMPT")

# A kernel .config is ~300 KiB; these caps keep an odd file from costing much.
KCONFIG_READ_LIMIT = 8 << 20
KCONFIG_GUNZIP_LIMIT = 16 << 20
MODULES_READ_LIMIT = 4 << 20

# A kernel release (``6.8.0-31-generic``): characters kept in ``full``, and its
# leading ``major[.minor[.revision]]`` followed by nothing or ``-...``.
_NOT_VERSION_CHAR = re.compile(r"[^-A-Za-z0-9_.]")
_VERSION = re.compile(r"(\d+)(\.(\d+))?(\.(\d+))?(-.*)?$")
# A set option of a kernel .config: a line ``CONFIG_NAME=value``, searched for
# with its leading "\n" (a literal prefix re finds fast; "^" in MULTILINE mode
# would try every position of a ~300 KiB file). And the characters besides "\n"
# where str.splitlines also ends a line.
_KCONFIG_OPTION = re.compile(r"\nCONFIG_([^=\n]*)=([^\n]*)")
_OTHER_LINE_BREAKS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


# -- pure parsers -------------------------------------------------------------


def parse_osrelease_version(text: str) -> dict[str, str]:
    """``kernel.version`` from osrelease text, sanitised as upstream.

    ``full`` has characters outside ``[-A-Za-z0-9_.]`` replaced by ``_`` and
    leading/trailing ``-_.`` trimmed; major/minor/revision come from ``full``
    and are empty strings when absent (``6.8`` has revision ``""``). When
    ``full`` does not start like a version, only ``full`` is returned.
    """
    full = _NOT_VERSION_CHAR.sub("_", text.strip()).strip("-_.")
    version = {"full": full}
    match = _VERSION.match(full)
    if match:
        version.update(major=match[1], minor=match[3] or "", revision=match[5] or "")
    return version


def parse_kconfig(text: str) -> dict[str, str]:
    """Set options of a kernel .config: ``{"NO_HZ": "y", "LSM": "apparmor,..."}``.

    Lines must start with ``CONFIG_`` and contain ``=``; surrounding ``"`` are
    stripped from values. ``# CONFIG_X is not set`` lines are ignored.
    """
    if any(brk in text for brk in _OTHER_LINE_BREAKS):  # lines as str.splitlines cuts them
        text = "\n".join(text.splitlines())
    return {name: value.strip('"') for name, value in _KCONFIG_OPTION.findall("\n" + text)}


def legacy_kconfig_value(value: str) -> str:
    """The value of a ``config.<OPT>`` label: ``y`` and ``m`` become ``true``."""
    return "true" if value in ("y", "m") else value


def parse_modules(text: str) -> list[str]:
    """Module names from /proc/modules text (first field of each line)."""
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def parse_modules_builtin(text: str) -> list[str]:
    """Module names from modules.builtin (``kernel/fs/ext4/ext4.ko`` -> ``ext4``)."""
    modules = []
    for line in text.splitlines():
        line = line.strip()
        if line.endswith(".ko"):
            modules.append(line.rpartition("/")[2][: -len(".ko")])
    return modules


def gunzip(data: bytes, limit: int = KCONFIG_GUNZIP_LIMIT) -> bytes:
    """Decompress gzip data, at most ``limit`` bytes of output (zlib.error if bad)."""
    return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(data, limit)


def kconfig_search_paths(kernel_version: str | None) -> list[str]:
    """Host-relative kconfig locations in upstream's order (kubeadm's list)."""
    if not kernel_version:
        return ["proc/config.gz", "usr/src/linux/.config"]
    kver = kernel_version
    return [
        "proc/config.gz",
        f"usr/src/linux-{kver}/.config",
        f"usr/src/linux-rt-{kver}/.config",
        "usr/src/linux/.config",
        f"usr/lib/modules/{kver}/config",
        f"usr/lib/ostree-boot/config-{kver}",
        f"usr/lib/kernel/config-{kver}",
        f"usr/src/linux-headers-{kver}/.config",
        f"lib/modules/{kver}/build/.config",
        f"usr/src/linux-rt-headers-{kver}/.config",
        f"boot/config-{kver}",
    ]


# -- reading the host ---------------------------------------------------------


def _read_kconfig_file(host: HostFS, rel: str) -> str | None:
    data = host.read_bytes(rel, limit=KCONFIG_READ_LIMIT)
    if data is None:
        return None
    if rel.endswith(".gz"):
        try:
            data = gunzip(data)
        except zlib.error as err:
            log.debug("kernel: %s is not valid gzip: %s", host.path(rel), err)
            return None
    return data.decode("utf-8", errors="replace")


def read_kconfig(host: HostFS, kconfig_file: str, kernel_version: str | None) -> str | None:
    """Text of the first readable kconfig: ``kconfigFile`` first, then the search list."""
    if kconfig_file:
        text = _read_kconfig_file(HostFS("/"), kconfig_file)
        if text is not None:
            return text
    for rel in kconfig_search_paths(kernel_version):
        text = _read_kconfig_file(host, rel)
        if text is not None:
            return text
    log.debug("kernel: no kernel config found under %s", host.prefix)
    return None


def detect_selinux(host: HostFS) -> bool | None:
    """SELinux enforcing; None when undeterminable (no sys/fs, unreadable enforce)."""
    if not host.exists("sys/fs"):
        return None
    if not host.exists("sys/fs/selinux"):
        return False
    enforce = host.read_bytes("sys/fs/selinux/enforce", limit=1)
    if enforce is None:
        # As upstream: a missing enforce file means not enforcing; an
        # unreadable one tells nothing.
        return None if host.exists("sys/fs/selinux/enforce") else False
    return enforce == b"1"


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _module_features(host: HostFS, kernel_version: str | None) -> Features:
    """``kernel.loadedmodule`` and ``kernel.enabledmodule`` as upstream builds them.

    enabledmodule (loaded + built-in) exists only when modules.builtin is
    readable; a missing /proc/modules leaves it with the built-ins alone.
    """
    features = Features()
    enabled: list[str] = []
    modules_text = host.read_text("proc/modules", limit=MODULES_READ_LIMIT)
    if modules_text is not None:
        loaded = parse_modules(modules_text)
        features.add_flags("kernel.loadedmodule", loaded)
        enabled.extend(loaded)
    builtin_text = None
    if kernel_version:
        rel = f"lib/modules/{kernel_version}/modules.builtin"
        builtin_text = host.read_text(rel, limit=MODULES_READ_LIMIT)
    if builtin_text is not None:
        enabled.extend(parse_modules_builtin(builtin_text))
        features.add_flags("kernel.enabledmodule", enabled)
    return features


def _config_opts(config: Any) -> Iterable[str]:
    opts = config.get("configOpts")
    return DEFAULT_CONFIG_OPTS if opts is None else [str(o) for o in opts]


class KernelSource(Source):
    name = "kernel"

    def default_config(self) -> dict[str, Any]:
        return {"kconfigFile": "", "configOpts": list(DEFAULT_CONFIG_OPTS)}

    def discover(self, ctx: SourceContext) -> Features:
        host, features = ctx.host, Features()
        osrelease = host.read_text("proc/sys/kernel/osrelease")
        kernel_version = osrelease.strip() if osrelease is not None else None
        if kernel_version is not None:
            features.add_attributes("kernel.version", parse_osrelease_version(kernel_version))
        kconfig_file = str(ctx.config.get("kconfigFile") or "")
        kconfig = read_kconfig(host, kconfig_file, kernel_version)
        if kconfig is not None:
            features.add_attributes("kernel.config", parse_kconfig(kconfig))
        features.merge(_module_features(host, kernel_version))
        selinux = detect_selinux(host)
        if selinux is not None:
            features.add_attributes("kernel.selinux", {"enabled": _bool(selinux)})
        kvm = host.exists("sys/devices/virtual/misc/kvm")
        features.add_attributes("kernel.kvm", {"enabled": _bool(kvm)})
        return features

    def labels(self, features: Features, ctx: SourceContext) -> dict[str, str]:
        labels = {
            f"version.{key}": value
            for key, value in features.attributes.get("kernel.version", {}).items()
        }
        kconfig = features.attributes.get("kernel.config", {})
        for opt in _config_opts(ctx.config):
            if opt in kconfig:
                labels[f"config.{opt}"] = legacy_kconfig_value(kconfig[opt])
        if features.attributes.get("kernel.selinux", {}).get("enabled") == "true":
            labels["selinux.enabled"] = "true"
        return labels


SOURCE = KernelSource()
