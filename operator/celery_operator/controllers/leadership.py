"""Leader election on a coordination.k8s.io/v1 Lease (client-go's algorithm, asyncio-driven).

Only the leader acts (claims, publishes, writes status, creates children); standbys keep
their watches and due-time queues and take over when the Lease expires or is released.

Fencing: durations are measured on this process's monotonic clock only (never by
comparing timestamps from other hosts, so wall-clock skew does not matter). A leader
counts itself leading until `renew_deadline` after it *sent* its last successful renew;
a candidate takes the Lease only after seeing it unchanged for `lease_duration` from when
it *received* it. renew_deadline < lease_duration, so a leader that cannot renew (API
unreachable, frozen by SIGSTOP) stops acting before anyone else can acquire. What it may
still have in flight is fenced by the resourceVersion-conditional writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from celery_operator import metrics
from celery_operator.kube.lease import LeaseRecord

logger = logging.getLogger(__name__)


class LeaseStorePort(Protocol):
    def get(self) -> LeaseRecord | None: ...

    def create(self, record: LeaseRecord) -> LeaseRecord | None: ...

    def replace(self, record: LeaseRecord) -> LeaseRecord | None: ...


@dataclass(frozen=True)
class ElectionTiming:
    """kube-controller-manager's defaults."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def problem(self) -> str | None:
        """Why these durations cannot fence a leader (None: they can), naming the flags."""
        if self.retry_period <= 0:
            return f"--leader-retry-period must be > 0 (got {self.retry_period:g})"
        if self.renew_deadline <= self.retry_period:
            return (f"--leader-renew-deadline ({self.renew_deadline:g}) must be greater than "
                    f"--leader-retry-period ({self.retry_period:g})")
        if self.lease_duration <= self.renew_deadline:
            return (f"--leader-lease-duration ({self.lease_duration:g}) must be greater than "
                    f"--leader-renew-deadline ({self.renew_deadline:g}): the difference is "
                    "what fences an old leader")
        return None


def utcnow() -> datetime:
    return datetime.now(UTC)


