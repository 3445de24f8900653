"""kopf's initial LIST, read whole before any of it is handled.

kopf lists a resource in chunks (`settings.watching.chunk_size`) and hands each chunk to
the handlers before it asks for the next. A chunked LIST is one snapshot: each request
carries a continue token for the snapshot's revision, and the API server refuses it
(410 Gone, "The provided continue parameter is too old") once etcd has compacted that
revision — every 5 minutes by default. With 100,000 objects the handlers took longer
than that (measured, docs/performance.md), kopf's list failed, and its failure stops
the operator: a crash loop that grows with the cluster.

Here every page is fetched first (about a minute for 100,000 objects here, nearly all
of it the API server's reading and encoding them) and kept compressed, then
decoded one page at a time as kopf consumes it, so the memory held is the compressed
list and one decoded page. A list that still expires while it is fetched is started again.

Listed objects of our own kinds do not go through kopf at all (`take_in_directly`): kopf
gives each object of a list its own worker task and runs its handler machinery for it,
about a third of a restart's CPU at 30,000 objects (py-spy, docs/performance.md), where
the engines only need the body. They are taken in here, each page as it arrives while
the fetch goes on (it never waits for the intake: the list is read as fast as above),
and kopf is handed no objects; the watch that follows the list goes through kopf.

`LEDGER` counts each first list's objects per namespace, and the handlers count the
listed objects they took in: once the two meet, everything that existed at the list is
in memory, and the ledger tells its listeners (the PeriodicTask engine then knows every
parent's children without asking the API server for each parent's).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any, cast

import orjson
from kopf._cogs.clients import api, errors, fetching
from kopf._cogs.configs import configuration
from kopf._cogs.structs import bodies, references

log = logging.getLogger(__name__)

GONE = 410
RELIST_DELAY_SECONDS = 1.0
# Listed objects taken in between two returns to the event loop: the loop also serves
# /healthz, the Lease renewals and the due-time queue during a long intake.
TAKE_IN_BATCH = 100


class ListLedger:
    """Per resource: how many objects each namespace had in its first complete list,
    and how many listed objects (kopf's events of type None) were handled since."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        # (plural, the list's namespace or None for all) -> objects per namespace
        self._listed: dict[tuple[str, str | None], Counter[str]] = {}
        self._handled: dict[str, Counter[str]] = {}
        self._last_handled: dict[str, float] = {}
        self._clock = clock
        self._listeners: dict[str, list[Callable[[str | None], None]]] = {}
        self._told: dict[str, set[str]] = {}  # namespaces already announced complete

    def on_complete(self, plural: str, listener: Callable[[str | None], None]) -> None:
        """Call `listener(namespace)` once a namespace becomes complete, and
        `listener(None)` when a list is known whole (any namespace may be complete then,
        among them those with nothing listed), so waiters need not poll."""
        self._listeners.setdefault(plural, []).append(listener)

    def listed(self, plural: str, scope: str | None, per_namespace: Counter[str]) -> None:
        if (plural, scope) in self._listed:
            return  # a relist adds nothing
        self._listed[plural, scope] = per_namespace
        self._tell(plural, None)

    def handled(self, plural: str, namespace: str) -> None:
        self._handled.setdefault(plural, Counter())[namespace] += 1
        self._last_handled[plural] = self._clock()
        told = self._told.setdefault(plural, set())
        if namespace not in told and self.complete(plural, namespace):
            told.add(namespace)
            self._tell(plural, namespace)

    def _tell(self, plural: str, namespace: str | None) -> None:
        for listener in self._listeners.get(plural, ()):
            try:
                listener(namespace)
            except Exception:  # a listener's failure must not lose the count
                log.exception("a listener of the %s list failed", plural)

    def arriving(self, plural: str, within: float) -> bool:
        """A listed object was handled in the last `within` seconds: the intake of a
        long list is still going."""
        last = self._last_handled.get(plural)
        return last is not None and self._clock() - last < within

    def complete(self, plural: str, namespace: str) -> bool:
        """Every object of `namespace` in the first list of it was handled."""
        handled = self._handled.get(plural, Counter())[namespace]
        for scope in (namespace, None):
            listed = self._listed.get((plural, scope))
            if listed is not None and handled >= listed[namespace]:
                return True
        return False


