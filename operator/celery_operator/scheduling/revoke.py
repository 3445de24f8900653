"""Durable revoke: a requested revoke is enforced until it can no longer fail.

A Celery revoke is a broadcast that only the workers listening at that moment hear, and
they forget it when they restart. So after dispatch a revoke is not done when it is
sent: the task is `Revoking`, the revoke is broadcast again (more and more rarely, and
whenever a worker (re)joins) and recorded where the worker guard looks, until one of
these tells that the task cannot run any more — then, and only then, `Revoked`:
  - the result backend says REVOKED (a worker dropped or terminated it);
  - the message expired before any worker started it (workers refuse expired messages);
  - the broker restarted empty before a worker took it (the message is gone, and a
    revoked task is never republished).
If the task ends anyway (it had started and was not terminated, or it finished before
the revoke arrived) the phase says what really happened: Succeeded or Failed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from celery_operator.scheduling.duetime import retry_delay

REBROADCAST_FIRST = timedelta(seconds=5)
REBROADCAST_MAX = timedelta(minutes=5)


def next_broadcast(last_sent: datetime | None, sends: int, now: datetime) -> datetime:
    """When the revoke is due to be broadcast again: at once if this process never sent
    it (a restart forgets, so it sends once more), then 5 s, 10 s, … up to 5 min apart."""
    if last_sent is None or sends < 1:
        return now
    gap = retry_delay(
        sends + 1,
        initial_seconds=REBROADCAST_FIRST.total_seconds(),
        factor=2.0,
        max_seconds=REBROADCAST_MAX.total_seconds(),
    )
    return last_sent + gap


def cannot_run_any_more(
    *,
    started: bool,
    expires_at: datetime | None,
    now: datetime,
    broker_lost_it: bool,
) -> str | None:
    """Why a not-started, revoked task can never run now (None: it still might)."""
    if started:
        return None
    if broker_lost_it:
        return "the broker restarted empty before a worker took it, and it is not sent again"
    if expires_at is not None and now >= expires_at:
        return "it expired before any worker started it (workers refuse expired messages)"
    return None
