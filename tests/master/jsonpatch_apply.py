"""A small RFC 6902 applier for tests (add, remove, replace, test)."""

from __future__ import annotations

from typing import Any


class PatchConflict(Exception):
    pass


def _unescape(seg: str) -> str:
    return seg.replace("~1", "/").replace("~0", "~")


def apply_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    for op in ops:
        segs = [_unescape(s) for s in op["path"].split("/")[1:]]
        parent: Any = doc
        for s in segs[:-1]:
            parent = parent[s]
        last = segs[-1]
        kind = op["op"]
        if kind == "test":
            if parent.get(last) != op["value"]:
                raise PatchConflict(op)
        elif kind == "add":
            parent[last] = op["value"]
        elif kind == "replace":
            if last not in parent:
                raise KeyError(op["path"])
            parent[last] = op["value"]
        elif kind == "remove":
            del parent[last]
        else:
            raise ValueError(kind)
    return doc