LEDGER = ListLedger()

Intake = Callable[[dict[str, Any]], None]
_INTAKES: dict[tuple[str, str], Intake] = {}


def take_in_directly(group: str, plural: str, intake: Intake) -> None:
    """Hand every listed object of group/plural to `intake` (as its kopf handler would
    get it, as an event of type None), not to kopf. Only for resources whose handlers
    are `on.event` handlers that keep nothing in kopf's own state."""
    _INTAKES[group, plural] = intake


async def _take_in(resource: references.Resource, items: list[bodies.RawBody],
                   intake: Intake) -> None:
    for n, item in enumerate(items, 1):
        try:
            intake(cast(dict[str, Any], item))
        except Exception:  # as kopf does for a failing event handler: logged, not fatal
            meta = item.get("metadata") or {}
            log.exception("listed %s %s/%s could not be taken in", resource.plural,
                          meta.get("namespace"), meta.get("name"))
        if n % TAKE_IN_BATCH == 0:
            await asyncio.sleep(0)


class ListExpired(Exception):
    """The snapshot's revision was compacted before its last page was read."""


async def _fetch_pages(
    settings: configuration.OperatorSettings,
    resource: references.Resource,
    namespace: references.Namespace,
    kopf_logger: Any,
    on_page: Callable[[bytes], None],
) -> str:
    """Every page of one LIST snapshot to `on_page`, compressed; the snapshot's
    resource version."""
    params: dict[str, str] = {}
    if settings.watching.chunk_size is not None:
        params["limit"] = str(settings.watching.chunk_size)
    labels = ",".join(sorted(set(settings.watching.label_selectors.collect(resource))))
    fields = ",".join(sorted(set(settings.watching.field_selectors.collect(resource))))
    if labels:
        params["labelSelector"] = labels
    if fields:
        params["fieldSelector"] = fields
    version = ""
    token = ""
    while True:
        query = dict(params, **({"continue": token} if token else {}))
        try:
            response = await api.request(
                "get", resource.get_url(namespace=namespace, params=query),
                settings=settings, logger=kopf_logger,
            )
        except errors.APIClientError as exc:
            if exc.status == GONE:  # kopf's message is the server's: say its first sentence
                message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else ""
                raise ListExpired(message.split(". ")[0] or str(exc)) from exc
            raise
        async with response:
            raw = await response.read()
        meta = _list_meta(raw)
        # level 1: a page of 500 objects shrinks about tenfold in a few milliseconds
        on_page(zlib.compress(raw, 1))
        version = version or str(meta.get("resourceVersion", ""))
        token = str(meta.get("continue") or "")
        if not token:
            return version


def _list_meta(raw: bytes) -> dict[str, Any]:
    """A LIST response's own metadata. The API server writes it last in a custom
    resource's list: read from there, the page is decoded once (when handed on), not
    twice (decoding was a third of a restart's CPU); the whole page otherwise."""
    body = raw.rstrip()
    at = body.rfind(b',"metadata":')
    if at != -1 and body.endswith(b"}"):
        try:
            meta = orjson.loads(body[at + len(b',"metadata":'):-1])
        except orjson.JSONDecodeError:
            meta = None  # not the list's own: an item's, inside the items
        if isinstance(meta, dict) and "resourceVersion" in meta:
            return meta
    meta = _decode(raw).get("metadata")
    return meta if isinstance(meta, dict) else {}


