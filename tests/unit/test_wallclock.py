"""schedule.crontab on the wall clock, as Celery beat runs it, at daylight-saving changes.

Berlin: 2026-03-29 01:00Z CET -> CEST (02:00-02:59 local never happens), 2026-10-25 01:00Z
CEST -> CET (02:00-02:59 local happens twice). New York: 2026-03-08 07:00Z (02:xx skipped),
2026-11-01 06:00Z (01:xx twice). Each expected time is written in UTC with its local time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise

from hypothesis import given
from hypothesis import strategies as st

from celery_operator.api.periodic import PeriodicTaskSpec, parse_periodic_task_spec
from celery_operator.scheduling import Bounds, CronSchedule, CrontabSchedule, decide_run
from celery_operator.scheduling.periodic_plan import schedule_of
from celery_operator.scheduling.series import next_fire_times

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def take(schedule: CrontabSchedule, after: datetime, n: int) -> list[datetime]:
    return list(islice(schedule.fire_times(after), n))


# --- spring forward: a skipped time runs at the same minute of the next hour ------------


def test_every_minute_goes_from_the_last_minute_before_the_gap_to_its_end() -> None:
    fires = take(CrontabSchedule("* * * * *", BERLIN), utc(2026, 3, 29, 0, 58), 3)
    # 01:59 CET, then 02:00 (does not exist) runs at 03:00 CEST, then 03:01 CEST.
    assert fires == [utc(2026, 3, 29, 0, 59), utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 1)]


def test_every_quarter_hour_runs_once_at_the_end_of_the_gap() -> None:
    fires = take(CrontabSchedule("*/15 * * * *", BERLIN), utc(2026, 3, 29, 0, 40), 3)
    # 01:45 CET, 03:00 CEST (for 02:00; 02:15-02:45 are jumped over), 03:15 CEST.
    assert fires == [utc(2026, 3, 29, 0, 45), utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 15)]


def test_a_fixed_time_inside_the_gap_runs_an_hour_later_that_day() -> None:
    fires = take(CrontabSchedule("30 2 * * *", BERLIN), utc(2026, 3, 27, 12), 3)
    # 02:30 CET, 03:30 CEST on the day of the change (not 03:00 as cron), 02:30 CEST.
    assert fires == [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30)]
    # Debian cron (schedule.cron) runs it when the gap ends instead.
    assert list(islice(CronSchedule("30 2 * * *", BERLIN).fire_times(utc(2026, 3, 28, 12)), 1)) \
        == [utc(2026, 3, 29, 1, 0)]


def test_a_time_inside_the_gap_runs_once_when_the_next_hour_matches_too() -> None:
    # 02:30 runs at 03:30 CEST; the search goes on from there, so 03:30 is not run twice.
    fires = take(CrontabSchedule("30 2,3 * * *", BERLIN), utc(2026, 3, 29, 0), 3)
    assert fires == [utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30), utc(2026, 3, 30, 1, 30)]


def test_new_york_spring_forward() -> None:
    assert take(CrontabSchedule("30 2 * * *", NEW_YORK), utc(2026, 3, 8, 0), 2) == [
        utc(2026, 3, 8, 7, 30),  # 03:30 EDT
        utc(2026, 3, 9, 6, 30),  # 02:30 EDT
    ]
    assert take(CrontabSchedule("*/15 * * * *", NEW_YORK), utc(2026, 3, 8, 6, 40), 3) == [
        utc(2026, 3, 8, 6, 45),  # 01:45 EST
        utc(2026, 3, 8, 7, 0),  # 03:00 EDT
        utc(2026, 3, 8, 7, 15),
    ]


# --- fall back: the repeated hour runs once, at its first occurrence --------------------


def test_every_quarter_hour_skips_the_repeated_hour() -> None:
    fires = take(CrontabSchedule("*/15 * * * *", BERLIN), utc(2026, 10, 25, 0, 40), 2)
    # 02:45 CEST, then 03:00 CET: nothing at 02:00-02:45 CET (01:00-01:45Z).
    assert fires == [utc(2026, 10, 25, 0, 45), utc(2026, 10, 25, 2, 0)]


def test_hourly_waits_two_hours_across_the_repeated_hour() -> None:
    fires = take(CrontabSchedule("0 * * * *", BERLIN), utc(2026, 10, 24, 23, 30), 2)
    assert fires == [utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 2, 0)]  # 02:00 CEST, 03:00 CET
    # Debian cron counts elapsed time: it runs at 02:00 CET too.
    cron = list(islice(CronSchedule("0 * * * *", BERLIN).fire_times(utc(2026, 10, 24, 23, 30)), 3))
    assert cron == [utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 1, 0), utc(2026, 10, 25, 2, 0)]


def test_a_fixed_time_in_the_repeated_hour_runs_once() -> None:
    fires = take(CrontabSchedule("30 2 * * *", BERLIN), utc(2026, 10, 24, 12), 2)
    assert fires == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]  # 02:30 CEST, CET
    fires = take(CrontabSchedule("30 1 * * *", NEW_YORK), utc(2026, 10, 31, 12), 2)
    assert fires == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]  # 01:30 EDT, EST


def test_a_search_from_inside_the_repeated_hour_gives_the_same_next_run() -> None:
    schedule = CrontabSchedule("*/15 * * * *", BERLIN)
    # 02:10 CET (the second 02:10): beat running all along runs next at 03:00 CET.
    assert schedule.next_after(utc(2026, 10, 25, 1, 10)) == utc(2026, 10, 25, 2, 0)
    # 03:10 CEST just after the gap: the 02:30 job already ran at 03:30 CEST (01:30Z).
    daily = CrontabSchedule("30 2 * * *", BERLIN)
    assert daily.next_after(utc(2026, 3, 29, 1, 10)) == utc(2026, 3, 29, 1, 30)


# --- day of week on the local calendar ---------------------------------------------------


def test_day_of_week_is_the_local_day_across_the_change() -> None:
    sunday = CrontabSchedule("30 2 * * 0", BERLIN)  # both changes fall on a Sunday
    assert take(sunday, utc(2026, 3, 28), 2) == [utc(2026, 3, 29, 1, 30), utc(2026, 4, 5, 0, 30)]
    assert take(sunday, utc(2026, 10, 24), 2) == [utc(2026, 10, 25, 0, 30),
                                                   utc(2026, 11, 1, 1, 30)]
    # Saturday 23:30 in New York is Sunday in UTC; a week later by the wall clock.
    saturday = CrontabSchedule("30 23 * * 6", NEW_YORK)
    assert take(saturday, utc(2026, 3, 7), 2) == [utc(2026, 3, 8, 4, 30), utc(2026, 3, 15, 3, 30)]
    weekdays = CrontabSchedule("0 9 * * 1-5", BERLIN)
    assert take(weekdays, utc(2026, 3, 27, 9), 2) == [utc(2026, 3, 30, 7), utc(2026, 3, 31, 7)]


# --- the engine: the crontab form uses it everywhere ----------------------------------------


def _spec(schedule: dict[str, object]) -> PeriodicTaskSpec:
    return parse_periodic_task_spec({"schedule": schedule, "task": {"name": "t"}})


def test_the_crontab_form_is_evaluated_on_the_wall_clock_and_cron_as_cron() -> None:
    created = utc(2026, 1, 1)
    crontab = _spec({"crontab": {"minute": "0"}, "timeZone": BERLIN})
    cron = _spec({"cron": "0 * * * *", "timeZone": BERLIN})
    assert schedule_of(crontab, created) == CrontabSchedule("0 * * * *", BERLIN)
    assert schedule_of(cron, created) == CronSchedule("0 * * * *", BERLIN)
    # status.nextScheduleTimes and kubectl celery next (next_fire_times over schedule_of).
    after = utc(2026, 10, 24, 23, 30)
    assert next_fire_times(schedule_of(crontab, created), after=after, count=2,
                           bounds=Bounds()) == [utc(2026, 10, 25, 0), utc(2026, 10, 25, 2)]


def test_missed_runs_across_the_repeated_hour_count_beats_runs() -> None:
    schedule = CrontabSchedule("*/15 * * * *", BERLIN)
    # Down from 02:00 CEST to 03:20 CET: beat would have run 02:15, 02:30, 02:45 CEST and
    # 03:00, 03:15 CET; the latest runs, four are missed, next is 03:30 CET.
    decision = decide_run(
        schedule, last_schedule_time=utc(2026, 10, 25, 0, 0), created=utc(2026, 10, 1),
        now=utc(2026, 10, 25, 2, 20), starting_deadline_seconds=None, bounds=Bounds(),
        runs_so_far=1,
    )
    assert decision.fire_time == utc(2026, 10, 25, 2, 15)
    assert decision.missed == 4
    assert decision.next_time == utc(2026, 10, 25, 2, 30)


def test_missed_runs_across_the_gap() -> None:
    schedule = CrontabSchedule("30 2 * * *", BERLIN)
    decision = decide_run(
        schedule, last_schedule_time=utc(2026, 3, 28, 1, 30), created=utc(2026, 3, 1),
        now=utc(2026, 3, 29, 1, 40), starting_deadline_seconds=None, bounds=Bounds(),
        runs_so_far=1,
    )
    assert decision.fire_time == utc(2026, 3, 29, 1, 30)  # 03:30 CEST
    assert decision.missed == 0
    assert decision.next_time == utc(2026, 3, 30, 0, 30)


# --- properties ------------------------------------------------------------------------------

EXPRESSIONS = ["* * * * *", "*/15 * * * *", "0 * * * *", "30 2 * * *", "*/20 1-3 * * *",
               "10,40 2 * * 0", "0 0 * * *"]
CHANGES = [(BERLIN, utc(2026, 3, 29, 1)), (BERLIN, utc(2026, 10, 25, 1)),
           (NEW_YORK, utc(2026, 3, 8, 7)), (NEW_YORK, utc(2026, 11, 1, 6))]


@given(
    expression=st.sampled_from(EXPRESSIONS),
    change=st.sampled_from(CHANGES),
    offset=st.integers(min_value=-6 * 3600, max_value=6 * 3600),
)
def test_the_series_is_one_series_strictly_increasing_from_any_start(
    expression: str, change: tuple[str, datetime], offset: int
) -> None:
    zone, at = change
    schedule = CrontabSchedule(expression, zone)
    start = at + timedelta(seconds=offset)
    # From a day earlier the series passes `start`; from `start` it is the same series.
    early = schedule.fire_times(start - timedelta(days=1))
    continuing = [f for f in islice(early, 2000) if f > start][:20]
    fires = take(schedule, start, 20)
    assert fires == continuing
    assert all(a < b for a, b in pairwise(fires))
    assert fires[0] > start

