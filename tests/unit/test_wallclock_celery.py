"""schedule.crontab's fire times are celery beat's, checked against Celery itself.

celery.schedules.crontab driven like beat's loop on a fake clock (tests.data.celery_compare)
and scheduling.CrontabSchedule, two days around each daylight-saving change of Berlin and
New York (and Lord Howe's half-hour and Santiago's midnight changes), for schedules that
meet the skipped and the repeated hour in every way.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import takewhile

import pytest
from celery.schedules import crontab

from celery_operator.scheduling import CrontabSchedule
from tests.data.celery_compare import assert_same_runs, beat_runs

EXPRESSIONS = [
    "* * * * *",
    "*/15 * * * *",
    "0 * * * *",
    "30 2 * * *",
    "30 1 * * *",
    "*/30 2 * * *",
    "0,30 1-3 * * *",
    "10,30 2,4 * * *",
    "15 2 * * 0",
    "59 1 * * *",
    "0 3 * * *",
    "0 0 * * *",
    "30 23 * * *",
    "15,45 * * * *",
]
CHANGES = [
    ("Europe/Berlin", datetime(2026, 3, 29, 1, tzinfo=UTC)),
    ("Europe/Berlin", datetime(2026, 10, 25, 1, tzinfo=UTC)),
    ("America/New_York", datetime(2026, 3, 8, 7, tzinfo=UTC)),
    ("America/New_York", datetime(2026, 11, 1, 6, tzinfo=UTC)),
    # Half an hour at 02:00 local; Santiago's clocks change at midnight.
    ("Australia/Lord_Howe", datetime(2026, 4, 4, 15, tzinfo=UTC)),
    ("Australia/Lord_Howe", datetime(2026, 10, 3, 15, 30, tzinfo=UTC)),
    ("America/Santiago", datetime(2026, 4, 5, 3, tzinfo=UTC)),
    ("America/Santiago", datetime(2026, 9, 6, 4, tzinfo=UTC)),
]
AROUND = timedelta(days=1)


@pytest.mark.parametrize(("zone", "change"), CHANGES, ids=[f"{z}-{c:%m}" for z, c in CHANGES])
def test_crontab_fire_times_are_celery_beats_around_the_change(
    zone: str, change: datetime
) -> None:
    start, end = change - AROUND, change + AROUND
    for expression in EXPRESSIONS:
        minute, hour, day_of_month, month_of_year, day_of_week = expression.split()
        celery = crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                         month_of_year=month_of_year, day_of_week=day_of_week)
        theirs = list(beat_runs(celery, zone, start, end))
        ours = list(takewhile(lambda fire: fire <= end,
                              CrontabSchedule(expression, zone).fire_times(start)))
        assert theirs, expression
        assert_same_runs(f"{expression} in {zone}", ours, theirs)


# Restricted day of the month AND day of the week, as Celery requires (cron takes either):
# the first Monday of each month, Friday the 13th, weekdays on odd days of the month.
BOTH_DAYS = ["0 9 1-7 * 1", "0 9 13 * 5", "30 8 */2 * 1-5"]


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
@pytest.mark.parametrize("expression", BOTH_DAYS)
def test_both_day_fields_must_match_as_in_celery(zone: str, expression: str) -> None:
    # Four months: two Fridays the 13th (February, March), Berlin's spring change, and each
    # month's first Monday; a whole year took beat's loop ~10 s per case.
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC)
    minute, hour, day_of_month, month_of_year, day_of_week = expression.split()
    celery = crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                     month_of_year=month_of_year, day_of_week=day_of_week)
    theirs = list(beat_runs(celery, zone, start, end))
    ours = list(takewhile(lambda fire: fire <= end,
                          CrontabSchedule(expression, zone).fire_times(start)))
    assert theirs, expression
    assert_same_runs(f"{expression} in {zone}", ours, theirs)


def test_the_first_monday_of_each_month() -> None:
    runs = CrontabSchedule("0 9 1-7 * 1", "Europe/Berlin").fire_times(
        datetime(2026, 1, 1, tzinfo=UTC))
    assert [next(runs).isoformat() for _ in range(4)] == [
        "2026-01-05T08:00:00+00:00", "2026-02-02T08:00:00+00:00",
        "2026-03-02T08:00:00+00:00", "2026-04-06T07:00:00+00:00"]
