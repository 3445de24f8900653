"""A kind's objects in pages (`limit`/`continue`), so the first page shows while the API
server still sends the rest: one list of 10,000 ScheduledTasks takes seconds, its first
page of 500 a tenth of one."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

from celery_operator.api import GROUP, VERSION
from celery_operator.kube.objects import Objects

PAGE_SIZE = 500


@dataclass(frozen=True)
class ListPage:
    items: list[dict[str, Any]]
    version: str  # the whole list's resourceVersion (one snapshot): watch from it
    remaining: int | None  # objects after this page, when the API server says
    last: bool


def _list_page(objects: Objects, plural: str, namespace: str | None, limit: int,
               token: str | None) -> dict[str, Any]:
    # Through Objects' own call, which turns refusals into Rejected and a dead API server
    # into Unreachable; kube/ lists only whole, so the paging arguments are passed here.
    paging: dict[str, Any] = {"limit": limit, **({"_continue": token} if token else {})}
    if namespace is None:
        found = objects._call(objects.custom.list_cluster_custom_object, GROUP, VERSION,
                              plural, **paging)
    else:
        found = objects._call(objects.custom.list_namespaced_custom_object, GROUP, VERSION,
                              namespace, plural, **paging)
    return cast(dict[str, Any], found)


def pages(objects: Objects, plural: str, namespace: str | None,
          limit: int = PAGE_SIZE) -> Iterator[ListPage]:
    """Every object of a kind (namespace None: all namespaces), one page at a time, all
    from the first page's snapshot. Raises Rejected (410 Gone: the snapshot expired
    between pages; list again) or Unreachable."""
    token: str | None = None
    while True:
        found = _list_page(objects, plural, namespace, limit, token)
        meta = found.get("metadata") or {}
        token = meta.get("continue") or None
        remaining = meta.get("remainingItemCount")
        yield ListPage(found.get("items") or [], str(meta.get("resourceVersion") or ""),
                       remaining if isinstance(remaining, int) else None, token is None)
        if token is None:
            return
