"""Where the local source's labels came from: a features.d file or a source.d hook.

The worker's local source knows which file or hook set each of its labels; upstream's
features (``local.label``, ``local.feature``) do not say, and must stay as upstream has
them. So the worker sends this beside them, never as a feature: in its gRPC stream's
``Update.local_origins`` (our own protocol; the v0.16 Labeler API is unchanged) and, in
NodeFeature mode, in the annotation ``ANNOTATION`` of its own NodeFeature object (which
upstream's master ignores). nfd-master keeps it per node, bounded, for
``kubectl nfd explain``.

The form: for each label key as the worker publishes it (unprefixed or fully qualified),
the origins that set it in the order they were applied, so the last one's value is the
label's: ``file:NAME`` (NAME relative to features.d/; the worker reads only its top
level, so NAME is a file name) or ``hook:NAME`` (a program in source.d/). Hooks run after
the files, so a hook beats a file; a later file (by name) beats an earlier one.

Bounds, applied by the worker and again by the master (which trusts no worker):
``MAX_SETTERS`` origins per label (the last ones: the winner and what it overrode just
before), names of at most ``MAX_NAME`` characters, at most ``MAX_LABELS`` labels and
``MAX_BYTES`` bytes of encoded text per node; labels past a bound (in name order) are
counted in ``omitted`` and explained as "not recorded". The annotation's JSON::

    {"labels":{"my-label":["file:10-a","hook:gpu.sh"]},"omitted":0}
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

ANNOTATION = "nfd.node.kubernetes.io/worker.local-origins"
FILE, HOOK = "file", "hook"
KINDS = (FILE, HOOK)
MAX_SETTERS = 4
MAX_NAME = 255  # NAME_MAX of a file name
MAX_KEY = 317  # a label name: 253-character prefix, "/", 63-character name
MAX_LABELS = 256
MAX_BYTES = 8 * 1024
# More labels than this in one document are not even sorted: all are counted as omitted
# (our worker never sends more than MAX_LABELS).
MAX_GIVEN = 8 * MAX_LABELS

# label key -> origins in the order applied (the last one won).
Origins = dict[str, tuple[str, ...]]


class OriginsError(ValueError):
    """An encoded origins document is malformed; the message says where."""


def entry(kind: str, name: str) -> str:
    """``file:NAME`` or ``hook:NAME``."""
    return f"{kind}:{name}"


def split_entry(text: str) -> tuple[str, str] | None:
    """(kind, name) of a valid entry; None for anything else."""
    kind, sep, name = text.partition(":")
    if not sep or kind not in KINDS or not 0 < len(name) <= MAX_NAME:
        return None
    if "/" in name or "\x00" in name or name in (".", ".."):
        return None
    return kind, name


def bound(origins: Mapping[str, Iterable[str]], omitted: int = 0) -> tuple[Origins, int]:
    """``origins`` within the bounds: invalid keys and entries dropped, each label's list
    cut to its last ``MAX_SETTERS``, labels in name order kept while they fit
    ``MAX_LABELS`` and ``MAX_BYTES``. Returns (kept, omitted): ``omitted`` counts the
    labels left out here plus those the sender had left out already."""
    out: Origins = {}
    size = len(_envelope(0))
    dropped = max(int(omitted), 0)
    if len(origins) > MAX_GIVEN:
        return out, dropped + len(origins)
    for key in sorted(origins):
        if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY:
            dropped += 1
            continue
        raw = origins[key]
        values = [raw] if isinstance(raw, str) else list(raw)[-MAX_SETTERS:]
        kept = tuple(v for v in values if isinstance(v, str) and split_entry(v) is not None)
        if not kept:
            dropped += 1
            continue
        cost = len(_item(key, kept)) + 1
        if len(out) >= MAX_LABELS or size + cost > MAX_BYTES:
            dropped += 1
            continue
        out[key] = kept
        size += cost
    return out, dropped


def encode(origins: Mapping[str, Sequence[str]], omitted: int = 0) -> str:
    """The compact JSON form (keys sorted); call ``bound`` first."""
    body = ",".join(_item(k, tuple(origins[k])) for k in sorted(origins))
    return '{"labels":{' + body + '},"omitted":' + str(int(omitted)) + "}"


def decode(text: str | bytes) -> tuple[Origins, int]:
    """Parse and bound an encoded document; OriginsError naming what is wrong."""
    if len(text) > 4 * MAX_BYTES:
        raise OriginsError(f"over {4 * MAX_BYTES} bytes")
    try:
        doc: Any = json.loads(text)
    except ValueError as err:
        raise OriginsError(f"not JSON: {err}") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("labels", {}), Mapping):
        raise OriginsError('expected {"labels": {LABEL: [ORIGIN, ...]}, "omitted": N}')
    omitted = doc.get("omitted", 0)
    if not isinstance(omitted, int) or isinstance(omitted, bool) or omitted < 0:
        raise OriginsError("omitted: expected a count")
    labels = doc.get("labels", {})
    for key, value in labels.items():
        if not isinstance(value, list):
            raise OriginsError(f"labels.{key[:80]}: expected a list of origins")
    return bound(labels, min(omitted, 1 << 31))


def describe(origins: Sequence[str]) -> dict[str, Any]:
    """The explain fields of one label's origins: ``file`` or ``hook`` (the winner) and,
    when others set it before and lost, ``alsoSetBy`` with theirs (oldest first)."""
    out: dict[str, Any] = {}
    parsed = [p for p in (split_entry(o) for o in origins) if p is not None]
    if not parsed:
        return out
    kind, name = parsed[-1]
    out[kind] = name
    if len(parsed) > 1:
        out["alsoSetBy"] = [{k: n} for k, n in parsed[:-1]]
    return out


def _item(key: str, values: tuple[str, ...]) -> str:
    return json.dumps(key) + ":" + json.dumps(list(values), separators=(",", ":"))


def _envelope(omitted: int) -> str:
    return '{"labels":{},"omitted":' + str(omitted) + "}"


def published(
    labels: Mapping[str, str],
    origins: Mapping[str, Sequence[str]] | None,
    local_labels: Mapping[str, str] | None,
) -> tuple[Origins, int]:
    """The origins of the labels the worker publishes (bounded): those of ``origins``
    (Features.origins) whose label is in ``labels`` with the local source's value (not
    dropped by labelWhiteList, not replaced by another source)."""
    if not origins:
        return {}, 0
    local = local_labels or {}
    chosen = {k: v for k, v in origins.items() if k in labels and labels[k] == local.get(k)}
    return bound(chosen)


def pack(origins: Mapping[str, Sequence[str]], omitted: int = 0) -> bytes:
    """What nfd-master keeps per node: the encoded form, zlib-compressed (b"" for none).
    Call ``bound`` first."""
    if not origins and not omitted:
        return b""
    return zlib.compress(encode(origins, omitted).encode(), 6)


def unpack(blob: bytes) -> tuple[Origins, int] | None:
    """The origins ``pack`` kept; None for b"" (the sender gave none)."""
    if not blob:
        return None
    return decode(zlib.decompress(blob))
