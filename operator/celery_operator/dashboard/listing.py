"""The first page of a kind's objects (`limit`), to show while the whole list arrives:
the whole list of 10,000 ScheduledTasks takes seconds, a first page of 500 a tenth of one.
The rest comes as one whole list, not page after page: on the development machine under
load, 20 pages of 500 took two to three times as long in all as one list of 10,000."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery_operator.kube.objects import Objects

FIRST_PAGE = 500


@dataclass(frozen=True)
class FirstPage:
    items: list[dict[str, Any]]
    version: str  # the list's resourceVersion: watch from it when the page is all there is
    remaining: int | None  # objects after this page, when the API server says
    whole: bool  # nothing came after it


def first_page(objects: Objects, plural: str, namespace: str | None,
               limit: int = FIRST_PAGE) -> FirstPage:
    """Raises Rejected or Unreachable, as Objects does."""
    found = objects.list_page(plural, namespace, limit)
    meta = found.get("metadata") or {}
    remaining = meta.get("remainingItemCount")
    return FirstPage(found.get("items") or [], str(meta.get("resourceVersion") or ""),
                     remaining if isinstance(remaining, int) else None,
                     not meta.get("continue"))
