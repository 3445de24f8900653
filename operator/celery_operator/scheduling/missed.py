"""Which fire time to run now: Kubernetes CronJob's missed-run rule, and overlap policy.

The rule (pkg/controller/cronjob/utils.go, ``mostRecentScheduleTime``): fire times are
due in ``(earliest, now]`` where earliest is ``status.lastScheduleTime``, or the
creationTimestamp before the first run (moved up to ``startTime`` when that is later),
and — when ``startingDeadlineSeconds`` is set — moved up to ``now - deadline``. Only the
MOST RECENT due time runs; the other due times are missed (counted, never run). A fire
time at or before lastScheduleTime is never due again, so a restart cannot run it twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from celery_operator.scheduling._aware import TICK, optional_utc, to_utc
from celery_operator.scheduling.cron import CronSchedule
from celery_operator.scheduling.interval import IntervalSchedule
from celery_operator.scheduling.series import Bounds, Schedule, bounded_fire_times
from celery_operator.scheduling.wallclock import CrontabSchedule

__all__ = [
    "MISSED_COUNT_LIMIT",
    "TOO_MANY_MISSED",
    "ConcurrencyPolicy",
    "RunDecision",
    "decide_run",
    "overlap_action",
]

#: More missed fire times than this is CronJob's "TooManyMissedTimes" warning.
TOO_MANY_MISSED = 100
#: Cron fire times are counted one by one up to this many; beyond it ``missed`` is
#: reported as this limit (a lower bound). Interval schedules are counted exactly.
MISSED_COUNT_LIMIT = 1000

_ONE_SECOND = timedelta(seconds=1)
# Schedules whose fire times are searched for, not computed (cron and crontab).
_Calendar = CronSchedule | CrontabSchedule


@dataclass(frozen=True)
class RunDecision:
    """What :func:`decide_run` found; all datetimes are aware UTC."""

    #: The nominal fire time to run now (the child's scheduledTime), or None.
    fire_time: datetime | None
    #: Due fire times (within the starting deadline) that are skipped, not counting
    #: the one that runs. For cron schedules capped at MISSED_COUNT_LIMIT.
    missed: int
    #: ``missed > TOO_MANY_MISSED``: CronJob's TooManyMissedTimes warning.
    too_many_missed: bool
    #: The next fire time strictly after now within the bounds (even when suspended),
    #: or None when the series is over: re-check at this time.
    next_time: datetime | None
    #: A fire time was due but is older than startingDeadlineSeconds, so nothing runs.
    deadline_exceeded: bool
    #: The most recent fire time in (earliest, now] ignoring the deadline, whether it
    #: runs or not; for event messages such as "missed scheduled time ...".
    latest_due: datetime | None = None


def _latest_cron(schedule: _Calendar, lo: datetime, hi: datetime) -> datetime | None:
    """Return the latest fire time in (lo, hi] with O(log(hi - lo)) cronsim calls."""

    def first_after(t: datetime) -> datetime | None:
        return next(schedule.fire_times(t), None)

    left = first_after(lo)
    if left is None or left > hi:
        return None
    right = hi  # invariants: first_after(left) is <= hi, first_after(right) is > hi
    following = first_after(left)
    if following is None or following > hi:
        return left
    # Fire times fall on whole UTC seconds, so once right - left <= 1 s the only fire
    # time in (left, right] is first_after(left), and none lies in (right, hi].
    while right - left > _ONE_SECOND:
        mid = left + (right - left) / 2
        candidate = first_after(mid)
        if candidate is not None and candidate <= hi:
            left = mid
        else:
            right = mid
    return first_after(left)


def _count_cron(schedule: _Calendar, lo: datetime, hi: datetime) -> int:
    """Count fire times in (lo, hi], stopping at MISSED_COUNT_LIMIT + 1."""
    count = 0
    for fire in schedule.fire_times(lo):
        if fire > hi or count > MISSED_COUNT_LIMIT:
            break
        count += 1
    return count


def _latest(schedule: Schedule, lo: datetime, hi: datetime) -> datetime | None:
    if hi <= lo:
        return None
    if isinstance(schedule, IntervalSchedule):
        k = max(schedule.index_at_or_before(hi), 0)
        return schedule.fire_time(k) if k >= schedule.index_after(lo) else None
    return _latest_cron(schedule, lo, hi)


def _count(schedule: Schedule, lo: datetime, hi: datetime) -> int:
    if hi <= lo:
        return 0
    if isinstance(schedule, IntervalSchedule):
        # Arithmetic, not iteration: a 1 s interval missed over a year is instant.
        return max(schedule.index_at_or_before(hi) - schedule.index_after(lo) + 1, 0)
    return _count_cron(schedule, lo, hi)


def decide_run(
    schedule: Schedule,
    *,
    last_schedule_time: datetime | None,
    created: datetime,
    now: datetime,
    starting_deadline_seconds: int | None,
    bounds: Bounds,
    runs_so_far: int,
    suspended: bool = False,
) -> RunDecision:
    """Decide which fire time of a PeriodicTask runs now (see the module docstring).

    ``last_schedule_time`` is ``status.lastScheduleTime`` (None before the first run),
    ``created`` the creationTimestamp. Fire times respect ``bounds`` (start/end
    inclusive); once ``runs_so_far`` reaches ``bounds.max_runs`` nothing is due and
    ``next_time`` is None. A due time runs if ``now - fire_time <= deadline`` (when a
    deadline is set); if the most recent due time is older, nothing runs and
    ``deadline_exceeded`` is set. While ``suspended`` nothing runs; due times count as
    missed and ``next_time`` is still computed.
    """
    now_utc = to_utc(now, "now")
    created_utc = to_utc(created, "created")
    last_utc = optional_utc(last_schedule_time, "last_schedule_time")
    if starting_deadline_seconds is not None and starting_deadline_seconds < 0:
        raise ValueError(
            f"starting_deadline_seconds must be >= 0, got {starting_deadline_seconds}"
        )
    remaining = bounds.remaining_runs(runs_so_far)
    if remaining == 0:
        return RunDecision(None, 0, False, None, False)

    # (earliest, now] holds every due time; start/end bounds narrow it further.
    earliest = last_utc if last_utc is not None else created_utc
    lo = earliest
    start = optional_utc(bounds.start_time, "start_time")
    if start is not None and start - TICK > lo:
        lo = start - TICK  # start_time itself may fire
    end = optional_utc(bounds.end_time, "end_time")
    hi = now_utc if end is None or end > now_utc else end

    latest_due = _latest(schedule, lo, hi)
    window_lo = lo
    if starting_deadline_seconds is not None:
        # "now - fire_time <= deadline" is "fire_time > now - deadline - 1 µs".
        window_lo = max(lo, now_utc - timedelta(seconds=starting_deadline_seconds) - TICK)

    if latest_due is not None and latest_due > window_lo:
        due = _count(schedule, window_lo, hi)
        candidate: datetime | None = latest_due
        deadline_exceeded = False
    else:
        due = 0
        candidate = None
        deadline_exceeded = latest_due is not None

    fire_time = None if suspended else candidate
    missed = due - (1 if fire_time is not None else 0)
    if not isinstance(schedule, IntervalSchedule):
        missed = min(missed, MISSED_COUNT_LIMIT)  # _count_cron stops counting there

    next_time: datetime | None = None
    if remaining is None or remaining - (1 if fire_time is not None else 0) > 0:
        # Strictly after both now and earliest: never repeat lastScheduleTime.
        after = max(now_utc, earliest)
        next_time = next(bounded_fire_times(schedule, after=after, bounds=bounds), None)

    return RunDecision(
        fire_time=fire_time,
        missed=missed,
        too_many_missed=missed > TOO_MANY_MISSED,
        next_time=next_time,
        deadline_exceeded=deadline_exceeded,
        latest_due=latest_due,
    )


class ConcurrencyPolicy(StrEnum):
    """What to do when a run is due while earlier runs are still active."""

    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"


def overlap_action(
    policy: ConcurrencyPolicy | str, *, active_count: int
) -> Literal["run", "skip", "replace"]:
    """Return what to do with a due run given ``active_count`` active runs.

    Allow: run. Forbid: skip while any run is active (the fire time is missed, as in
    CronJob). Replace: cancel the active runs, then run ("replace").
    """
    if active_count < 0:
        raise ValueError(f"active_count must be >= 0, got {active_count}")
    chosen = ConcurrencyPolicy(policy)
    if active_count == 0 or chosen is ConcurrencyPolicy.ALLOW:
        return "run"
    if chosen is ConcurrencyPolicy.FORBID:
        return "skip"
    return "replace"
