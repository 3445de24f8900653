"""Property tests: ordering, no drift, restart safety, and agreement with celery."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise

from celery.schedules import crontab  # tests may import celery; the package may not
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from celery_operator.scheduling import (
    Bounds,
    CronSchedule,
    IntervalSchedule,
    Schedule,
    celery_crontab_expression,
    decide_run,
    format_duration,
    parse_duration,
    validate_cron,
)

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Seoul",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "America/Santiago",  # DST change at midnight
]
# Dates straddling 2026's DST changes in both hemispheres.
instants = st.datetimes(
    min_value=datetime(2025, 12, 1), max_value=datetime(2027, 1, 31), timezones=st.just(UTC)
)


def utc_datetimes(low: datetime, high: datetime) -> st.SearchStrategy[datetime]:
    return st.datetimes(min_value=low, max_value=high, timezones=st.just(UTC))


def _values(low: int, high: int, max_size: int) -> st.SearchStrategy[str]:
    return st.lists(st.integers(low, high), min_size=1, max_size=max_size, unique=True).map(
        lambda vs: ",".join(map(str, sorted(vs)))
    )


cron_expressions = st.tuples(
    st.one_of(_values(0, 59, 3), st.sampled_from(["*", "*/15", "0-10/5"])),
    st.one_of(_values(0, 23, 3), st.sampled_from(["*", "*/6", "1-3"])),
    st.one_of(st.just("*"), _values(1, 28, 2), st.just("L")),
    st.one_of(st.just("*"), _values(1, 12, 4)),
    st.one_of(st.just("*"), _values(0, 6, 3), st.just("mon-fri")),
).map(" ".join)
cron_schedules = st.builds(CronSchedule, cron_expressions, st.sampled_from(ZONES))


@settings(max_examples=150)
@given(cron_schedules, instants)
def test_cron_fire_times_strictly_increase_after_start(
    schedule: CronSchedule, after: datetime
) -> None:
    fires = list(islice(schedule.fire_times(after), 6))
    assert fires, schedule
    assert all(f.tzinfo is UTC for f in fires)
    assert fires[0] > after
    assert all(a < b for a, b in pairwise(fires))
    # Chaining next_after walks the same series.
    assert schedule.next_after(after) == fires[0]
    for a, b in pairwise(fires):
        assert schedule.next_after(a) == b


@settings(max_examples=150)
@given(cron_schedules, instants, st.floats(0, 1))
def test_cron_next_after_is_the_same_from_anywhere_in_a_gap(
    schedule: CronSchedule, after: datetime, where: float
) -> None:
    # decide_run's binary search relies on this: one well-defined series, whatever
    # the starting point (DST quirks included).
    a, b = islice(schedule.fire_times(after), 2)
    probe = a + (b - a) * where
    assume(probe < b)
    assert schedule.next_after(probe) == b


@settings(max_examples=200)
@given(
    utc_datetimes(datetime(1970, 1, 1), datetime(2100, 1, 1)),
    st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=400)),
    utc_datetimes(datetime(1960, 1, 1), datetime(2200, 1, 1)),
)
def test_interval_fire_times_are_exact_multiples(
    anchor: datetime, every: timedelta, after: datetime
) -> None:
    schedule = IntervalSchedule(anchor, every)
    fires = list(islice(schedule.fire_times(after), 5))
    assert fires[0] == schedule.next_after(after)
    assert fires[0] > after
    k0 = (fires[0] - anchor) // every
    assert k0 >= 1
    for i, fire in enumerate(fires):
        assert fire == anchor + (k0 + i) * every  # no drift, ever
    # Minimal: the previous grid point is not after `after` (or is the anchor itself).
    assert k0 == 1 or anchor + (k0 - 1) * every <= after


@given(st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=10**6)))
def test_format_then_parse_round_trips(td: timedelta) -> None:
    assert parse_duration(format_duration(td)) == td


@given(st.text(max_size=40))
def test_validate_cron_never_raises(text: str) -> None:
    result = validate_cron(text)
    assert result is None or (isinstance(result, str) and result)


@given(st.text(max_size=20))
def test_parse_duration_only_raises_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        assert parse_duration(text) > timedelta(0)


def _celery_next(t: datetime, fields: dict[str, str]) -> datetime:
    # remaining_estimate(last_run_at) is "time from nowfun() until the first run
    # after last_run_at"; with nowfun == last_run_at it is the gap to the next run.
    schedule = crontab(nowfun=lambda: t, **fields)
    estimate: timedelta = schedule.remaining_estimate(t)
    return t + estimate


celery_fields = st.fixed_dictionaries(
    {},
    optional={
        "minute": _values(0, 59, 3),
        "hour": _values(0, 23, 3),
        "month_of_year": _values(1, 12, 4),
    },
).flatmap(
    lambda base: st.one_of(
        st.just(base),
        _values(0, 6, 3).map(lambda dow: {**base, "day_of_week": dow}),
        _values(1, 28, 3).map(lambda dom: {**base, "day_of_month": dom}),
    )
)


@settings(max_examples=300)
@given(
    celery_fields,
    utc_datetimes(datetime(2020, 1, 1), datetime(2035, 1, 1)),
    st.booleans(),
)
def test_agrees_with_celery_crontab(fields: dict[str, str], start: datetime, on_fire: bool) -> None:
    t = start.replace(second=0, microsecond=0)  # celery works at minute resolution
    schedule = CronSchedule(celery_crontab_expression(**fields), "UTC")
    if on_fire:
        t = schedule.next_after(t)  # also compare when "now" is exactly a fire time
    assert schedule.next_after(t) == _celery_next(t, fields)


def _brute_force(schedule: Schedule, lo: datetime, hi: datetime) -> list[datetime]:
    due = []
    for fire in schedule.fire_times(lo):
        if fire > hi:
            break
        due.append(fire)
    return due


@settings(max_examples=150)
@given(
    cron_schedules,
    instants,
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)),
    st.one_of(st.none(), st.integers(0, 36 * 3600)),
)
def test_decide_run_matches_brute_force(
    schedule: CronSchedule, last: datetime, outage: timedelta, deadline: int | None
) -> None:
    now = last + outage
    decision = decide_run(
        schedule, last_schedule_time=last, created=last - timedelta(days=30), now=now,
        starting_deadline_seconds=deadline, bounds=Bounds(), runs_so_far=1,
    )
    due = _brute_force(schedule, last, now)
    assert decision.latest_due == (due[-1] if due else None)
    in_window = [f for f in due if deadline is None or now - f <= timedelta(seconds=deadline)]
    if in_window:
        assert decision.fire_time == in_window[-1]
        assert decision.missed == min(len(in_window) - 1, 1000)
        assert not decision.deadline_exceeded
    else:
        assert decision.fire_time is None
        assert decision.deadline_exceeded == bool(due)
    assert decision.next_time == schedule.next_after(now)


@settings(max_examples=100)
@given(
    st.one_of(
        cron_schedules,
        st.builds(
            IntervalSchedule,
            st.just(datetime(2026, 1, 1, tzinfo=UTC)),
            st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(hours=30)),
        ),
    ),
    st.lists(st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=40)), max_size=12),
    st.one_of(st.none(), st.integers(0, 7200)),
)
def test_restarts_never_run_a_fire_time_twice(
    schedule: Schedule, steps: list[timedelta], deadline: int | None
) -> None:
    # An operator waking up at arbitrary times, persisting lastScheduleTime as CronJob does.
    created = datetime(2026, 1, 1, tzinfo=UTC)
    now, last = created, None
    runs: list[datetime] = []
    for step in steps:
        now += step
        d = decide_run(
            schedule, last_schedule_time=last, created=created, now=now,
            starting_deadline_seconds=deadline, bounds=Bounds(), runs_so_far=len(runs),
        )
        if d.fire_time is not None:
            assert d.fire_time <= now
            assert last is None or d.fire_time > last
            runs.append(d.fire_time)
            last = d.fire_time
        assert d.next_time is not None and d.next_time > now
    assert runs == sorted(set(runs))
