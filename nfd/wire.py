"""Conversions between nfd.features.Features and the v1alpha1.Features protobuf.

Below both the master and the worker's publisher, which share it; imports no Kubernetes client.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from nfd._proto import labeler_pb2, v1alpha1_pb2
from nfd.features import Features

# Limits the master enforces on every request (also documented in protos/).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_LABELS = 10_000


def features_to_proto(features: Features) -> v1alpha1_pb2.Features:
    msg = v1alpha1_pb2.Features()
    for name, flags in features.flags.items():
        elements = msg.flags[name].elements
        for flag in flags:
            elements[flag].SetInParent()
    for name, attrs in features.attributes.items():
        msg.vattributes[name].elements.update(attrs)
    for name, instances in features.instances.items():
        fs = msg.instances[name]
        for inst in instances:
            fs.elements.add().attributes.update(inst)
    return msg


def features_from_proto(msg: v1alpha1_pb2.Features) -> Features:
    out = Features()
    for name, fs in msg.flags.items():
        out.flags[name] = set(fs.elements.keys())
    for name, afs in msg.vattributes.items():
        out.attributes[name] = dict(afs.elements)
    for name, ifs in msg.instances.items():
        out.instances[name] = [dict(i.attributes) for i in ifs.elements]
    return out


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise DecodeError("truncated varint")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise DecodeError("varint too long")


def drop_field(data: bytes, number: int) -> bytes:
    """``data`` (a serialized message) without the top-level field ``number``."""
    out = bytearray()
    pos = 0
    while pos < len(data):
        start = pos
        tag, pos = _varint(data, pos)
        wire = tag & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            pos += size
        elif wire == 5:
            pos += 4
        else:
            raise DecodeError(f"unsupported wire type {wire}")
        if pos > len(data):
            raise DecodeError("truncated field")
        if tag >> 3 != number:
            out += data[start:pos]
    return bytes(out)


def parse_set_labels_request(data: bytes) -> labeler_pb2.SetLabelsRequest:
    """SetLabelsRequest from any upstream worker v0.6-v0.16. v0.10/v0.11 sent field 4 as
    ``map<string, feature.DomainFeatures>``, which does not parse as v1alpha1.Features:
    such a request keeps its labels and loses only the raw features."""
    try:
        return labeler_pb2.SetLabelsRequest.FromString(data)
    except DecodeError:
        return labeler_pb2.SetLabelsRequest.FromString(drop_field(data, 4))
