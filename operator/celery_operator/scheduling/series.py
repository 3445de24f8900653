"""Bounded series of fire times: a schedule plus startTime, endTime and maxRuns."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from celery_operator.scheduling._aware import TICK, optional_utc, to_utc
from celery_operator.scheduling.cron import CronSchedule
from celery_operator.scheduling.interval import IntervalSchedule
from celery_operator.scheduling.wallclock import CrontabSchedule

__all__ = ["Bounds", "Schedule", "bounded_fire_times", "next_fire_times"]

Schedule = CronSchedule | CrontabSchedule | IntervalSchedule


@dataclass(frozen=True)
class Bounds:
    """Limits on a series: fire times in [start_time, end_time], at most max_runs runs.

    Both ends are inclusive. ``max_runs`` counts runs (children created), not fire
    times: a fire time skipped as missed does not use up a run.
    """

    start_time: datetime | None = None
    end_time: datetime | None = None
    max_runs: int | None = None

    def __post_init__(self) -> None:
        optional_utc(self.start_time, "start_time")
        optional_utc(self.end_time, "end_time")
        if self.max_runs is not None and self.max_runs < 0:
            raise ValueError(f"max_runs must be >= 0, got {self.max_runs}")

    def remaining_runs(self, runs_so_far: int) -> int | None:
        """Return how many more runs are allowed, or None for unlimited."""
        if runs_so_far < 0:
            raise ValueError(f"runs_so_far must be >= 0, got {runs_so_far}")
        if self.max_runs is None:
            return None
        return max(self.max_runs - runs_so_far, 0)


def bounded_fire_times(
    schedule: Schedule, *, after: datetime, bounds: Bounds
) -> Iterator[datetime]:
    """Yield fire times strictly after ``after`` within start_time/end_time (UTC).

    ``max_runs`` is not applied here: callers decide which fire times become runs.
    """
    after_utc = to_utc(after, "after")
    start = optional_utc(bounds.start_time, "start_time")
    end = optional_utc(bounds.end_time, "end_time")
    if start is not None and start - TICK > after_utc:
        # "> start - 1µs" is "≥ start" at datetime resolution: start_time may fire.
        after_utc = start - TICK
    for fire in schedule.fire_times(after_utc):
        if end is not None and fire > end:
            return
        yield fire


def next_fire_times(
    schedule: Schedule,
    *,
    after: datetime,
    count: int,
    bounds: Bounds,
    runs_so_far: int = 0,
) -> list[datetime]:
    """Return up to ``count`` fire times strictly after ``after``, in order (UTC).

    None is before ``bounds.start_time`` or after ``bounds.end_time`` (both inclusive),
    and the list stops when ``runs_so_far`` plus its length reaches ``bounds.max_runs``.
    For ``status.nextScheduleTimes``.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    remaining = bounds.remaining_runs(runs_so_far)
    limit = count if remaining is None else min(count, remaining)
    result: list[datetime] = []
    if limit == 0:
        return result
    for fire in bounded_fire_times(schedule, after=after, bounds=bounds):
        result.append(fire)
        if len(result) >= limit:
            break
    return result
