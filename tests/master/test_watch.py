"""nfd.master.watch.ListWatcher with a scripted API (the real API server runs in
tests/e2e/test_master_node_watch.py, test_master_nodefeatures.py, test_master_groups.py)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from nfd.master.watch import Key, ListWatcher, list_metadata_tail


class Resp:
    def __init__(self, data: bytes = b"", lines: list[dict[str, Any]] | None = None) -> None:
        self.data = data
        self.lines = lines or []
        self.released = False

    def stream(self, amt: Any = None, decode_content: bool = False) -> Any:
        for event in self.lines:
            yield (json.dumps(event) + "\n").encode()

    def release_conn(self) -> None:
        self.released = True


class Gone(Exception):
    status = 410


def page(names: list[str], cont: str = "", version: str = "9", meta_first: bool = False) -> bytes:
    items = [{"metadata": {"name": n, "namespace": "ns", "resourceVersion": "1"}} for n in names]
    meta: dict[str, Any] = {"resourceVersion": version}
    if cont:
        meta["continue"] = cont
    body = {"metadata": meta, "items": items} if meta_first else {"items": items, "metadata": meta}
    return json.dumps({"apiVersion": "x/v1", **body, "kind": "XList"}).encode()


def cr_page(names: list[str], cont: str = "") -> bytes:
    """As the API server writes a custom resource's list: metadata last."""
    items = [{"metadata": {"name": n, "namespace": "ns"}} for n in names]
    meta = {"continue": cont, "resourceVersion": "9"} if cont else {"resourceVersion": "9"}
    return json.dumps(
        {"apiVersion": "x/v1", "items": items, "kind": "XList", "metadata": meta}
    ).encode()


class Scripted(ListWatcher):
    what = "Thing"
    optional = True

    def __init__(self, script: list[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.script = script
        self.calls: list[dict[str, Any]] = []
        self.log: list[Any] = []
        self.done = threading.Event()

    def request(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        if not self.script:
            self.done.set()
            self._stop.wait(5)
            raise RuntimeError("script over")
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step(kwargs) if callable(step) else step

    def listed(self, obj: dict[str, Any]) -> None:
        self.log.append(("item", obj["metadata"]["name"]))

    def relisted(self, keys: set[Key], first: bool) -> None:
        self.log.append(("sync", sorted(n for _, n in keys), first))

    def changed(self, kind: str, obj: dict[str, Any]) -> None:
        self.log.append((kind, obj["metadata"]["name"]))


def test_list_metadata_is_read_from_the_tail_only_when_it_is_the_lists() -> None:
    assert list_metadata_tail(cr_page(["a"], "c1")) == {"continue": "c1", "resourceVersion": "9"}
    assert list_metadata_tail(cr_page(["a"]) + b"\n") == {"resourceVersion": "9"}
    # Metadata before the items (a built-in list): the last "metadata" is an item's.
    assert list_metadata_tail(page(["a", "b"], "c1", meta_first=True)) is None
    assert list_metadata_tail(b'{"items": []}') is None
    assert list_metadata_tail(b'{"metadata": {"continue": ') is None


def test_the_next_page_is_fetched_while_this_one_is_parsed() -> None:
    second_asked = threading.Event()

    def second(kwargs: dict[str, Any]) -> Resp:
        second_asked.set()
        return Resp(cr_page(["c"], "c2"))

    w = Scripted([Resp(cr_page(["a", "b"], "c1")), second, Resp(cr_page(["d"]))], page_size=2)
    seen_ahead: list[bool] = []
    real = w.listed

    def listed(obj: dict[str, Any]) -> None:
        if obj["metadata"]["name"] == "a":
            seen_ahead.append(second_asked.wait(5))
            time.sleep(0.2)  # page 2 has arrived meanwhile: page 3 waits for page 1 to end
            seen_ahead.append(len(w.calls) == 2)
        real(obj)

    w.listed = listed  # type: ignore[method-assign]
    assert w.relist() == "9"
    # Page 2 was asked for before page 1's first item was used, page 3 not yet: one
    # page ahead, never two.
    assert seen_ahead == [True, True]
    assert [c.get("limit") for c in w.calls] == [2, 2, 2]
    assert [c.get("_continue") for c in w.calls] == [None, "c1", "c2"]
    assert [e[1] for e in w.log] == ["a", "b", "c", "d", ["a", "b", "c", "d"]]
    assert w.synced.is_set() and w.lists == 1


def test_metadata_before_the_items_still_pages_and_no_pagination_sends_no_limit() -> None:
    w = Scripted([Resp(page(["a"], "c1", meta_first=True)), Resp(page(["b"]))], page_size=1)
    w.relist()
    assert [c.get("_continue") for c in w.calls] == [None, "c1"]
    w = Scripted([Resp(cr_page(["a", "b"]))], page_size=0)
    w.relist()
    assert "limit" not in w.calls[0] and w.log[-1] == ("sync", ["a", "b"], True)


def test_watch_resumes_from_the_last_version_and_410_relists_with_the_differences() -> None:
    def obj(name: str, version: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": version}}

    w = Scripted(
        [
            Resp(cr_page(["a", "b"])),
            Resp(
                lines=[
                    {"type": "ADDED", "object": obj("c", "10")},
                    {"type": "BOOKMARK", "object": obj("", "12")},
                ]
            ),
            Resp(lines=[{"type": "DELETED", "object": obj("a", "13")}]),
            Gone(),
            Resp(cr_page(["b", "d"])),
            Resp(lines=[{"type": "ERROR", "object": {"code": 410, "message": "too old"}}]),
            Resp(cr_page(["d"])),
        ],
        page_size=10,
        watch_seconds=1,
    )
    w.start()
    try:
        assert w.done.wait(10)
    finally:
        w.stop()
    watches = [c for c in w.calls if c.get("watch")]
    assert [c["resource_version"] for c in watches] == ["9", "12", "13", "9", "9"]
    assert all(c["allow_watch_bookmarks"] and c["timeout_seconds"] == 1 for c in watches)
    assert w.log == [
        ("item", "a"),
        ("item", "b"),
        ("sync", ["a", "b"], True),
        ("ADDED", "c"),
        ("DELETED", "a"),
        ("item", "b"),
        ("item", "d"),
        ("sync", ["b", "d"], False),
        ("item", "d"),
        ("sync", ["d"], False),
    ]
    assert w.lists == 3


def test_errors_back_off_and_a_missing_optional_kind_counts_as_listed_empty() -> None:
    class Missing(Exception):
        status = 404

    w = Scripted([])
    assert [w.failed(RuntimeError("down"), None, False) for _ in range(5)] == [2, 4, 8, 8, 8]
    assert w.failed(Gone(), 410, True) == 0.0
    w.script = [Resp(cr_page([]))]
    w.relist()
    assert w.failed(RuntimeError("down"), None, False) == 2  # reset by the list
    w = Scripted([])
    w.failed(Missing(), 404, False)
    assert w.synced.is_set() and w.log == [("sync", [], True)]


@pytest.mark.parametrize("size", [0, 3])
def test_a_stopped_watcher_ends(size: int) -> None:
    w = Scripted([Resp(cr_page(["a"]))], page_size=size)
    w.start()
    assert w.done.wait(5)
    w.stop()
    time.sleep(0.1)
    assert w.synced.is_set()
