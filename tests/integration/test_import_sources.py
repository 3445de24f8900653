"""`celery-operator import` from django-celery-beat's and RedBeat's real storage.

django-celery-beat rows are made by the real package (its migrations and models, in a
subprocess: tests/data/django_beat_rows.py) in a real PostgreSQL (devstack PostgresServer)
and a real SQLite file; RedBeat entries by the real celery-redbeat in a real redis-server.
The imported manifests are checked field by field, and the runs of each schedule against
the runs celery beat makes of the row's own schedule object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import takewhile
from pathlib import Path
from typing import Any

import pytest
import yaml
from celery import Celery
from celery.schedules import crontab, schedule

from celery_operator.api.periodic import parse_periodic_task_spec
from celery_operator.cli import main
from celery_operator.devstack import RedisServer
from celery_operator.devstack.postgresserver import PostgresServer
from celery_operator.importer import djangobeat
from celery_operator.importer.command import convert
from celery_operator.importer.dst import offset_changes
from celery_operator.importer.manifests import SOURCE_ANNOTATION
from celery_operator.importer.report import Report
from celery_operator.scheduling.periodic_plan import schedule_of
from tests.data.celery_compare import assert_same_runs

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ROWS_SCRIPT = ROOT / "tests" / "data" / "django_beat_rows.py"
START = datetime(2026, 10, 20, 0, 0, 30, tzinfo=UTC)  # Berlin's and New York's fall-back
DAYS = 14


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = PostgresServer(tmp_path_factory.mktemp("postgres")).start()
    try:
        yield server
    finally:
        server.stop()


def _make_rows(url: str) -> dict[str, list[datetime]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT)])}
    result = subprocess.run(
        [sys.executable, str(ROWS_SCRIPT), url, START.isoformat(), str(DAYS)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)
    return {name: [datetime.fromisoformat(t) for t in times] for name, times in runs.items()}


def _by_source(manifests: list[dict[str, Any]], source: str) -> dict[str, dict[str, Any]]:
    prefix = f"{source}: "
    return {m["metadata"]["annotations"][SOURCE_ANNOTATION].removeprefix(prefix): m
            for m in manifests}


EXPECTED_DJANGO_SPECS = {
    "Weekday report": {
        "schedule": {"cron": "30 7 * * 1-5", "timeZone": "Europe/Berlin"},
        "task": {"name": "reports.send", "args": [1, "a"], "kwargs": {"to": "ops"},
                 "queue": "reports", "exchange": "reports-ex", "routingKey": "reports.send",
                 "priority": 7, "headers": {"team": "ops"}},
        "expires": 1800,
    },
    "hourly-sync": {
        "schedule": {"cron": "0 * * * *", "timeZone": "Europe/Berlin"},
        "task": {"name": "sync.run"},
    },
    "monthly-invoice": {
        "schedule": {"cron": "0 9 1 * *", "timeZone": "America/New_York"},
        "task": {"name": "billing.invoice"},
        "expires": "2031-01-01T00:00:00Z",
        "endTime": "2031-01-01T00:00:00Z",
    },
    "poll": {"schedule": {"interval": "10m"}, "task": {"name": "feeds.poll"}},
    # Disabled -> suspended, one_off -> one run, first run at start_time (its anchor is
    # one interval earlier).
    "poll once": {
        "schedule": {"interval": "10m"},
        "task": {"name": "feeds.poll"},
        "suspend": True,
        "startTime": "2030-06-01T07:50:00Z",
        "maxRuns": 1,
    },
    "new-year": {"task": {"name": "party.start"}, "eta": "2030-01-01T12:00:00Z"},
}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_django_celery_beat_rows_import_and_run_as_celery_runs_them(
    backend: str, postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.url if backend == "postgresql" else f"sqlite:///{tmp_path / 'beat.sqlite3'}"
    celery_runs = _make_rows(url)
    report = Report()
    manifests = convert(djangobeat.read_entries(url), djangobeat.SOURCE, "prod", None, report,
                        now=START)
    found = _by_source(manifests, djangobeat.SOURCE)
    assert {name: m["spec"] for name, m in found.items()} == EXPECTED_DJANGO_SPECS
    assert found["new-year"]["kind"] == "ScheduledTask"
    assert found["Weekday report"]["metadata"]["annotations"][
        "celeryoperator.dev/description"] == "Sends the weekday report"
    assert {m["metadata"]["namespace"] for m in manifests} == {"prod"}
    skipped = dict(report.skipped)
    assert skipped["at sunset"].startswith("solar schedule (sunset at 52.52")
    assert skipped["friday-13th"].startswith("crontab: day_of_month and day_of_week are both")
    assert len(skipped) == 2
    notes = [(name, note) for name, note in report.changed if note.startswith("daylight")]
    end = START + timedelta(days=DAYS)
    for name, theirs in celery_runs.items():
        spec = parse_periodic_task_spec(found[name]["spec"])
        zone = spec.schedule.time_zone
        ours = list(takewhile(lambda t: t <= end, schedule_of(spec, START).fire_times(START)))
        assert theirs, name
        assert_same_runs(name, ours, theirs, offset_changes(zone, START, end), notes)
    # The one row Celery runs differently: Berlin's repeated hour at the fall-back.
    assert [name for name, _ in notes] == ["hourly-sync"]


def test_a_wrong_database_url_says_what_failed_without_the_password(
    postgres: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = postgres.url.replace(postgres.password, "not-the-password")
    assert main(["import", "django-celery-beat", "--database-url", wrong]) == 1
    err = capsys.readouterr().err
    assert f"celery:***@127.0.0.1:{postgres.port}/celery" in err
    assert 'password authentication failed for user "celery"' in err
    assert "not-the-password" not in err
    missing = tmp_path / "nothing.sqlite3"
    assert main(["import", "django-celery-beat", "--database-url", f"sqlite:///{missing}"]) == 1
    assert f"no SQLite database file '{missing}'" in capsys.readouterr().err
    assert not missing.exists()
    empty = postgres.url.rsplit("/", 1)[0] + "/postgres"
    assert main(["import", "django-celery-beat", "--database-url", empty]) == 1
    assert "no table django_celery_beat_periodictask" in capsys.readouterr().err


def test_redbeat_entries_import(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from redbeat import RedBeatSchedulerEntry
    from redbeat.schedules import rrule

    url = redis_server.db_url(9)
    app = Celery("redbeat-test", set_as_current=False)
    app.conf.redbeat_redis_url = url
    app.conf.timezone = "Europe/Berlin"
    entries = [
        RedBeatSchedulerEntry("nightly", "reports.nightly", crontab(minute=15, hour=2),
                              args=[1], kwargs={"full": True},
                              options={"queue": "reports", "expires": 600}, app=app),
        RedBeatSchedulerEntry("every-30s", "health.ping", schedule(30), app=app),
        RedBeatSchedulerEntry("paused", "health.ping", schedule(60), enabled=False, app=app),
        RedBeatSchedulerEntry("rrule", "x.y", rrule("MINUTELY", interval=5), app=app),
    ]
    for entry in entries:
        entry.save()
    code = main(["import", "redbeat", "--redis-url", url, "--timezone", "Europe/Berlin",
                 "-n", "beat"])
    out, err = capsys.readouterr()
    assert code == 0, err
    found = _by_source(list(yaml.safe_load_all(out)), "redbeat")
    assert {name: m["spec"] for name, m in found.items()} == {
        "nightly": {
            "schedule": {"cron": "15 2 * * *", "timeZone": "Europe/Berlin"},
            "task": {"name": "reports.nightly", "args": [1], "kwargs": {"full": True},
                     "queue": "reports"},
            "expires": 600,
        },
        "every-30s": {"schedule": {"interval": "30s"}, "task": {"name": "health.ping"}},
        "paused": {"schedule": {"interval": "1m"}, "task": {"name": "health.ping"},
                   "suspend": True},
    }
    assert "skipped 'rrule': rrule schedule has no PeriodicTask equivalent" in err
    assert main(["import", "redbeat", "--redis-url", "redis://127.0.0.1:1/0"]) == 1
    assert "celery-operator import: redis://127.0.0.1:1/0: " in capsys.readouterr().err