def _decode(raw: bytes) -> Any:
    """orjson, twice as fast as json on a page of 500 (4.2 against 8.9 ms, median of 7
    decodes of a 0.7 MB page of pending tasks; and as exact: the API server writes
    no integer beyond 64 bits); json where orjson is stricter (an escaped lone
    surrogate in a string, which json takes as it is and kopf's watch would too)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


async def fetch_whole_list(
    *,
    settings: configuration.OperatorSettings,
    resource: references.Resource,
    namespace: references.Namespace,
    logger: Any,
) -> AsyncIterator[tuple[Collection[bodies.RawBody], str]]:
    """kopf's `fetch_objs`, with every page read before the first is handed on; for a
    resource taken in directly, every page taken in as it arrives and kopf handed none."""
    per_namespace: Counter[str] = Counter()
    intake = _INTAKES.get((resource.group, resource.plural))
    if intake is not None:
        version = await _take_in_list(settings, resource, namespace, logger, intake,
                                      per_namespace)
        yield [], version
    else:
        while True:
            pages: deque[bytes] = deque()
            try:
                version = await _fetch_pages(settings, resource, namespace, logger,
                                             pages.append)
                break
            except ListExpired as exc:
                _log_relist(resource, exc)
                await asyncio.sleep(RELIST_DELAY_SECONDS)
        while pages:
            items = _items(pages.popleft(), per_namespace)
            yield items, version
            del items
    # kopf asks for more once it has handed the last page on: the list is known whole
    LEDGER.listed(resource.plural, namespace, per_namespace)


async def _take_in_list(
    settings: configuration.OperatorSettings,
    resource: references.Resource,
    namespace: references.Namespace,
    logger: Any,
    intake: Intake,
    per_namespace: Counter[str],
) -> str:
    """Take in each page while the next is fetched: the API server encodes the next
    page on one core while this process decodes and plans the last on the other. A
    list that expires is listed again from the start; what was taken in of it stays
    (taking an object in again with the same resourceVersion changes nothing), and the
    ledger hears of the list only once it is whole and all of it was taken in."""
    while True:
        pages: asyncio.Queue[bytes | None] = asyncio.Queue()
        fetching_task = asyncio.create_task(
            _fetch_into(pages, settings, resource, namespace, logger),
            name=f"list-{resource.plural}")
        per_namespace.clear()
        try:
            while (page := await pages.get()) is not None:
                await _take_in(resource, _items(page, per_namespace), intake)
            return await fetching_task
        except ListExpired as exc:
            _log_relist(resource, exc)
            await asyncio.sleep(RELIST_DELAY_SECONDS)
        finally:
            fetching_task.cancel()


async def _fetch_into(
    pages: asyncio.Queue[bytes | None],
    settings: configuration.OperatorSettings,
    resource: references.Resource,
    namespace: references.Namespace,
    logger: Any,
) -> str:
    try:
        return await _fetch_pages(settings, resource, namespace, logger, pages.put_nowait)
    finally:
        pages.put_nowait(None)  # the end, or a failure the task holds


def _items(page: bytes, per_namespace: Counter[str]) -> list[bodies.RawBody]:
    """A compressed page's objects, each with the kind and apiVersion a LIST's items
    lack (as kopf's own listing), counted by namespace."""
    decoded = _decode(zlib.decompress(page))
    items: list[bodies.RawBody] = decoded.get("items") or []
    kind = decoded["kind"].removesuffix("List") if "kind" in decoded else None
    api_version = decoded.get("apiVersion")
    for item in items:
        if kind is not None:
            item.setdefault("kind", kind)
        if api_version is not None:
            item.setdefault("apiVersion", api_version)
        per_namespace[str((item.get("metadata") or {}).get("namespace") or "")] += 1
    return items


def _log_relist(resource: references.Resource, exc: ListExpired) -> None:
    log.warning("the list of %s expired before its last page was read (410 Gone); "
                "listing again: %s", resource.plural, exc)


def install() -> bool:
    """Make kopf's watcher list through `fetch_whole_list`; False (and kopf's own
    listing kept) when this kopf has no such function to replace."""
    if not callable(getattr(fetching, "fetch_objs", None)):
        log.warning("this kopf lists differently than expected: its own chunked listing "
                    "is kept (a list longer than etcd's compaction interval stops the "
                    "operator)")
        return False
    fetching.fetch_objs = fetch_whole_list
    return True
