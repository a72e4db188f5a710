"""A list then a resumable watch of one kind of Kubernetes object: the one loop under the
master's Node, NodeFeature and NodeFeatureGroup watchers (an informer without a cache:
each user keeps only what it needs of the objects).

- The list is paginated (``page_size`` objects a page, 0: one page); each page is parsed
  one item at a time (``iter_list_items``), and while one page is parsed the next one is
  already being fetched: one page ahead, never more. The API server then builds page k+1
  while this process decodes page k, instead of both taking turns; memory stays bounded
  by two pages of JSON text.
- The watch starts at the list's resourceVersion and, when the server ends it (its
  timeout), resumes from the last resourceVersion seen, bookmarks included. Only when
  that version has expired (410 Gone, as an error or an ERROR event) is everything listed
  again; the user gets the new list's keys to apply the differences as changes.
- Errors retry with a backoff (``retry_seconds`` doubling up to ``max_retry_seconds``),
  reset once a list or a watch has gone through; 404 on an optional kind (a CRD not
  installed) counts as listed and empty so that nobody waits for it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

log = logging.getLogger("nfd-master")

Key = tuple[str, str]  # (namespace, name); namespace "" for a cluster-scoped object

_WS = re.compile(r"[ \t\n\r]*")
_TAIL = re.compile(r"[ \t\n\r]*\}[ \t\n\r]*")


def key_of(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def iter_list_items(text: str | bytes) -> Generator[dict[str, Any], None, dict[str, Any]]:
    """The items of a Kubernetes list response, parsed one at a time; afterwards
    ``.metadata`` of the generator's StopIteration value is the list's metadata.
    A page of 200 NodeFeatures with kernel configs is ~30 MB of JSON, several times
    that as Python objects: only one item is ever parsed at once."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    dec = json.JSONDecoder()
    meta: dict[str, Any] = {}

    def skip(pos: int) -> int:
        m = _WS.match(text, pos)
        return m.end() if m else pos

    def expect(pos: int, char: str) -> int:
        pos = skip(pos)
        if text[pos : pos + 1] != char:
            raise ValueError(f"list response: expected {char!r} at offset {pos}")
        return pos + 1

    pos = expect(0, "{")
    pos = skip(pos)
    if text[pos : pos + 1] == "}":
        return meta
    while True:
        key, pos = dec.raw_decode(text, skip(pos))
        pos = expect(pos, ":")
        pos = skip(pos)
        if key == "items" and text[pos : pos + 1] == "[":
            pos = skip(pos + 1)
            if text[pos : pos + 1] == "]":
                pos += 1
            else:
                while True:
                    item, pos = dec.raw_decode(text, skip(pos))
                    yield item
                    del item
                    pos = skip(pos)
                    if text[pos : pos + 1] == ",":
                        pos += 1
                        continue
                    pos = expect(pos, "]")
                    break
        else:
            value, pos = dec.raw_decode(text, pos)
            if key == "metadata" and isinstance(value, dict):
                meta = value
        pos = skip(pos)
        if text[pos : pos + 1] == ",":
            pos += 1
            continue
        expect(pos, "}")
        return meta


def list_metadata_tail(data: bytes) -> dict[str, Any] | None:
    """The list's own metadata, read from the end of the response without parsing its
    items, when it is the response's last member (the API server writes a custom
    resource's list as apiVersion, items, kind, metadata); None when it is not there
    (a built-in list writes it before its items): then the items are parsed first."""
    at = data.rfind(b'"metadata":')
    if at < 0:
        return None
    try:
        text = data[at + len(b'"metadata":') :].decode("utf-8")
        start = len(text) - len(text.lstrip(" \t\n\r"))
        value, end = json.JSONDecoder().raw_decode(text, start)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(value, dict) or not _TAIL.fullmatch(text, end):
        return None  # an item's metadata, or inside a value: not the list's
    return value


class _Ahead:
    """One page being fetched in a daemon thread (a process that exits mid-list does not
    wait for it); ``result()`` waits for it and raises what the fetch raised."""

    def __init__(self, fetch: Callable[[str | None], bytes], cont: str | None, name: str) -> None:
        self._done = threading.Event()
        self._data = b""
        self._err: BaseException | None = None
        args = (fetch, cont)
        threading.Thread(target=self._run, args=args, name=f"{name}-page", daemon=True).start()

    def _run(self, fetch: Callable[[str | None], bytes], cont: str | None) -> None:
        try:
            self._data = fetch(cont)
        except BaseException as err:  # noqa: BLE001 - raised again in result()
            self._err = err
        finally:
            self._done.set()

    def result(self) -> bytes:
        self._done.wait()
        if self._err is not None:
            raise self._err
        data, self._data = self._data, b""
        return data


