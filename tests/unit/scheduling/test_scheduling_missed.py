"""CronJob's missed-run rule and overlap policy, with an explicit fake clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from celery_operator.scheduling import (
    Bounds,
    ConcurrencyPolicy,
    CronSchedule,
    IntervalSchedule,
    Schedule,
    decide_run,
    overlap_action,
)
from celery_operator.scheduling.missed import MISSED_COUNT_LIMIT

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


# The same hourly series written both ways: the rule must not depend on the kind.
HOURLY: list[Schedule] = [IntervalSchedule(T0, timedelta(hours=1)), CronSchedule("0 * * * *")]
hourly = pytest.mark.parametrize("schedule", HOURLY, ids=["interval", "cron"])


@hourly
def test_on_time_run(schedule: Schedule) -> None:
    d = decide_run(
        schedule, last_schedule_time=at(5), created=T0, now=at(6) + timedelta(seconds=2),
        starting_deadline_seconds=None, bounds=Bounds(), runs_so_far=5,
    )
    assert (d.fire_time, d.missed, d.deadline_exceeded) == (at(6), 0, False)
    assert not d.too_many_missed
    assert d.next_time == at(7)
    assert d.latest_due == at(6)


@hourly
def test_down_for_three_intervals_catches_up_once(schedule: Schedule) -> None:
    d = decide_run(
        schedule, last_schedule_time=at(5), created=T0, now=at(8.5),
        starting_deadline_seconds=86_400, bounds=Bounds(), runs_so_far=5,
    )
    assert d.fire_time == at(8)  # the most recent only
    assert d.missed == 2  # 06:00 and 07:00
    assert not d.too_many_missed and not d.deadline_exceeded
    assert d.next_time == at(9)


@hourly
def test_no_deadline_behaves_like_a_huge_one(schedule: Schedule) -> None:
    d = decide_run(
        schedule, last_schedule_time=at(5), created=T0, now=at(8.5),
        starting_deadline_seconds=None, bounds=Bounds(), runs_so_far=5,
    )
    assert (d.fire_time, d.missed) == (at(8), 2)


@hourly
def test_deadline_counts_only_the_window(schedule: Schedule) -> None:
    d = decide_run(
        schedule, last_schedule_time=at(5), created=T0, now=at(8.5),
        starting_deadline_seconds=3600, bounds=Bounds(), runs_so_far=5,
    )
    assert (d.fire_time, d.missed, d.deadline_exceeded) == (at(8), 0, False)


@hourly
def test_small_deadline_runs_nothing(schedule: Schedule) -> None:
    d = decide_run(
        schedule, last_schedule_time=at(5), created=T0, now=at(8.5),
        starting_deadline_seconds=600, bounds=Bounds(), runs_so_far=5,
    )
    assert d.fire_time is None
    assert d.deadline_exceeded
    assert d.latest_due == at(8)
    assert d.missed == 0  # as in CronJob, only the deadline window is counted
    assert d.next_time == at(9)


@hourly
def test_deadline_boundary_is_inclusive(schedule: Schedule) -> None:
    now = at(8) + timedelta(seconds=600)
    d = decide_run(
        schedule, last_schedule_time=at(7), created=T0, now=now,
        starting_deadline_seconds=600, bounds=Bounds(), runs_so_far=1,
    )
    assert d.fire_time == at(8)
    d = decide_run(
        schedule, last_schedule_time=at(7), created=T0, now=now + timedelta(microseconds=1),
        starting_deadline_seconds=600, bounds=Bounds(), runs_so_far=1,
    )
    assert d.fire_time is None and d.deadline_exceeded


@hourly
def test_suspended_runs_nothing_but_plans_ahead(schedule: Schedule) -> None:
    d = decide_run(
        schedule, last_schedule_time=at(5), created=T0, now=at(8.5),
        starting_deadline_seconds=None, bounds=Bounds(), runs_so_far=5, suspended=True,
    )
    assert d.fire_time is None
    assert d.missed == 3
    assert d.next_time == at(9)
    assert not d.deadline_exceeded


@hourly
def test_never_reruns_the_last_schedule_time(schedule: Schedule) -> None:
    for now in (at(8), at(8) + timedelta(minutes=30), at(9) - timedelta(microseconds=1)):
        d = decide_run(
            schedule, last_schedule_time=at(8), created=T0, now=now,
            starting_deadline_seconds=None, bounds=Bounds(), runs_so_far=8,
        )
        assert d.fire_time is None and d.missed == 0 and not d.deadline_exceeded
        assert d.next_time == at(9)


@hourly
def test_clock_behind_last_schedule_time(schedule: Schedule) -> None:
    # Skew: the last run is recorded in our future; never fire at or before it.
    d = decide_run(
        schedule, last_schedule_time=at(8), created=T0, now=at(6.5),
        starting_deadline_seconds=None, bounds=Bounds(), runs_so_far=8,
    )
    assert d.fire_time is None and d.next_time == at(9)


@hourly
def test_first_run_counts_from_creation(schedule: Schedule) -> None:
    created = at(0) + timedelta(minutes=10)
    early = decide_run(
        schedule, last_schedule_time=None, created=created, now=created + timedelta(minutes=5),
        starting_deadline_seconds=None, bounds=Bounds(), runs_so_far=0,
    )
    assert early.fire_time is None and early.next_time == at(1)
    due = decide_run(
        schedule, last_schedule_time=None, created=created, now=at(1) + timedelta(seconds=1),
        starting_deadline_seconds=None, bounds=Bounds(), runs_so_far=0,
    )
    assert (due.fire_time, due.missed) == (at(1), 0)


@hourly
def test_created_exactly_at_a_fire_time_does_not_fire_it(schedule: Schedule) -> None:
    d = decide_run(
        schedule, last_schedule_time=None, created=at(3), now=at(3),
        starting_deadline_seconds=None, bounds=Bounds(), runs_so_far=0,
    )
    assert d.fire_time is None and d.next_time == at(4)


@hourly
def test_end_time_bounds_due_and_next(schedule: Schedule) -> None:
    d = decide_run(
        schedule, last_schedule_time=at(5), created=T0, now=at(8.5),
        starting_deadline_seconds=None, bounds=Bounds(end_time=at(7)), runs_so_far=5,
    )
    assert (d.fire_time, d.missed, d.next_time) == (at(7), 1, None)


@hourly
def test_start_time_moves_earliest_up(schedule: Schedule) -> None:
    d = decide_run(
        schedule, last_schedule_time=None, created=T0, now=at(8.5),
        starting_deadline_seconds=None, bounds=Bounds(start_time=at(7)), runs_so_far=0,
    )
    assert (d.fire_time, d.missed) == (at(8), 1)  # 07:00 (inclusive start) is missed
    before_start = decide_run(
        schedule, last_schedule_time=None, created=T0, now=at(5.5),
        starting_deadline_seconds=None, bounds=Bounds(start_time=at(7)), runs_so_far=0,
    )
    assert before_start.fire_time is None and before_start.next_time == at(7)


@hourly
def test_max_runs(schedule: Schedule) -> None:
    bounds = Bounds(max_runs=3)
    last = decide_run(
        schedule, last_schedule_time=at(5), created=T0, now=at(6.1),
        starting_deadline_seconds=None, bounds=bounds, runs_so_far=2,
    )
    assert last.fire_time == at(6) and last.next_time is None
    done = decide_run(
        schedule, last_schedule_time=at(6), created=T0, now=at(9.1),
        starting_deadline_seconds=None, bounds=bounds, runs_so_far=3,
    )
    assert done == type(done)(None, 0, False, None, False)


def test_too_many_missed_cron() -> None:
    every_minute = CronSchedule("* * * * *")
    d = decide_run(
        every_minute, last_schedule_time=at(0), created=T0, now=at(3) + timedelta(seconds=5),
        starting_deadline_seconds=None, bounds=Bounds(), runs_so_far=1,
    )
    assert d.fire_time == at(3)
    assert d.missed == 179 and d.too_many_missed
    # A deadline makes the same outage unremarkable, as in CronJob.
    d = decide_run(
        every_minute, last_schedule_time=at(0), created=T0, now=at(3) + timedelta(seconds=5),
        starting_deadline_seconds=300, bounds=Bounds(), runs_so_far=1,
    )
    assert d.fire_time == at(3) and d.missed == 4 and not d.too_many_missed


def test_huge_outage_is_cheap() -> None:
    year = 365 * 24
    started = time.perf_counter()
    interval = decide_run(
        IntervalSchedule(T0, timedelta(seconds=1)), last_schedule_time=None, created=T0,
        now=at(year), starting_deadline_seconds=None, bounds=Bounds(), runs_so_far=0,
    )
    assert interval.fire_time == at(year)
    assert interval.missed == year * 3600 - 1  # exact, by arithmetic
    cron = decide_run(
        CronSchedule("* * * * *"), last_schedule_time=None, created=T0,
        now=at(year) + timedelta(seconds=30), starting_deadline_seconds=None, bounds=Bounds(),
        runs_so_far=0,
    )
    assert cron.fire_time == at(year)
    assert cron.missed == MISSED_COUNT_LIMIT and cron.too_many_missed
    assert time.perf_counter() - started < 2


def test_latest_due_across_dst_in_berlin() -> None:
    schedule = CronSchedule("30 2 * * *", "Europe/Berlin")
    d = decide_run(
        schedule, last_schedule_time=datetime(2026, 3, 27, 1, 30, tzinfo=UTC), created=T0,
        now=datetime(2026, 3, 29, 12, tzinfo=UTC), starting_deadline_seconds=None,
        bounds=Bounds(), runs_so_far=10,
    )
    assert d.fire_time == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST
    assert d.missed == 1
    assert d.next_time == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)


def test_decide_run_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide_run(
            HOURLY[0], last_schedule_time=None, created=T0, now=datetime(2026, 1, 1),
            starting_deadline_seconds=None, bounds=Bounds(), runs_so_far=0,
        )
    with pytest.raises(ValueError, match="starting_deadline_seconds"):
        decide_run(
            HOURLY[0], last_schedule_time=None, created=T0, now=T0,
            starting_deadline_seconds=-1, bounds=Bounds(), runs_so_far=0,
        )


@pytest.mark.parametrize(
    ("policy", "active", "action"),
    [
        (ConcurrencyPolicy.ALLOW, 0, "run"),
        (ConcurrencyPolicy.ALLOW, 3, "run"),
        (ConcurrencyPolicy.FORBID, 0, "run"),
        (ConcurrencyPolicy.FORBID, 1, "skip"),
        (ConcurrencyPolicy.REPLACE, 0, "run"),
        (ConcurrencyPolicy.REPLACE, 2, "replace"),
        ("Forbid", 1, "skip"),
    ],
)
def test_overlap_action(policy: ConcurrencyPolicy | str, active: int, action: str) -> None:
    assert overlap_action(policy, active_count=active) == action


def test_overlap_action_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        overlap_action("Sometimes", active_count=0)
    with pytest.raises(ValueError):
        overlap_action(ConcurrencyPolicy.ALLOW, active_count=-1)
    assert ConcurrencyPolicy("Replace") is ConcurrencyPolicy.REPLACE
    assert isinstance(ConcurrencyPolicy.FORBID, str)
    assert str(ConcurrencyPolicy.FORBID) == "Forbid"
