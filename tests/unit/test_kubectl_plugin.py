"""kubectl celery's pure parts: next fire times with a fake clock, history rows, output."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from celery_operator.kubectl_plugin.history import (
    IN_STATUS,
    last_finished,
    run_history,
    runs_in_status,
    shown_history,
)
from celery_operator.kubectl_plugin.output import Refused, Shown, render, span, table, until
from celery_operator.kubectl_plugin.upcoming import due_time, periodic_upcoming

NOW = datetime(2026, 3, 28, 12, 0, 7, tzinfo=UTC)
CREATED = "2026-03-01T00:00:00Z"


def periodic(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "nightly", "namespace": "reports", "creationTimestamp": CREATED},
        "spec": {"task": {"name": "reports.send"}, **spec},
        "status": status or {},
    }


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_cron_in_a_zone_crosses_the_dst_change_at_the_same_wall_clock_time() -> None:
    up = periodic_upcoming(periodic({"schedule": {"cron": "30 2 * * *",
                                                  "timeZone": "Europe/Berlin"}}), NOW, 3)
    # 2026-03-29 02:30 does not exist in Berlin: Debian cron's rule runs it at 03:00 CEST.
    assert up.times == (at("2026-03-29T03:00:00+02:00"), at("2026-03-30T02:30:00+02:00"),
                        at("2026-03-31T02:30:00+02:00"))
    assert up.schedule == 'cron "30 2 * * *" in Europe/Berlin'
    assert up.zone == "Europe/Berlin" and up.note is None


def test_interval_counts_from_start_time_and_the_last_scheduled_run() -> None:
    obj = periodic({"schedule": {"interval": "10m"}, "startTime": "2026-03-28T11:00:00Z"},
                   {"lastScheduleTime": "2026-03-28T12:10:00Z"})
    up = periodic_upcoming(obj, NOW, 2)
    # After the later of now and lastScheduleTime, as status.nextScheduleTimes is.
    assert up.times == (at("2026-03-28T12:20:00+00:00"), at("2026-03-28T12:30:00+00:00"))
    assert up.schedule == "every 10m from 2026-03-28T11:00:00Z"
    assert up.zone is None


def test_suspended_has_no_next_time_and_says_how_to_resume() -> None:
    up = periodic_upcoming(periodic({"schedule": {"interval": "1m"}, "suspend": True}), NOW, 5)
    assert up.times == ()
    assert up.note == "suspended: no runs until it is resumed (kubectl celery resume nightly)"


def test_max_runs_counts_the_runs_made() -> None:
    obj = periodic({"schedule": {"interval": "1h"}, "maxRuns": 5}, {"totalRuns": 3})
    up = periodic_upcoming(obj, NOW, 5)
    assert len(up.times) == 2
    assert up.note == "maxRuns is 5; 3 run(s) made so far"
    done = periodic_upcoming(periodic({"schedule": {"interval": "1h"}, "maxRuns": 5},
                                      {"totalRuns": 5}), NOW, 5)
    assert (done.times, done.note) == ((), "maxRuns is 5; 5 run(s) made so far")


def test_end_time_is_inclusive_and_ends_the_list() -> None:
    obj = periodic({"schedule": {"cron": "0 * * * *"}, "endTime": "2026-03-28T14:00:00Z"})
    up = periodic_upcoming(obj, NOW, 5)
    assert up.times == (at("2026-03-28T13:00:00+00:00"), at("2026-03-28T14:00:00+00:00"))
    assert up.note == "endTime is 2026-03-28T14:00:00Z"


def test_an_invalid_spec_is_refused_with_its_field() -> None:
    with pytest.raises(Refused, match=r"periodictask/nightly has an invalid spec, so the "
                       r"operator runs nothing for it: .*spec\.schedule\.timeZone"):
        periodic_upcoming(periodic({"schedule": {"cron": "0 * * * *",
                                                 "timeZone": "Mars/Olympus"}}), NOW, 5)


def test_due_time_is_the_resolved_one_else_countdown_from_creation() -> None:
    task = {"metadata": {"name": "t", "creationTimestamp": CREATED},
            "spec": {"task": {"name": "x"}, "countdown": 90}}
    assert due_time(task) == at("2026-03-01T00:01:30+00:00")
    assert due_time({**task, "status": {"dueTime": "2026-03-02T00:00:00Z"}}) == at(
        "2026-03-02T00:00:00+00:00")


# ---- history ---------------------------------------------------------------------------------


def run(name: str, scheduled: str, phase: str | None, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"celeryoperator.dev/manual-run": "true"}
                     if "-manual-" in name else {},
                     "annotations": {"celeryoperator.dev/scheduled-time": scheduled}},
        "status": {"phase": phase, **status} if phase else status,
    }


def test_history_joins_recent_runs_with_the_runs_that_still_exist() -> None:
    parent = periodic({"schedule": {"interval": "1m"}}, {
        "totalRuns": 4, "missedRuns": 1, "lastSuccessfulTime": "2026-03-28T12:01:00Z",
        "recentRuns": [
            {"name": "nightly-1", "scheduledTime": "2026-03-28T12:00:00Z", "phase": "Failed"},
            {"name": "nightly-2", "scheduledTime": "2026-03-28T12:01:00Z", "phase": "Pending"},
            {"name": "nightly-3", "scheduledTime": "2026-03-28T12:02:00Z", "phase": "Pending"},
        ]})
    runs = [
        run("nightly-2", "2026-03-28T12:01:00Z", "Succeeded",
            startTime="2026-03-28T12:01:00.25Z", completionTime="2026-03-28T12:01:02Z"),
        run("nightly-3", "2026-03-28T12:02:00Z", None),
        run("nightly-manual-9", "2026-03-28T12:01:30Z", "Started",
            startTime="2026-03-28T12:01:31.5Z"),
    ]
    rows = run_history(parent, runs)
    assert [(r.name, r.outcome, r.manual, r.lateness, r.duration) for r in rows] == [
        ("nightly-1", "Failed", False, "-", "-"),  # deleted by the history limit
        ("nightly-2", "Succeeded", False, "250ms", "1.75s"),
        ("nightly-manual-9", "Started", True, "1.5s", "-"),
        ("nightly-3", "Pending", False, "-", "-"),
    ]
    assert [r.name for r in run_history(parent, runs, limit=2)] == ["nightly-manual-9",
                                                                     "nightly-3"]
    shown = shown_history(parent, rows)
    assert shown.text.splitlines() == [
        "RUN                SCHEDULED              OUTCOME     LATE    DURATION",
        "nightly-1          2026-03-28T12:00:00Z   Failed      -       -",
        "nightly-2          2026-03-28T12:01:00Z   Succeeded   250ms   1.75s",
        "nightly-manual-9   2026-03-28T12:01:30Z   Started     1.5s    -",
        "nightly-3          2026-03-28T12:02:00Z   Pending     -       -",
        "4 run(s) made, 1 missed, 0 skipped; last success: 2026-03-28T12:01:00Z",
    ]
    assert shown.data["runs"][1] == {
        "name": "nightly-2", "scheduledTime": "2026-03-28T12:01:00Z", "outcome": "Succeeded",
        "manual": False, "startTime": "2026-03-28T12:01:00Z", "lateness": "250ms",
        "duration": "1.75s"}


def test_history_and_result_read_runs_kept_in_status() -> None:
    """runObjects: Never — the runs are entries of status.runs, not objects."""
    parent = periodic({"schedule": {"interval": "1m"}, "runObjects": "Never"}, {
        "recentRuns": [
            {"name": "nightly-1", "scheduledTime": "2026-03-28T12:00:00Z", "phase": "Pending"},
        ],
        "runs": {
            "nightly-1": {"scheduledTime": "2026-03-28T12:00:00Z", "status": {
                "phase": "Succeeded", "result": 4, "startTime": "2026-03-28T12:00:00.5Z",
                "completionTime": "2026-03-28T12:00:01Z"}},
            "nightly-manual-7": {"scheduledTime": "2026-03-28T12:00:30Z", "manual": True,
                                 "status": {"phase": "Dispatching"}},
        }})
    rows = run_history(parent, [])
    assert [(r.name, r.outcome, r.manual, r.lateness, r.duration) for r in rows] == [
        ("nightly-1", "Succeeded", False, "500ms", "500ms"),
        ("nightly-manual-7", "Dispatching", True, "-", "-"),
    ]
    finished = last_finished(runs_in_status(parent))
    assert finished is not None
    assert (finished["metadata"]["name"], finished["status"]["result"]) == ("nightly-1", 4)
    assert finished[IN_STATUS] is True


def test_last_finished_is_the_latest_nominal_time_among_finished_runs() -> None:
    runs = [run("n-3", "2026-03-28T12:03:00Z", "Started"),
            run("n-2", "2026-03-28T12:02:00Z", "Failed"),
            run("n-1", "2026-03-28T12:01:00Z", "Succeeded")]
    found = last_finished(runs)
    assert found is not None and found["metadata"]["name"] == "n-2"
    assert last_finished(runs[:1]) is None


# ---- output ----------------------------------------------------------------------------------


def test_table_aligns_columns_three_spaces_apart() -> None:
    assert table(["A", "LONGER"], [["xyz", "1"], ["", "22"]]).splitlines() == [
        "A     LONGER", "xyz   1", "      22"]


@pytest.mark.parametrize(("delta", "text"), [
    (timedelta(milliseconds=312.4), "312ms"),
    (timedelta(seconds=65.25), "1m5.25s"),
    (timedelta(seconds=-2), "-2s"),
    (timedelta(0), "0s"),
])
def test_span_is_signed_and_to_the_millisecond(delta: timedelta, text: str) -> None:
    assert span(delta) == text


def test_until_shows_days_and_seconds_only_under_an_hour() -> None:
    assert until(NOW + timedelta(minutes=12, seconds=29.6), NOW) == "in 12m30s"
    assert until(NOW + timedelta(hours=5, minutes=47, seconds=59), NOW) == "in 5h47m"
    assert until(NOW + timedelta(days=2, hours=5, minutes=47), NOW) == "in 2d5h47m"
    assert until(NOW + timedelta(days=1), NOW) == "in 1d"
    assert until(NOW - timedelta(minutes=2), NOW) == "2m ago"


def test_render_json_and_yaml_carry_the_data_and_table_the_text() -> None:
    shown = Shown("text", {"next": [{"utc": "2026-03-29T01:00:00Z",
                                     "local": NOW.astimezone(ZoneInfo("Asia/Kolkata"))
                                     .isoformat()}]})
    assert render(shown, "table") == "text"
    assert json.loads(render(shown, "json")) == shown.data
    assert yaml.safe_load(render(shown, "yaml")) == shown.data
