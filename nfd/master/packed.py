"""Nodes' kept features, each feature set compressed and stored once per master.

The master keeps every node's last input to evaluate rules, policy and groups again
and for ``explain``. Nodes of one hardware type and kernel send the same feature sets
(kernel.config, cpu.cpuid, pci.device, ...) and the same labels: split into one part
per feature set, identical parts are one object however many nodes hold them, and a
part lives as long as some node holds it (weak references, no bookkeeping).
"""

from __future__ import annotations

import hashlib
import threading
import weakref
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nfd._proto import labeler_pb2, v1alpha1_pb2

# zlib level 1: most of the ratio of level 6 at a fraction of the time (kernel.config).
_LEVEL = 1


class Part:
    """One compressed, serialized piece of a message; never changed once made."""

    __slots__ = ("data", "__weakref__")

    def __init__(self, data: bytes) -> None:
        self.data = data


class SharedLabels(dict[str, str]):
    """A label mapping held by every node that has these labels: never changed once made."""

    __slots__ = ("__weakref__",)


class PartStore:
    """Parts by the digest of their serialized bytes; label mappings by their items."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: weakref.WeakValueDictionary[bytes, Part] = weakref.WeakValueDictionary()
        self._labels: weakref.WeakValueDictionary[bytes, SharedLabels] = (
            weakref.WeakValueDictionary()
        )

    def __len__(self) -> int:
        return len(self._parts)

    def labels(self, labels: Mapping[str, str]) -> SharedLabels:
        h = hashlib.blake2b(digest_size=16)
        for k, v in sorted(labels.items()):
            h.update(f"{k}\0{v}\1".encode())
        key = h.digest()
        with self._lock:
            found = self._labels.get(key)
            if found is None:
                found = self._labels[key] = SharedLabels(labels)
            return found

    def part(self, raw: bytes) -> Part:
        return self._part(hashlib.blake2b(raw, digest_size=16).digest(), lambda: raw)

    def _part(self, key: bytes, serialize: Callable[[], bytes]) -> Part:
        with self._lock:
            found = self._parts.get(key)
        if found is not None:
            return found
        made = Part(zlib.compress(serialize(), _LEVEL))  # outside the lock: the slow part
        with self._lock:
            return self._parts.setdefault(key, made)

    def pack_features(self, features: v1alpha1_pb2.Features) -> tuple[Part, ...]:
        """One part per flag, attribute and instance feature set."""
        parts = []
        for kind in ("flags", "vattributes", "instances"):  # upstream's field names
            for name, value in getattr(features, kind).items():
                # Keyed by the set alone: wrapping it in a Features costs a copy, paid
                # only by the first node that sends it.
                h = hashlib.blake2b(f"{kind}\0{name}\0".encode(), digest_size=16)
                h.update(value.SerializeToString(deterministic=True))

                def wrapped(kind: str = kind, name: str = name, value: Any = value) -> bytes:
                    one = v1alpha1_pb2.Features()
                    getattr(one, kind)[name].CopyFrom(value)
                    return one.SerializeToString(deterministic=True)

                parts.append(self._part(h.digest(), wrapped))
        return tuple(parts)

    def pack_request(self, req: labeler_pb2.SetLabelsRequest) -> PackedRequest:
        """``req``'s labels and features (not its node name: the caller keys by it)."""
        labels = self.part(
            labeler_pb2.SetLabelsRequest(labels=req.labels).SerializeToString(deterministic=True)
        )
        features = self.pack_features(req.features) if req.HasField("features") else None
        return PackedRequest(labels, features)


def unpack_features(parts: Iterable[Part]) -> v1alpha1_pb2.Features:
    # Serialized messages concatenated parse as the messages merged: maps by key.
    return v1alpha1_pb2.Features.FromString(b"".join(zlib.decompress(p.data) for p in parts))


@dataclass(frozen=True, slots=True)
class PackedRequest:
    """A worker's SetLabelsRequest as parts; ``features`` None: the request had none."""

    labels: Part
    features: tuple[Part, ...] | None

    @property
    def size(self) -> int:
        """Compressed bytes, counted whole for each node (the per-node state budget)."""
        return len(self.labels.data) + sum(len(p.data) for p in self.features or ())

    def request(self) -> labeler_pb2.SetLabelsRequest:
        req = labeler_pb2.SetLabelsRequest.FromString(zlib.decompress(self.labels.data))
        if self.features is not None:
            req.features.CopyFrom(unpack_features(self.features))
        return req


# One store per process: the gRPC path and the NodeFeature path share parts too.
PARTS = PartStore()