class Elector:
    """One candidate. `try_acquire_or_renew` blocks (API calls): run it in a thread."""

    def __init__(
        self,
        store: LeaseStorePort,
        identity: str,
        timing: ElectionTiming,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.identity = identity
        self.timing = timing
        self._mono = monotonic
        self._wall = wall
        self._record: LeaseRecord | None = None  # the Lease as we last wrote it
        self._observed_version: str | None = None
        self._observed_at = 0.0
        self._valid_until: float | None = None
        self.holder: str = ""  # the holder in the last record seen
        self.peers: set[str] = {identity}  # every holder this Lease has had, as seen here

    def now(self) -> float:
        return self._mono()

    def leading(self) -> bool:
        """Checked before every act: false from the renew deadline on, whatever happens."""
        until = self._valid_until
        return until is not None and self._mono() < until

    def remaining(self) -> float | None:
        """Seconds until the renew deadline (None: not leading)."""
        until = self._valid_until
        return None if until is None else until - self._mono()

    def expires_in(self) -> float | None:
        """Seconds until someone else's Lease, unchanged since we last saw it change,
        may be taken (None: it is ours or free)."""
        if not self.holder or self.holder == self.identity:
            return None
        return self._observed_at + self.timing.lease_duration - self._mono()

    def try_acquire_or_renew(self) -> bool:
        sent = self._mono()
        current = self.store.get()
        now = self._wall()
        duration = max(1, round(self.timing.lease_duration))
        if current is None:
            created = self.store.create(LeaseRecord(self.identity, duration, now, now, 0))
            return created is not None and self._won(created, sent)
        self._observe(current)
        held = self._mono() < self._observed_at + self.timing.lease_duration
        if current.holder and current.holder != self.identity and held:
            self._valid_until = None  # someone else's, not expired (it may have taken over)
            return False
        if current.holder == self.identity:
            wanted = replace(current, duration_seconds=duration, renew_time=now)
        else:
            wanted = LeaseRecord(self.identity, duration, now, now, current.transitions + 1,
                                 current.resource_version)
        written = self.store.replace(wanted)
        return written is not None and self._won(written, sent)

    def release(self) -> bool:
        """Stop acting, then hand the Lease over (holder "", so a candidate takes it at its
        next retry instead of waiting out the lease). False: not ours to release."""
        record = self._record
        was_leading = self.leading()
        self._valid_until = None
        if record is None or not was_leading:
            return False
        now = self._wall()
        released = replace(record, holder="", duration_seconds=1, acquire_time=now,
                           renew_time=now)
        return self.store.replace(released) is not None

    def _won(self, record: LeaseRecord, sent: float) -> bool:
        self._record = record
        self._observe(record)
        self._valid_until = sent + self.timing.renew_deadline
        return True

    def _observe(self, record: LeaseRecord) -> None:
        if record.resource_version != self._observed_version:
            self._observed_version = record.resource_version
            self._observed_at = self._mono()
        if record.holder:
            self.peers.add(record.holder)
        self.holder = record.holder


class Leadership:
    """Runs an Elector every retry period; tells `on_started` / `on_stopped` (on the event
    loop) when this process starts or stops leading, and keeps the metrics."""

    def __init__(
        self,
        elector: Elector,
        *,
        on_started: Callable[[], None] = lambda: None,
        on_stopped: Callable[[], None] = lambda: None,
        lease_name: str = "",
        watch_released: Callable[[Callable[[], None], threading.Event], None] | None = None,
    ) -> None:
        self.elector = elector
        self.lease_name = lease_name
        # A feed (a blocking call, run in a thread) of "the Lease was released" signals.
        self._watch_released = watch_released
        self._watch_stop = threading.Event()
        self._nudge = asyncio.Event()  # stop(), or the Lease was released: try now
        self._stopping = False
        self.on_started = on_started
        self.on_stopped = on_stopped
        self._was_leading = False
        self._task: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="leader-election")
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._last_error: str | None = None
        # Claim holders that were never this Lease's holder: holder -> (first seen, warned).
        self._strangers: dict[str, tuple[float, bool]] = {}
        metrics.LEADER.set(0)

    def leading(self) -> bool:
        return self.elector.leading()

    def note_claim(self, holder: str) -> None:
        """A claim by `holder` was seen. One that never held this Lease (judged after two
        retry periods: a new leader's first claims may come before we see it in the
        Lease) is another operator acting on the same objects: warned once."""
        if holder and holder not in self.elector.peers and holder not in self._strangers:
            self._strangers[holder] = (self.elector.now(), False)

    def _judge_strangers(self) -> None:
        grace = 2 * self.elector.timing.retry_period
        for holder, (seen, warned) in list(self._strangers.items()):
            if holder in self.elector.peers:
                del self._strangers[holder]
            elif not warned and self.elector.now() - seen > grace:
                self._strangers[holder] = (seen, True)
                logger.warning(
                    "claims by %s, which never held this operator's Lease %s: another "
                    "operator (a different --lease-name or namespace, or "
                    "--no-leader-election) acts on the same objects. Conditional writes "
                    "still dispatch each task once, but the work is done twice",
                    holder, self.lease_name)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="leader-election")
        if self._watch_released is not None:
            loop = asyncio.get_running_loop()
            threading.Thread(
                target=self._watch_released,
                args=(lambda: loop.call_soon_threadsafe(self._nudge.set), self._watch_stop),
                name="leader-lease-watch", daemon=True,
            ).start()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        retry = self.elector.timing.retry_period
        while not self._stopping:
            try:
                await loop.run_in_executor(self._pool, self.elector.try_acquire_or_renew)
                self._last_error = None
            except Exception as exc:
                message = str(exc) or type(exc).__name__
                if message != self._last_error:  # once per distinct failure, not per retry
                    self._last_error = message
                    logger.warning("leader election: the Lease cannot be read or written "
                                   "(retrying every %g s): %s", retry, message)
            self._notice()
            self._judge_strangers()
            # A standby tries again at the retry period, or right when the Lease expires
            # if that is sooner (failover: the lease duration, not up to a retry more).
            expires = self.elector.expires_in()
            wait = retry if expires is None else min(retry, max(expires, 0.0) + 0.05)
            if self.elector.leading():
                self._nudge.clear()  # a leader renews on time; releases are for standbys
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudge.wait(), timeout=wait)
            self._nudge.clear()

    def _notice(self) -> None:
        """Fire the callbacks on a change; arm a timer for the renew deadline, so the
        stop is noticed at once even while a renew request hangs."""
        loop = asyncio.get_running_loop()
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        leading = self.elector.leading()
        if leading and (left := self.elector.remaining()) is not None:
            self._deadline_timer = loop.call_later(max(left, 0.0) + 0.01, self._notice)
        if leading == self._was_leading:
            return
        self._was_leading = leading
        metrics.LEADER.set(1 if leading else 0)
        metrics.LEADER_TRANSITIONS.inc()
        if leading:
            logger.info("leading now: %s holds the Lease", self.elector.identity)
            self.on_started()
        else:
            holder = self.elector.holder
            if self._stopping:
                why = "shutting down"
            elif holder == self.elector.identity:
                why = "no renew within the renew deadline"
            else:
                why = f"Lease held by {holder or 'nobody'}"
            logger.warning("stopped leading (%s): standing by", why)
            self.on_stopped()

    async def stop(self, *, release: bool) -> None:
        """Stop campaigning; with `release`, hand the Lease over if we hold it."""
        self._stopping = True
        self._watch_stop.set()
        self._nudge.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if release:
            loop = asyncio.get_running_loop()
            try:
                if await loop.run_in_executor(self._pool, self.elector.release):
                    logger.info("released the Lease for the next leader")
            except Exception as exc:
                logger.warning("releasing the Lease failed (it expires on its own): %s", exc)
        self._notice()
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        self._pool.shutdown(wait=False)