class ListWatcher:
    """List then watch one kind of object in a thread; subclasses say how to ask for it
    (``request``) and what to do with it (``listed``, ``relisted``, ``changed``)."""

    what = "object"  # for logs: "Node", "NodeFeature", ...
    thread_name = "nfd-watch"
    # A kind whose CRD may be missing: 404 then means "none yet", not an error.
    optional = False
    list_accept: str | None = None
    watch_accept: str | None = None
    retry_seconds = 2.0
    max_retry_seconds = 8.0

    def __init__(
        self,
        *,
        page_size: int = 0,
        watch_seconds: int = 300,
        synced: threading.Event | None = None,
    ) -> None:
        self.page_size = page_size
        self.watch_seconds = watch_seconds
        self.synced = synced if synced is not None else threading.Event()
        self.lists = 0  # completed (re)lists
        self._stop = threading.Event()
        self._failures = 0

    # -- what a subclass provides -------------------------------------------------------

    def request(self, **kwargs: Any) -> Any:
        """The list (or, with ``watch=True``, watch) call; kwargs are the client's."""
        raise NotImplementedError

    def listed(self, obj: dict[str, Any]) -> None:
        """One object of a (re)list."""

    def relisted(self, keys: set[Key], first: bool) -> None:
        """A (re)list is complete: ``keys`` are every object there is now (an object
        not among them is gone); ``first``: the first list of this watcher."""

    def changed(self, kind: str, obj: dict[str, Any]) -> None:
        """A watch event: ADDED, MODIFIED or DELETED."""

    def failed(self, err: BaseException, code: int | None, listed: bool) -> float:
        """A list or watch failed (``listed``: the list had succeeded); the seconds to
        wait before listing again."""
        if code == 410:
            log.info("%s list or watch expired (410): listing again", self.what)
            return 0.0
        if code == 404 and self.optional:
            if not self.synced.is_set():
                log.warning("%s CRD not installed: none yet", self.what)
                self.relisted(set(), True)
                self.synced.set()
            return self.backoff()
        log.warning("%s watch: %s (retrying)", self.what, err)
        return self.backoff()

    # -- the loop ---------------------------------------------------------------------

    def start(self) -> None:
        threading.Thread(target=self._run, name=self.thread_name, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def backoff(self) -> float:
        self._failures += 1
        return min(self.retry_seconds * 2 ** (self._failures - 1), self.max_retry_seconds)

    def _fetch(self, cont: str | None) -> bytes:
        kwargs: dict[str, Any] = {"_preload_content": False}
        if self.page_size > 0:
            kwargs["limit"] = self.page_size
        if cont:
            kwargs["_continue"] = cont
        if self.list_accept:
            kwargs["_headers"] = {"Accept": self.list_accept}
        resp = self.request(**kwargs)
        try:
            return bytes(resp.data)
        finally:
            resp.release_conn()

    def relist(self) -> str:
        """List every object, page by page, one page fetched ahead; the list's
        resourceVersion."""
        began = time.monotonic()
        keys: set[Key] = set()
        pages = 0
        meta: dict[str, Any] = {}
        ahead: _Ahead | None = _Ahead(self._fetch, None, self.thread_name)
        while ahead is not None:
            data = ahead.result()
            ahead = None
            pages += 1
            tail = list_metadata_tail(data) if self.page_size > 0 else None
            if tail is not None and tail.get("continue"):
                ahead = _Ahead(self._fetch, str(tail["continue"]), self.thread_name)
            items = iter_list_items(data)
            del data  # the generator decodes it to text and keeps only that
            while True:
                try:
                    item = next(items)
                except StopIteration as end:
                    meta = end.value or {}
                    break
                keys.add(key_of(item))
                self.listed(item)
                del item
            del items
            if tail is None and meta.get("continue"):
                ahead = _Ahead(self._fetch, str(meta["continue"]), self.thread_name)
        log.info(
            "%s list: %d objects in %d pages, %.1f s",
            self.what,
            len(keys),
            pages,
            time.monotonic() - began,
        )
        first = not self.synced.is_set()
        self.relisted(keys, first)
        self.synced.set()
        self.lists += 1
        self._failures = 0
        return str(meta.get("resourceVersion") or "")

    def watch_from(self, version: str) -> str | None:
        """Apply events from ``version`` until the server ends the watch; the version to
        resume from, or None when it expired (410) and a relist is needed."""
        from kubernetes.watch.watch import iter_resp_lines

        kwargs: dict[str, Any] = {
            "watch": True,
            "resource_version": version,
            "allow_watch_bookmarks": True,
            "timeout_seconds": self.watch_seconds,
            "_preload_content": False,
        }
        if self.watch_accept:
            kwargs["_headers"] = {"Accept": self.watch_accept}
        resp = self.request(**kwargs)
        try:
            for line in iter_resp_lines(resp):
                if self._stop.is_set():
                    return version
                if not line:
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                del event
                if kind == "ERROR":
                    log.info("%s watch ended: %s: listing again", self.what, obj.get("message"))
                    return None
                meta = obj.get("metadata") or {}
                version = str(meta.get("resourceVersion") or version)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self.changed(kind, obj)
                del obj  # BOOKMARK: only its resourceVersion
        finally:
            resp.release_conn()
        self._failures = 0
        return version

    def _run(self) -> None:
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self.relist()
                version = self.watch_from(version)
            except Exception as err:  # noqa: BLE001 - CRD missing, API down: keep trying
                wait = self.failed(err, getattr(err, "status", None), version is not None)
                version = None
                self._stop.wait(wait)
