"""Makes django-celery-beat rows with the real package, then prints Celery's runs of them.

Run as a script (its own process: Django is configured once per database):
    python django_beat_rows.py DATABASE_URL START_ISO DAYS
Creates the tables with django-celery-beat's migrations, the rows below through its
models, and prints JSON {task name: [UTC ISO run times]} for the crontab and interval rows:
the runs celery beat makes of each row's own schedule object (PeriodicTask.schedule, a
TzAwareCrontab in the row's zone) from START over DAYS days.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit


def _configure(url: str) -> None:
    import django
    from django.conf import settings

    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        database = {"ENGINE": "django.db.backends.sqlite3", "NAME": url.removeprefix("sqlite:///")}
    else:
        database = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parts.path.lstrip("/"),
            "USER": parts.username,
            "PASSWORD": parts.password,
            "HOST": parts.hostname,
            "PORT": str(parts.port),
        }
    settings.configure(
        INSTALLED_APPS=["django_celery_beat"],
        DATABASES={"default": database},
        USE_TZ=True,
        TIME_ZONE="UTC",
        CELERY_TIMEZONE="UTC",
    )
    django.setup()


def _make_rows() -> None:
    from zoneinfo import ZoneInfo

    from django_celery_beat.models import (
        ClockedSchedule,
        CrontabSchedule,
        IntervalSchedule,
        PeriodicTask,
        SolarSchedule,
    )

    weekdays = CrontabSchedule.objects.create(
        minute="30", hour="7", day_of_week="1-5", timezone=ZoneInfo("Europe/Berlin")
    )
    hourly = CrontabSchedule.objects.create(minute="0", timezone=ZoneInfo("Europe/Berlin"))
    monthly = CrontabSchedule.objects.create(
        minute="0", hour="9", day_of_month="1", timezone=ZoneInfo("America/New_York")
    )
    both = CrontabSchedule.objects.create(minute="0", hour="0", day_of_week="5",
                                          day_of_month="13")
    ten_minutes = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.MINUTES)
    clocked = ClockedSchedule.objects.create(clocked_time=datetime(2030, 1, 1, 12, tzinfo=UTC))
    sunset = SolarSchedule.objects.create(event="sunset", latitude=52.52, longitude=13.40)
    PeriodicTask.objects.create(
        name="Weekday report", task="reports.send", crontab=weekdays,
        args=json.dumps([1, "a"]), kwargs=json.dumps({"to": "ops"}),
        queue="reports", exchange="reports-ex", routing_key="reports.send", priority=7,
        headers=json.dumps({"team": "ops"}), expire_seconds=1800,
        description="Sends the weekday report",
    )
    PeriodicTask.objects.create(name="hourly-sync", task="sync.run", crontab=hourly)
    PeriodicTask.objects.create(
        name="monthly-invoice", task="billing.invoice", crontab=monthly,
        expires=datetime(2031, 1, 1, tzinfo=UTC),
    )
    PeriodicTask.objects.create(name="friday-13th", task="luck.check", crontab=both)
    PeriodicTask.objects.create(
        name="poll once", task="feeds.poll", interval=ten_minutes, enabled=False,
        one_off=True, start_time=datetime(2030, 6, 1, 8, tzinfo=UTC),
    )
    PeriodicTask.objects.create(name="poll", task="feeds.poll", interval=ten_minutes)
    PeriodicTask.objects.create(name="new-year", task="party.start", clocked=clocked,
                                one_off=True)
    PeriodicTask.objects.create(name="at sunset", task="lights.on", solar=sunset)


def _celery_runs(start: datetime, days: int) -> dict[str, list[str]]:
    from django_celery_beat.models import PeriodicTask

    from celery_operator.importer.dst import beat_runs

    runs: dict[str, list[str]] = {}
    for row in PeriodicTask.objects.filter(name__in=["Weekday report", "hourly-sync",
                                                     "monthly-invoice", "poll"]):
        zone = row.crontab.timezone.key if row.crontab else "UTC"
        times = beat_runs(row.schedule, zone, start, start + timedelta(days=days))
        runs[row.name] = [t.astimezone(UTC).isoformat() for t in times]
    return runs


def main() -> None:
    url, start, days = sys.argv[1], datetime.fromisoformat(sys.argv[2]), int(sys.argv[3])
    _configure(url)
    from django.core.management import call_command

    call_command("migrate", "django_celery_beat", verbosity=0)
    _make_rows()
    json.dump(_celery_runs(start, days), sys.stdout)


if __name__ == "__main__":
    main()
