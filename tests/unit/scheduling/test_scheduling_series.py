"""Bounded series: startTime, endTime, maxRuns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from celery_operator.scheduling import Bounds, CronSchedule, IntervalSchedule, next_fire_times

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOURLY = IntervalSchedule(T0, timedelta(hours=1))


def hours(*hs: int) -> list[datetime]:
    return [T0 + timedelta(hours=h) for h in hs]


def test_unbounded() -> None:
    assert next_fire_times(HOURLY, after=T0, count=3, bounds=Bounds()) == hours(1, 2, 3)


def test_count_zero_and_negative() -> None:
    assert next_fire_times(HOURLY, after=T0, count=0, bounds=Bounds()) == []
    with pytest.raises(ValueError):
        next_fire_times(HOURLY, after=T0, count=-1, bounds=Bounds())


def test_start_time_is_inclusive() -> None:
    bounds = Bounds(start_time=T0 + timedelta(hours=5))
    assert next_fire_times(HOURLY, after=T0, count=2, bounds=bounds) == hours(5, 6)
    # A start between fire times moves to the next one.
    bounds = Bounds(start_time=T0 + timedelta(hours=5, minutes=1))
    assert next_fire_times(HOURLY, after=T0, count=1, bounds=bounds) == hours(6)


def test_start_time_does_not_undo_after() -> None:
    bounds = Bounds(start_time=T0 + timedelta(hours=1))
    after = T0 + timedelta(hours=3)
    assert next_fire_times(HOURLY, after=after, count=1, bounds=bounds) == hours(4)


def test_end_time_is_inclusive() -> None:
    bounds = Bounds(end_time=T0 + timedelta(hours=3))
    assert next_fire_times(HOURLY, after=T0, count=10, bounds=bounds) == hours(1, 2, 3)


def test_max_runs_counts_runs_so_far() -> None:
    bounds = Bounds(max_runs=5)
    assert next_fire_times(HOURLY, after=T0, count=10, bounds=bounds, runs_so_far=3) == hours(1, 2)
    assert next_fire_times(HOURLY, after=T0, count=10, bounds=bounds, runs_so_far=5) == []
    assert next_fire_times(HOURLY, after=T0, count=10, bounds=bounds, runs_so_far=9) == []


def test_one_off() -> None:
    bounds = Bounds(max_runs=1)
    cron = CronSchedule("0 12 * * *")
    assert next_fire_times(cron, after=T0, count=5, bounds=bounds) == [T0 + timedelta(hours=12)]


def test_bounds_validation() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Bounds(start_time=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="max_runs"):
        Bounds(max_runs=-1)
    with pytest.raises(ValueError, match="runs_so_far"):
        next_fire_times(HOURLY, after=T0, count=1, bounds=Bounds(max_runs=2), runs_so_far=-1)
