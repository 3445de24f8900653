"""One in-memory due-time queue: wake each key at its time, reconcile keys one at a time.

A heap of (time, key); a single loop sleeps until the earliest entry (or a nudge) and
starts the reconcile of every due key, never two reconciles of one key at once (a key
woken while it runs is run once more right after). Stale heap entries are skipped
lazily, so re-scheduling is O(log n) with no removal.

A standby (`holding`) plans only what changed: a key whose time comes is parked
unplanned (the leader acts on it, or this process plans it when it leads), and a
changed key (`defer`) is planned once a little later, so the leader's writes to one
object in a row cost one plan, not one each.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from celery_operator import metrics
from celery_operator.scheduling.backoff import Backoff

logger = logging.getLogger(__name__)


class DueQueue:
    def __init__(
        self,
        reconcile: Callable[[str], Awaitable[None]],
        clock: Callable[[], datetime],
        *,
        concurrency: int = 32,
        name: str = "due-queue",
        on_depth: Callable[[int], None] | None = None,
        holding: Callable[[], bool] = lambda: False,
    ) -> None:
        self._reconcile = reconcile
        self._clock = clock
        self._heap: list[tuple[datetime, int, str]] = []
        self._wake_at: dict[str, datetime] = {}
        self._seq = itertools.count()
        self._nudge = asyncio.Event()
        self._running: set[str] = set()
        self._again: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._limit = asyncio.Semaphore(concurrency)
        self._loop_task: asyncio.Task[None] | None = None
        self._name = name
        self._on_depth = on_depth
        self._failures = Backoff(initial=1.0, factor=2.0, maximum=300.0)
        # Keys with something to do that a standby may not do, with when they were due:
        # run when it leads, earliest first.
        self._parked: dict[str, datetime] = {}
        self._holding = holding  # standing by: keys that come due are parked, not run
        self._changed: set[str] = set()  # deferred keys: planned even while holding

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()

    def schedule(self, key: str, at: datetime) -> None:
        """Wake `key` at `at`, unless an earlier wake-up is already queued."""
        current = self._wake_at.get(key)
        if current is not None and current <= at:
            return
        self._wake_at[key] = at
        if not self._heap or at < self._heap[0][0]:
            self._nudge.set()  # sooner than the loop's wait ends: it must look again
        heapq.heappush(self._heap, (at, next(self._seq), key))

    def now(self, key: str) -> None:
        self.schedule(key, self._clock())

    def again(self, key: str) -> None:
        """Run `key` once more after its current reconcile (or now if none runs)."""
        if key in self._running:
            self._again.add(key)
        else:
            self.now(key)

    def defer(self, key: str, delay: timedelta) -> None:
        """`key` changed while standing by: plan it once after `delay` (later changes in
        between ride along), or at once if this process leads before then."""
        now = self._clock()
        self._parked.setdefault(key, now)
        self._changed.add(key)
        self.schedule(key, now + delay)

    def forget(self, key: str) -> None:
        self._wake_at.pop(key, None)
        self._parked.pop(key, None)
        self._changed.discard(key)
        self._failures.succeeded(key)

    def park(self, key: str) -> None:
        """Hold `key` until `unpark_all` (a standby's step that would act)."""
        self._parked.setdefault(key, self._clock())

    def unpark_all(self) -> int:
        """Wake every parked key (this process started leading): all are due, and run
        in the order they came due, so the oldest work is done first."""
        parked, self._parked = self._parked, {}
        for key, at in sorted(parked.items(), key=lambda item: item[1]):
            self.schedule(key, at)
        return len(parked)

    def wake_at(self, key: str) -> datetime | None:
        """`key`'s next wake-up, if one is queued."""
        return self._wake_at.get(key)

    def runs_again(self, key: str) -> bool:
        """`key` is reconciled once more as soon as its running reconcile returns."""
        return key in self._again

    def armed(self) -> int:
        return len(self._wake_at)

    def depth(self) -> int:
        return len(self._heap)

    async def _run(self) -> None:
        while True:
            now = self._clock()
            while self._heap and self._heap[0][0] <= now:
                at, _, key = heapq.heappop(self._heap)
                if self._wake_at.get(key) != at:
                    continue  # stale: re-scheduled earlier or forgotten
                del self._wake_at[key]
                if key not in self._changed and self._holding():
                    self._parked.setdefault(key, at)  # planned when this process leads
                    continue
                self._start(key)
            if self._on_depth is not None:
                self._on_depth(len(self._heap))
            if len(self._heap) > 4 * max(len(self._wake_at), 1024):
                self._compact()
            timeout = (self._heap[0][0] - now).total_seconds() if self._heap else 3600.0
            self._nudge.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudge.wait(), timeout=max(timeout, 0.001))

    def _compact(self) -> None:
        self._heap = [(at, seq, key) for at, seq, key in self._heap
                      if self._wake_at.get(key) == at]
        heapq.heapify(self._heap)

    def _start(self, key: str) -> None:
        if key in self._running:
            self._again.add(key)
            return
        self._running.add(key)
        task = asyncio.create_task(self._reconcile_loop(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reconcile_loop(self, key: str) -> None:
        try:
            while True:
                self._again.discard(key)
                self._parked.pop(key, None)  # parked again if it still waits for a leader
                self._changed.discard(key)
                async with self._limit:
                    try:
                        await self._reconcile(key)
                    except Exception:
                        # An unexpected error: try again later and later (capped), so a
                        # broken object costs a log line now and then, never a loop.
                        delay = self._failures.failed(key)
                        metrics.RECONCILE_ERRORS.inc()
                        logger.exception("reconciling %s failed; trying again in %.0f s",
                                         key, delay.total_seconds())
                        self.schedule(key, self._clock() + delay)
                    else:
                        self._failures.succeeded(key)
                if key not in self._again:
                    break
        finally:
            self._running.discard(key)
