"""Item 4: every converted corpus entry runs when Celery beat runs it.

For each real-world entry of tests/data/beat_corpus.py, imported as `celery-operator import
beat` does, the fire times the engine computes (scheduling.periodic_plan.schedule_of) are
compared with the runs celery beat makes of the ORIGINAL entry (celery.schedules driven
like beat's loop on a fake clock, importer.dst.beat_runs), over two weeks: in UTC, and in
Europe/Berlin and America/New_York over windows holding a daylight-saving change. Runs may
differ only within a day of such a change, and exactly where the importer reported it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import takewhile

import pytest
from celery import Celery
from celery.schedules import maybe_schedule

from celery_operator.api.periodic import (
    PeriodicTaskSpec,
    ScheduleSpec,
    parse_periodic_task_spec,
)
from celery_operator.api.task import TaskCall
from celery_operator.importer.beat import read_entries
from celery_operator.importer.command import convert
from celery_operator.importer.dst import beat_runs, offset_changes
from celery_operator.importer.manifests import SOURCE_ANNOTATION
from celery_operator.importer.report import Report
from celery_operator.scheduling.periodic_plan import schedule_of
from tests.data.beat_corpus import CORPUS, CorpusEntry
from tests.data.celery_compare import assert_same_runs, stamp

TWO_WEEKS = timedelta(days=14)
FALL = datetime(2026, 10, 20, 0, 0, 30, tzinfo=UTC)  # Berlin 10-25, New York 11-01
BERLIN_SPRING = datetime(2026, 3, 22, 0, 0, 30, tzinfo=UTC)  # Berlin 03-29
NEW_YORK_SPRING = datetime(2026, 2, 28, 0, 0, 30, tzinfo=UTC)  # New York 03-08
WINDOWS = [
    ("UTC", FALL),
    ("Europe/Berlin", FALL),
    ("Europe/Berlin", BERLIN_SPRING),
    ("America/New_York", FALL),
    ("America/New_York", NEW_YORK_SPRING),
]
# An interval under a minute makes ~10^5 runs in two weeks; Celery's arithmetic is the same
# at every step, so those are compared over the two days around the window's change only.
SHORT_INTERVAL = timedelta(minutes=1)
SHORT_SPAN = timedelta(days=2)


def test_the_corpus_has_forty_real_entries_from_several_projects() -> None:
    assert len(CORPUS) >= 40
    assert len({entry.source.repo for entry in CORPUS}) >= 5
    assert len({(entry.source.repo, entry.name) for entry in CORPUS}) == len(CORPUS)


@cache
def _import(zone: str, now: datetime) -> tuple[dict[str, PeriodicTaskSpec], Report]:
    app = Celery("corpus", set_as_current=False)
    app.conf.timezone = zone
    app.conf.beat_schedule = {entry.name: entry.entry for entry in CORPUS}
    report = Report()
    manifests = convert(read_entries(app), "beat", None, None, report, now=now)
    specs = {
        m["metadata"]["annotations"][SOURCE_ANNOTATION].removeprefix("beat: "): (
            parse_periodic_task_spec(m["spec"])
        )
        for m in manifests
    }
    return specs, report


_CELERY_RUNS: dict[tuple[str, str, datetime, datetime], list[datetime]] = {}


def _celery_runs(entry: CorpusEntry, zone: str, start: datetime, end: datetime) -> list[datetime]:
    # Many entries share a schedule: simulate each (schedule, zone, span) once.
    schedule = maybe_schedule(entry.entry["schedule"], bool(entry.entry.get("relative")))
    key = (repr(schedule), zone, start, end)
    if key not in _CELERY_RUNS:
        _CELERY_RUNS[key] = list(beat_runs(schedule, zone, start, end))
    return _CELERY_RUNS[key]


@cache
def _operator_runs(spec: ScheduleSpec, start: datetime, end: datetime) -> list[datetime]:
    # The engine anchors an interval at the PeriodicTask's creation: beat's start here.
    task = PeriodicTaskSpec(schedule=spec, task=TaskCall(name="x"))
    fires = schedule_of(task, created=start).fire_times(start)
    return list(takewhile(lambda fire: fire <= end, fires))


def _span(spec: PeriodicTaskSpec, zone: str, start: datetime) -> tuple[datetime, datetime]:
    interval = spec.schedule.interval
    if interval is None or interval >= SHORT_INTERVAL:
        return start, start + TWO_WEEKS
    changes = offset_changes(zone, start, start + TWO_WEEKS)
    middle = changes[0] if changes else start + SHORT_SPAN / 2
    return middle - SHORT_SPAN / 2, middle + SHORT_SPAN / 2


@pytest.mark.parametrize(("zone", "start"), WINDOWS, ids=[f"{z}-{s:%m}" for z, s in WINDOWS])
def test_every_corpus_entry_runs_when_celery_beat_runs_it(zone: str, start: datetime) -> None:
    specs, report = _import(zone, start)
    assert report.skipped == []
    assert sorted(specs) == sorted(entry.name for entry in CORPUS)
    changes = offset_changes(zone, start, start + TWO_WEEKS)
    assert (zone == "UTC") == (changes == ())
    notes = [(name, note) for name, note in report.changed if note.startswith("daylight")]
    differing: set[str] = set()
    for entry in CORPUS:
        spec = specs[entry.name]
        begin, end = _span(spec, zone, start)
        ours = _operator_runs(spec.schedule, begin, end)
        theirs = _celery_runs(entry, zone, begin, end)
        assert theirs, entry.name  # the window really exercises the entry
        if assert_same_runs(entry.name, ours, theirs, changes, notes):
            differing.add(entry.name)
    # Entries with equal runs in this window carry no note about its changes.
    for name, note in notes:
        if any(stamp(change) in note for change in changes):
            assert name in differing, (name, note)
