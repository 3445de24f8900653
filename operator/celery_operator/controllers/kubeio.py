"""Kubernetes calls from the engines: in a thread pool, with conflict handling in one place."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from celery_operator import metrics
from celery_operator.api import set_condition
from celery_operator.api.limits import fit_status
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


def stalled_conditions(
    current: Any, reason: str, message: str, generation: int, now: datetime
) -> list[dict[str, Any]]:
    """Ready=False and Stalled=True with one reason: the object needs a person."""
    conditions = set_condition(current, type="Ready", status="False", reason=reason,
                               message=message, generation=generation, now=now)
    return set_condition(conditions, type="Stalled", status="True", reason=reason,
                         message=message, generation=generation, now=now)


class WriteOutcome:
    WRITTEN = "written"
    CONFLICT = "conflict"  # someone wrote first; `fresh` holds the object as it is now
    GONE = "gone"


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class KubeIO:
    def __init__(
        self, kube: Kube, threads: int = 32, normal_events_per_second: float = 20.0
    ) -> None:
        self.kube = kube
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="kube")
        # Events go through a small pool of their own: they may lag in a burst, but never
        # hold up a claim.
        self.event_pool = ThreadPoolExecutor(2, thread_name_prefix="kube-events")
        self._normal_events = TokenBucket(rate=normal_events_per_second, burst=100)

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
            # Never send what the schema would refuse: cut to the CRD's limits here, once
            # for every status write of both engines.
            new = await self.call(
                self.kube.patch_status, plural, meta["namespace"], meta["name"],
                fit_status(plural, patch),
                resource_version=meta.get("resourceVersion"), uid=uid,
            )
            return WriteOutcome.WRITTEN, new
        except Gone:
            return WriteOutcome.GONE, None
        except Conflict:
            metrics.WRITE_CONFLICTS.inc()
        except Exception as exc:
            metrics.API_WRITE_FAILURES.labels(verb="patch", reason=type(exc).__name__).inc()
            raise
        try:
            fresh = await self.call(self.kube.get, plural, meta["namespace"], meta["name"])
        except Gone:
            return WriteOutcome.GONE, None
        if (fresh.get("metadata") or {}).get("uid") != uid:
            return WriteOutcome.GONE, None
        return WriteOutcome.CONFLICT, fresh

    def post_event(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Fire and forget: an Event must never hold up or break a reconcile.

        Normal Events are rate-limited (a token bucket, like the spam filter of
        Kubernetes' own event recorder): a burst of thousands of tasks posts a sample of
        them, not thousands of extra writes. Warnings are always posted.
        """
        if type_ == "Normal" and not self._normal_events.take():
            metrics.EVENTS_DROPPED.inc()
            return
        loop = asyncio.get_running_loop()
        loop.run_in_executor(
            self.event_pool,
            lambda: self.kube.post_event(body, type_=type_, reason=reason, message=message),
        )

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.event_pool.shutdown(wait=False, cancel_futures=True)
