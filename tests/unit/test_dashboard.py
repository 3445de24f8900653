"""The dashboard's pure parts: rows from raw (even broken) objects, the overview, the
task table's filter/sort/page, the schedule sentence, and the pages' escaping and cuts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from celery_operator.dashboard import pages
from celery_operator.dashboard.html import SHOWN_CHARS
from celery_operator.dashboard.queries import TableQuery, overview, select
from celery_operator.dashboard.rows import schedule_row, task_row
from celery_operator.dashboard.store import Cache
from celery_operator.dashboard.words import cron_words
from celery_operator.kubectl_plugin.main import main as plugin_main

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def st(name: str, ns: str = "a", phase: str | None = None, due: datetime | None = None,
       **status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": "2026-12-01T10:00:00Z"},
        "spec": {"task": {"name": "demo.add", "args": [1, 2]}}}
    if phase:
        obj["status"] = {"phase": phase, **status}
        if due:
            obj["status"]["dueTime"] = due.strftime("%Y-%m-%dT%H:%M:%SZ")
    return obj


def test_a_broken_object_still_makes_a_row() -> None:
    row = task_row({"metadata": {"name": "x", "namespace": "a"}, "spec": {"task": "oops"},
                    "status": {"attempt": "two", "dueTime": "not a time"}})
    assert (row.name, row.task, row.phase, row.attempts, row.due) == ("x", "", "Pending", 0, None)
    assert schedule_row({"metadata": {"name": "p"}, "spec": None}).missed == 0


def test_overview_counts_by_namespace_and_app_and_lists_what_matters() -> None:
    rows = [task_row(o) for o in (
        st("a1", "a", "Scheduled", NOW + timedelta(minutes=30)),
        st("a2", "a", "Scheduled", NOW + timedelta(hours=2)),
        st("b1", "b", "Failed", completionTime="2026-12-01T11:00:00Z"),
        st("b2", "b"))]
    missed = schedule_row({"metadata": {"name": "p", "namespace": "a"},
                           "status": {"missedRuns": 3}})
    data = overview(rows, [missed, schedule_row({"metadata": {"name": "q"}})], NOW)
    assert data.by_namespace == {"a": {"Scheduled": 2}, "b": {"Failed": 1, "Pending": 1}}
    assert data.by_app == {"default": {"Scheduled": 2, "Failed": 1, "Pending": 1}}
    assert [r.name for r in data.due_soon] == ["a1"] and data.due_soon_count == 1
    assert [r.name for r in data.failures] == ["b1"]
    assert [s.name for s in data.missed] == ["p"]


def test_the_table_filters_sorts_and_pages() -> None:
    rows = [task_row(st(f"t{i:03d}", "a" if i % 2 else "b", "Scheduled",
                        NOW + timedelta(minutes=200 - i))) for i in range(120)]
    page = select(rows, TableQuery(namespace="a", sort="due"), per_page=50)
    assert (page.total, page.pages, page.page) == (60, 2, 1)
    assert [r.name for r in page.rows[:2]] == ["t119", "t117"]  # soonest first
    last = select(rows, TableQuery.from_params({"namespace": "a", "sort": "name",
                                                "order": "desc", "page": "9"}), per_page=50)
    assert last.page == 2 and [r.name for r in last.rows] == [f"t{i:03d}" for i in
                                                              range(19, 0, -2)]
    assert select(rows, TableQuery(text="T005")).total == 1
    assert TableQuery.from_params({"sort": "evil", "page": "x"}) == TableQuery()


def test_the_cache_keeps_one_row_per_object_and_forgets_deleted_ones() -> None:
    cache = Cache(task_row)
    cache.replace([st("x"), st("y")])
    cache.apply("MODIFIED", st("x", phase="Started"))
    cache.apply("DELETED", st("y"))
    assert [(r.name, r.phase) for r in cache.rows()] == [("x", "Started")]
    assert cache.get(("a", "y")) is None and cache.synced


def test_a_first_page_shows_until_the_whole_list_replaces_it() -> None:
    cache = Cache(task_row)
    cache.preview([st("a"), st("b")], remaining=3)
    assert [r.name for r in cache.rows()] == ["a", "b"] and not cache.synced
    assert cache.loaded() == (2, 5)
    assert pages.loading("ScheduledTask", *cache.loaded()) == (
        "Loading ScheduledTasks: 2 of 5 so far; this page fills in as the rest arrive.")
    cache.replace([st(name) for name in "bcdef"])  # "a" was deleted meanwhile
    assert sorted(r.name for r in cache.rows()) == list("bcdef")
    assert cache.synced and cache.loaded() == (5, None)
    cache.preview([st("a")], remaining=0)  # too late: a whole list is shown
    assert cache.get(("a", "a")) is None


def test_schedules_in_words() -> None:
    assert cron_words("30 2 * * *") == "every day at 02:30"
    assert cron_words("30 7 * * 1") == "every Monday at 07:30"
    assert cron_words("0 9 1 * *") == "on day 1 of every month at 09:00"
    assert cron_words("*/15 * * * *") == "every 15 minutes"
    assert cron_words("0 9 * 1 *") is None


def test_pages_escape_what_objects_hold_and_cut_huge_results() -> None:
    obj = st("<b>x</b>", phase="Succeeded", result="r" * (SHOWN_CHARS * 3))
    view = pages.task_detail(obj, [], NOW, UTC, task_row(obj))
    assert "<b>x</b>" not in view.body and "&lt;b&gt;x&lt;/b&gt;" in view.body
    assert f"cut at {SHOWN_CHARS} of" in view.body
    assert 'href="/yaml/scheduledtasks/a/%3Cb%3Ex%3C%2Fb%3E"' in view.body


def test_a_periodic_task_with_a_broken_spec_renders_the_reason() -> None:
    obj = {"metadata": {"name": "p", "namespace": "a", "creationTimestamp":
                        "2026-12-01T10:00:00Z"}, "spec": {"schedule": {"cron": "nope"}}}
    view = pages.schedule_detail(obj, [], [], NOW, UTC, schedule_row(obj))
    assert 'id="invalid"' in view.body and "has an invalid spec" in view.body


def test_the_dashboard_verb_must_come_first(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        plugin_main(["-n", "team", "dashboard"])
    assert exited.value.code == 2
    assert "dashboard must come first: kubectl celery dashboard [-n NAMESPACE]" in (
        capsys.readouterr().err)


def test_a_dashboard_without_credentials_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plugin_main(["dashboard", "--no-browser", "--kubeconfig",
                        str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err.startswith("error: no usable kubeconfig:")
