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
from typing import Any

from kopf._cogs.clients import api, errors, fetching
from kopf._cogs.configs import configuration
from kopf._cogs.structs import bodies, references

log = logging.getLogger(__name__)

GONE = 410
RELIST_DELAY_SECONDS = 1.0


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


class ListExpired(Exception):
    """The snapshot's revision was compacted before its last page was read."""


async def _fetch_pages(
    settings: configuration.OperatorSettings,
    resource: references.Resource,
    namespace: references.Namespace,
    kopf_logger: Any,
) -> tuple[deque[bytes], str]:
    """Every page of one LIST snapshot, compressed, and the snapshot's resource version."""
    params: dict[str, str] = {}
    if settings.watching.chunk_size is not None:
        params["limit"] = str(settings.watching.chunk_size)
    labels = ",".join(sorted(set(settings.watching.label_selectors.collect(resource))))
    fields = ",".join(sorted(set(settings.watching.field_selectors.collect(resource))))
    if labels:
        params["labelSelector"] = labels
    if fields:
        params["fieldSelector"] = fields
    pages: deque[bytes] = deque()
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
        pages.append(zlib.compress(raw, 1))
        version = version or str(meta.get("resourceVersion", ""))
        token = str(meta.get("continue") or "")
        if not token:
            return pages, version


def _list_meta(raw: bytes) -> dict[str, Any]:
    """A LIST response's own metadata. The API server writes it last in a custom
    resource's list: read from there, the page is decoded once (when handed on), not
    twice (decoding was a third of a restart's CPU); the whole page otherwise."""
    body = raw.rstrip()
    at = body.rfind(b',"metadata":')
    if at != -1 and body.endswith(b"}"):
        try:
            meta = json.loads(body[at + len(b',"metadata":'):-1])
        except ValueError:
            meta = None  # not the list's own: an item's, inside the items
        if isinstance(meta, dict) and "resourceVersion" in meta:
            return meta
    meta = json.loads(raw).get("metadata")
    return meta if isinstance(meta, dict) else {}


async def fetch_whole_list(
    *,
    settings: configuration.OperatorSettings,
    resource: references.Resource,
    namespace: references.Namespace,
    logger: Any,
) -> AsyncIterator[tuple[Collection[bodies.RawBody], str]]:
    """kopf's `fetch_objs`, with every page read before the first is handed on."""
    while True:
        try:
            pages, version = await _fetch_pages(settings, resource, namespace, logger)
            break
        except ListExpired as exc:
            _log_relist(resource, exc)
            await asyncio.sleep(RELIST_DELAY_SECONDS)
    per_namespace: Counter[str] = Counter()
    while pages:
        page = json.loads(zlib.decompress(pages.popleft()))
        items: list[bodies.RawBody] = page.get("items") or []
        kind = page["kind"].removesuffix("List") if "kind" in page else None
        api_version = page.get("apiVersion")
        for item in items:  # as kopf's own listing: a LIST's items carry no kind
            if kind is not None:
                item.setdefault("kind", kind)
            if api_version is not None:
                item.setdefault("apiVersion", api_version)
            per_namespace[str((item.get("metadata") or {}).get("namespace") or "")] += 1
        del page
        yield items, version
        del items
    # kopf asks for more once it has handed the last page on: the list is known whole
    LEDGER.listed(resource.plural, namespace, per_namespace)


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
