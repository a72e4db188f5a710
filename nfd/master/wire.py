"""Conversions between nfd.features.Features and the v1alpha1.Features protobuf.

Used by the master and by the worker's publisher; imports no Kubernetes client.
"""

from __future__ import annotations

from nfd._proto import v1alpha1_pb2
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
