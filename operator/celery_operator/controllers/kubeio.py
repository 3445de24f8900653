"""Kubernetes calls from the engines: in a thread pool, with conflict handling in one place."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from celery_operator import metrics
from celery_operator.kube.client import Conflict, Gone

from .ports import Kube

logger = logging.getLogger(__name__)
T = TypeVar("T")


def resource_version(body: Mapping[str, Any]) -> int:
    """resourceVersion as a number, to tell which of two copies is newer (0 if unknown)."""
    try:
        return int((body.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class WriteOutcome:
    WRITTEN = "written"
    CONFLICT = "conflict"  # someone wrote first; `fresh` holds the object as it is now
    GONE = "gone"


class KubeIO:
    def __init__(self, kube: Kube, threads: int = 32) -> None:
        self.kube = kube
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="kube")

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, lambda: fn(*args, **kwargs))

    async def write_status(
        self, plural: str, body: Mapping[str, Any], patch: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any] | None]:
        """Conditional status write against the resourceVersion in `body`.

        Returns (WRITTEN, new object), (CONFLICT, object re-read) or (GONE, None).
        """
        meta = body.get("metadata") or {}
        uid = meta.get("uid")
        try:
            new = await self.call(
                self.kube.patch_status, plural, meta["namespace"], meta["name"], patch,
                resource_version=meta.get("resourceVersion"), uid=uid,
            )
            return WriteOutcome.WRITTEN, new
        except Gone:
            return WriteOutcome.GONE, None
        except Conflict:
            metrics.WRITE_CONFLICTS.inc()
        try:
            fresh = await self.call(self.kube.get, plural, meta["namespace"], meta["name"])
        except Gone:
            return WriteOutcome.GONE, None
        if (fresh.get("metadata") or {}).get("uid") != uid:
            return WriteOutcome.GONE, None
        return WriteOutcome.CONFLICT, fresh

    def post_event(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Fire and forget: an Event must never hold up or break a reconcile."""
        loop = asyncio.get_running_loop()
        loop.run_in_executor(
            self.pool,
            lambda: self.kube.post_event(body, type_=type_, reason=reason, message=message),
        )

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
