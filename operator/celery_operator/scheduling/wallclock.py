"""Celery-style crontab schedules, evaluated on the wall clock as Celery beat does.

A PeriodicTask's ``schedule.crontab`` fires exactly when celery beat fires that crontab
(``schedule.cron`` keeps Debian cron's semantics: scheduling/cron.py). Celery's
``crontab.remaining_delta`` finds the next minute matching the fields after the last run's
LOCAL wall-clock time and turns it into an instant by giving that naive time the zone
(``datetime.replace``, fold 0), so around daylight-saving changes (verified against
celery 5.7 driven like beat's loop, tests/unit/test_wallclock_celery.py):

* a time inside the skipped hour runs at the same minute of the next hour
  (``30 2 * * *`` in Europe/Berlin on 2026-03-29: 03:30 CEST); the search then resumes
  from that wall-clock time, so matches it jumped over never run (``*/15 * * * *``:
  01:45 CET, 03:00 CEST, 03:15 CEST);
* a time in the repeated hour runs at its first occurrence only: the search moves on from
  02:59 to 03:00, never into the second 02:xx (``@hourly``-like ``0 * * * *`` runs at
  02:00 CEST and then 03:00 CET, two hours later).

The fire times are those of a beat that has been running all along: from any instant the
next fire time is the same whatever the series started at, so missed-run logic can bisect
it. (A beat started within a few hours after a change can differ from this once: it
searches from its own start's wall-clock time.)

Like Celery (and unlike cron), a restricted day of the month and a restricted day of the week
must both match: ``0 9 1-7 * 1`` is the first Monday of each month.

All fire times are aware UTC datetimes, strictly increasing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cronsim import CronSim

from celery_operator.scheduling._aware import to_utc
from celery_operator.scheduling.cron import CronSchedule, _five_fields, _zone

__all__ = ["CrontabSchedule"]

# Longer than any daylight-saving shift (at most 2 h): an instant this far before `after`
# lies before the change that may have shifted runs past `after`, so a search started there
# meets every run a continuously running beat makes after `after`.
_RESYNC = timedelta(hours=4)


@dataclass(frozen=True)
class CrontabSchedule(CronSchedule):
    """Crontab fields (as a five-field expression) in an IANA zone, Celery's wall clock:
    a CronSchedule (same validation, same next_after) whose fire times are beat's."""

    def fire_times(self, after: datetime) -> Iterator[datetime]:
        """Yield the fire times strictly after ``after``, in order, as aware UTC datetimes."""
        after_utc = to_utc(after, "after")
        zone = _zone(self.time_zone)
        start = after_utc
        try:
            earlier = after_utc - _RESYNC
            if earlier.astimezone(zone).utcoffset() != after_utc.astimezone(zone).utcoffset():
                start = earlier
            wall = start.astimezone(zone).replace(tzinfo=None)
            last = start
            fields = _five_fields(self.expression)
            both_days = _both_days_checks(fields)
            while True:
                for match in CronSim(fields, wall):
                    if both_days and not all(_matches(check, match) for check in both_days):
                        continue  # Celery: the day of the month AND the day of the week
                    # Celery: the naive match gets the zone (fold 0: a repeated time is its
                    # first occurrence, a skipped one moves on by the gap).
                    fire = match.replace(tzinfo=zone).astimezone(UTC)
                    if fire <= last:
                        continue
                    last = fire
                    if fire > after_utc:
                        yield fire
                    shown = fire.astimezone(zone).replace(tzinfo=None)
                    if shown != match:
                        # Shifted out of a skipped hour: beat's next search starts from the
                        # wall-clock time it ran at.
                        wall = shown
                        break
                else:
                    return  # cronsim found nothing in 50 years
        except OverflowError:
            return  # past year 9999: the series simply ends


def _both_days_checks(fields: str) -> tuple[str, str] | None:
    """When both day fields are restricted, cron (and CronSim) fires on days matching
    EITHER, Celery's crontab only on days matching BOTH ("0 9 1-7 * 1": the first Monday
    of the month): the two expressions a match must then satisfy, one per day field."""
    minute, hour, day_of_month, month, day_of_week = fields.split()
    if day_of_month == "*" or day_of_week == "*":
        return None
    return (f"{minute} {hour} {day_of_month} {month} *", f"{minute} {hour} * {month} {day_of_week}")


def _matches(expression: str, wall: datetime) -> bool:
    """`wall` (a naive wall-clock minute) is a match of `expression`."""
    return next(iter(CronSim(expression, wall - timedelta(minutes=1))), None) == wall
