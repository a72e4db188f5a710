"""storage source: ``storage.block`` instances and ``storage-nonrotationaldisk``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from nfd.features import Features
from nfd.hostfs import HostFS
from nfd.sources.base import Source, SourceContext
from nfd.sources.pci import list_required_dir

BLOCK_DIR = "sys/block"
BLOCK_FEATURE = "storage.block"

# Files under sys/block/<dev>/queue/ kept as attributes of the same name.
QUEUE_ATTRS = ("dax", "rotational", "nr_zones", "zoned")


def read_block_device(host: HostFS, name: str) -> dict[str, str]:
    attrs = {"name": name}
    for attr in QUEUE_ATTRS:
        value = host.read_attr(f"{BLOCK_DIR}/{name}/queue/{attr}")
        if value is not None:
            attrs[attr] = value
    return attrs


def storage_labels(devices: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """``nonrotationaldisk`` when any block device says it does not rotate."""
    if any(attrs.get("rotational") == "0" for attrs in devices):
        return {"nonrotationaldisk": "true"}
    return {}


class StorageSource(Source):
    name = "storage"

    def discover(self, ctx: SourceContext) -> Features:
        features = Features()
        devices = [
            read_block_device(ctx.host, name) for name in list_required_dir(ctx.host, BLOCK_DIR)
        ]
        features.add_instances(BLOCK_FEATURE, devices)
        return features

    def labels(self, features: Features, ctx: SourceContext) -> dict[str, str]:
        return storage_labels(features.instances.get(BLOCK_FEATURE, []))


SOURCE = StorageSource()
