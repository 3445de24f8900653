"""The pages, rendered on the server from the cache (the detail pages also show Events)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any
from urllib.parse import quote

from celery_operator.api import PERIODIC_PLURAL, SCHEDULED_PLURAL, Phase
from celery_operator.kubectl_plugin.history import run_history
from celery_operator.kubectl_plugin.output import Refused
from celery_operator.kubectl_plugin.upcoming import periodic_upcoming

from .html import NONE, age, as_json, as_yaml, button, cut, e, link, table, when
from .queries import SORTS, Overview, Page, TableQuery
from .rows import ScheduleRow, TaskRow
from .words import cron_words

PHASES = [p.value for p in Phase]
NEXT_TIMES = 5
RUNS_SHOWN = 20


@dataclass(frozen=True)
class View:
    title: str
    body: str  # the inside of <main>
    watch: str  # which kinds' changes re-render it: "scheduledtasks periodictasks"
    key: str = ""  # a detail page: plural/namespace/name


def detail_path(plural: str, namespace: str, name: str) -> str:
    return f"/{plural}/{quote(namespace, safe='')}/{quote(name, safe='')}"


def yaml_path(plural: str, namespace: str, name: str) -> str:
    return f"/yaml{detail_path(plural, namespace, name)}"


def layout(view: View, token: str, problems: Sequence[str]) -> str:
    nav = "".join(f'<a href="{path}">{label}</a>' for path, label in (
        ("/", "Overview"), (f"/{SCHEDULED_PLURAL}", "ScheduledTasks"),
        (f"/{PERIODIC_PLURAL}", "PeriodicTasks")))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(view.title)} · celery dashboard</title>"
        '<link rel="stylesheet" href="/static/style.css">'
        '<script src="/static/app.js" defer></script></head>'
        f'<body data-watch="{e(view.watch)}" data-key="{e(view.key)}" data-token="{e(token)}">'
        f'<header><strong>celery dashboard</strong><nav>{nav}</nav>'
        '<span id="live" title="live updates">●</span></header>'
        f'<div id="flash" role="status"></div>'
        f'<main id="main">{problems_html(problems)}{view.body}</main>'
        '<dialog id="confirm"><form method="dialog"><p id="confirm-text"></p>'
        '<button value="cancel">Cancel</button> '
        '<button value="ok" id="confirm-ok">Confirm</button></form></dialog>'
        "</body></html>")


def loading(kind: str, cached: int, expected: int | None) -> str:
    """The note a page carries while the first list of a kind arrives."""
    if not cached:
        return f"Loading {kind}s: the first page from the API server has not arrived yet."
    of = f" of {expected:,}" if expected else ""
    return f"Loading {kind}s: {cached:,}{of} so far; this page fills in as the rest arrive."


def problems_html(problems: Sequence[str]) -> str:
    return "".join(f'<p class="problem">{e(p)}</p>' for p in problems)


def _task_link(row: TaskRow) -> str:
    return link(detail_path(SCHEDULED_PLURAL, row.namespace, row.name), row.name)


def _phase(phase: str) -> str:
    return f'<span class="phase {e(phase.lower())}">{e(phase)}</span>'


def overview_page(data: Overview, now: datetime, zone: tzinfo) -> View:
    def counts(title: str, groups: Mapping[str, Mapping[str, int]]) -> str:
        used = [p for p in [*PHASES, "Pending"] if any(p in c for c in groups.values())]
        rows = [[e(group), *(str(c.get(p, 0)) if c.get(p) else "" for p in used),
                 str(sum(c.values()))] for group, c in groups.items()]
        return (f"<h2>{e(title)}</h2>" + (table(["", *used, "Total"], rows, "counts")
                                          if rows else "<p>No ScheduledTasks.</p>"))

    soon = table(["Namespace", "Name", "Task", "Due", "Phase"], [
        [e(r.namespace), _task_link(r), e(r.task), when(r.due, now, zone), _phase(r.phase)]
        for r in data.due_soon])
    failures = table(["Namespace", "Name", "Task", "Phase", "Error", "Finished"], [
        [e(r.namespace), _task_link(r), e(r.task), _phase(r.phase), e(r.error or NONE),
         when(r.completed, now, zone)] for r in data.failures])
    missed = table(["Namespace", "Name", "Missed", "Skipped", "Last success"], [
        [e(s.namespace), link(detail_path(PERIODIC_PLURAL, s.namespace, s.name), s.name),
         str(s.missed), str(s.skipped), when(s.last_success, now, zone)] for s in data.missed])
    body = (
        '<h1>Overview</h1><div class="grid">'
        f'<section id="by-namespace">{counts("By namespace", data.by_namespace)}</section>'
        f'<section id="by-app">{counts("By app", data.by_app)}</section></div>'
        f'<section id="due-soon"><h2>Due in the next hour ({data.due_soon_count})</h2>'
        f"{soon if data.due_soon else '<p>Nothing due.</p>'}</section>"
        f'<section id="failures"><h2>Recent failures</h2>'
        f"{failures if data.failures else '<p>No failures.</p>'}</section>"
        f'<section id="missed"><h2>Schedules that missed runs</h2>'
        f"{missed if data.missed else '<p>None missed a run.</p>'}</section>")
    return View("Overview", body, f"{SCHEDULED_PLURAL} {PERIODIC_PLURAL}")


def _options(values: Sequence[str], chosen: str, everything: str) -> str:
    return f'<option value="">{e(everything)}</option>' + "".join(
        f'<option{" selected" if v == chosen else ""}>{e(v)}</option>' for v in values)


def tasks_page(page: Page, query: TableQuery, namespaces: Sequence[str], now: datetime,
               zone: tzinfo) -> View:
    params = {"q": query.text, "namespace": query.namespace, "phase": query.phase}
    base = {k: v for k, v in params.items() if v}

    def header(column: str) -> str:
        flip = query.sort == column and not query.descending
        arrow = (" ▲" if not query.descending else " ▼") if query.sort == column else ""
        return link(f"/{SCHEDULED_PLURAL}", column.capitalize() + arrow,
                    **base, sort=column, order="desc" if flip else "asc")

    rows = [[e(r.namespace), _task_link(r), e(r.task or NONE), e(r.queue or NONE),
             _phase(r.phase), when(r.due, now, zone), str(r.attempts), e(r.worker or NONE),
             age(r.created, now)] for r in page.rows]
    sort = {"sort": query.sort, "order": "desc" if query.descending else "asc"}
    pager = " ".join(
        link(f"/{SCHEDULED_PLURAL}", label, **base, **sort, page=str(number))
        for label, number in (("« first", 1), ("< previous", page.page - 1),
                              ("next >", page.page + 1), ("last »", page.pages))
        if 1 <= number <= page.pages and number != page.page)
    body = (
        "<h1>ScheduledTasks</h1>"
        f'<form class="filters" method="get" action="/{SCHEDULED_PLURAL}">'
        f'<input name="q" id="filter-text" placeholder="name, task or queue" '
        f'value="{e(query.text)}">'
        f'<select name="namespace" id="filter-namespace">'
        f"{_options(namespaces, query.namespace, 'all namespaces')}</select>"
        f'<select name="phase" id="filter-phase">'
        f"{_options([*PHASES, 'Pending'], query.phase, 'any phase')}</select>"
        f'<input type="hidden" name="sort" value="{e(query.sort)}">'
        f'<input type="hidden" name="order" value="{"desc" if query.descending else "asc"}">'
        '<button type="submit">Filter</button></form>'
        + table([header(c) for c in SORTS], rows, "tasks")
        + f'<p class="pager"><span id="count">{page.total} ScheduledTasks, page {page.page} '
        f"of {page.pages}</span> {pager}</p>")
    return View("ScheduledTasks", body, SCHEDULED_PLURAL)


def _events(events: Sequence[Mapping[str, Any]] | str) -> str:
    if isinstance(events, str):  # the API server's refusal
        return f'<p class="problem">{e(events)}</p>'
    if not events:
        return "<p>No Events.</p>"
    return table(["Type", "Reason", "Count", "Last seen", "Message"], [
        [e(ev.get("type")), e(ev.get("reason")), e(ev.get("count") or 1),
         e(ev.get("lastTimestamp") or ev.get("eventTime") or NONE), e(ev.get("message"))]
        for ev in events], "events")


def _yaml(plural: str, obj: Mapping[str, Any]) -> str:
    meta = dict(obj.get("metadata") or {})
    meta.pop("managedFields", None)
    full = yaml_path(plural, str(meta.get("namespace")), str(meta.get("name")))
    return (f'<h2>YAML <a class="small" href="{e(full)}">(full)</a></h2>'
            + cut(as_yaml({**obj, "metadata": meta}), full))


def _mapping(raw: Any) -> Mapping[str, Any]:
    return raw if isinstance(raw, Mapping) else {}


def task_detail(obj: Mapping[str, Any], events: Sequence[Mapping[str, Any]] | str,
                now: datetime, zone: tzinfo, row: TaskRow) -> View:
    spec, status = _mapping(obj.get("spec")), _mapping(obj.get("status"))
    task = _mapping(spec.get("task"))
    full = yaml_path(SCHEDULED_PLURAL, row.namespace, row.name)
    facts = [("Namespace", e(row.namespace)), ("Task", e(row.task or NONE)),
             ("Queue", e(row.queue or NONE)), ("App", e(row.app or "default")),
             ("Phase", _phase(row.phase)), ("Due", when(row.due, now, zone)),
             ("Task ID", e(status.get("taskId") or NONE)), ("Attempt", str(row.attempts)),
             ("Retries", e(status.get("retries") or 0)), ("Worker", e(row.worker or NONE)),
             ("Finished", when(row.completed, now, zone))]
    if spec.get("revoke"):
        facts.append(("Revoke requested", e(as_json(spec["revoke"]))))
    summary = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts)
    outcome = ""
    if "result" in status:
        note = ('<p class="note">The operator kept only the first bytes of this result.</p>'
                if status.get("resultTruncated") else "")
        shown = cut(as_json(status["result"]), full)
        outcome = f'<h2>Result</h2>{note}<div id="result">{shown}</div>'
    error = _mapping(status.get("error"))
    if error:
        text = error.get("traceback") or f"{error.get('type')}: {error.get('message')}"
        outcome += f'<h2>Error</h2><div id="traceback">{cut(str(text), full)}</div>'
    attempts = [a for a in status.get("attempts") or [] if isinstance(a, Mapping)]
    attempts_html = table(["#", "Task ID", "Phase", "Queued", "Started", "Finished", "Worker",
                           "Error"], [
        [e(a.get("attempt")), e(a.get("taskId") or NONE), e(a.get("phase") or NONE),
         e(a.get("queuedTime") or NONE), e(a.get("startTime") or NONE),
         e(a.get("completionTime") or NONE), e(a.get("worker") or NONE),
         e(": ".join(str(v) for v in _mapping(a.get("error")).values()) or NONE)]
        for a in attempts], "attempts") if attempts else "<p>No attempts yet.</p>"
    finished = row.phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.REVOKED, Phase.EXPIRED,
                             Phase.INVALID)
    ref = f"scheduledtask/{row.name}"
    actions = "".join([
        "" if finished else button("Revoke", "revoke", SCHEDULED_PLURAL, row.namespace,
                                   row.name, f"Revoke {ref}?"),
        "" if finished else button("Revoke and terminate", "revoke", SCHEDULED_PLURAL,
                                   row.namespace, row.name,
                                   f"Revoke {ref} and terminate it if a worker runs it?",
                                   terminate="true"),
        button("Delete", "delete", SCHEDULED_PLURAL, row.namespace, row.name,
               f"Delete {ref}? This cannot be undone."),
    ])
    body = (
        f"<h1>ScheduledTask {e(row.name)}</h1>"
        f'<div class="actions">{actions}</div>'
        f'<table class="facts" id="facts">{summary}</table>'
        f'<h2>Arguments</h2><div id="arguments">'
        f'{cut(as_json({"args": task.get("args", []), "kwargs": task.get("kwargs", {})}), full)}'
        f"</div>{outcome}<h2>Attempts</h2>{attempts_html}"
        f'<h2>Events</h2><div id="events">{_events(events)}</div>'
        + _yaml(SCHEDULED_PLURAL, obj))
    return View(f"ScheduledTask {row.name}", body, SCHEDULED_PLURAL,
                f"{SCHEDULED_PLURAL}/{row.namespace}/{row.name}")


def schedules_page(rows: Sequence[ScheduleRow], now: datetime, zone: tzinfo) -> View:
    body = "<h1>PeriodicTasks</h1>" + (table(
        ["Namespace", "Name", "Task", "Next run", "Suspended", "Runs", "Missed", "Skipped",
         "Last success"],
        [[e(s.namespace), link(detail_path(PERIODIC_PLURAL, s.namespace, s.name), s.name),
          e(s.task or NONE), when(s.next_time, now, zone), "yes" if s.suspended else "no",
          str(s.total), str(s.missed), str(s.skipped), when(s.last_success, now, zone)]
         for s in sorted(rows, key=lambda s: (s.namespace, s.name))], "schedules")
        if rows else "<p>No PeriodicTasks.</p>")
    return View("PeriodicTasks", body, PERIODIC_PLURAL)


def _schedule(obj: Mapping[str, Any], now: datetime, zone: tzinfo) -> str:
    written = as_yaml(_mapping(obj.get("spec")).get("schedule"))
    try:
        upcoming = periodic_upcoming(obj, now, NEXT_TIMES)
    except Refused as exc:
        return f'<p class="problem" id="invalid">{e(exc)}</p><pre>{e(written)}</pre>'
    cron = upcoming.schedule.partition('"')[2].partition('"')[0]
    words = cron_words(cron) if upcoming.zone else None
    times = "".join(f"<li>{when(t, now, zone)} <small>({e(t.isoformat())})</small></li>"
                    for t in upcoming.times)
    return (f'<p id="schedule-words">{e(words or upcoming.schedule)}'
            f'{e(f" ({upcoming.zone})") if words and upcoming.zone else ""}</p>'
            f'<p>As written:</p><pre id="schedule-written">{e(written)}</pre>'
            f'<p>Time zone: <span id="time-zone">{e(upcoming.zone or "UTC")}</span></p>'
            f'<h2>Next {NEXT_TIMES} runs</h2><ol id="next-times">{times}</ol>'
            + (f'<p class="note">{e(upcoming.note)}</p>' if upcoming.note else ""))


def schedule_detail(obj: Mapping[str, Any], runs: Sequence[Mapping[str, Any]],
                    events: Sequence[Mapping[str, Any]] | str, now: datetime, zone: tzinfo,
                    row: ScheduleRow) -> View:
    try:
        history = run_history(obj, runs, RUNS_SHOWN)
    except (KeyError, TypeError, ValueError):
        history = []
    strip = "".join(
        f'<a class="run {e(r.outcome.lower())}" href="'
        f'{e(detail_path(SCHEDULED_PLURAL, row.namespace, r.name))}" '
        f'title="{e(r.name)}: {e(r.outcome)}, late {e(r.lateness)}">'
        f"<span>{e(r.outcome)}</span><small>{e(r.lateness)}</small></a>" for r in history)
    ref = f"periodictask/{row.name}"
    toggle = (button("Resume", "resume", PERIODIC_PLURAL, row.namespace, row.name,
                     f"Resume {ref}?") if row.suspended else
              button("Suspend", "suspend", PERIODIC_PLURAL, row.namespace, row.name,
                     f"Suspend {ref}? No runs are created until it is resumed."))
    actions = (button("Run now", "run", PERIODIC_PLURAL, row.namespace, row.name,
                      f"Run {ref} once now?") + toggle
               + button("Delete", "delete", PERIODIC_PLURAL, row.namespace, row.name,
                        f"Delete {ref}? This cannot be undone."))
    body = (
        f"<h1>PeriodicTask {e(row.name)}</h1><div class=\"actions\">{actions}</div>"
        f'<p>Namespace {e(row.namespace)} · task {e(row.task or NONE)} · '
        f'<span id="suspend-state">{"suspended" if row.suspended else "active"}</span></p>'
        + _schedule(obj, now, zone)
        + f'<h2>Recent runs</h2><div class="strip" id="runs">{strip or "No runs yet."}</div>'
        f'<p id="run-counts">{row.total} runs made, {row.missed} missed, {row.skipped} '
        f"skipped</p>"
        f'<h2>Events</h2><div id="events">{_events(events)}</div>'
        + _yaml(PERIODIC_PLURAL, obj))
    return View(f"PeriodicTask {row.name}", body, f"{PERIODIC_PLURAL} {SCHEDULED_PLURAL}",
                f"{PERIODIC_PLURAL}/{row.namespace}/{row.name}")


def missing_page(plural: str, namespace: str, name: str, synced: bool) -> View:
    kind = "ScheduledTask" if plural == SCHEDULED_PLURAL else "PeriodicTask"
    why = ("not found: deleted, not created yet, or not visible to your credentials"
           if synced else "not loaded yet")
    body = f'<h1>{kind} {e(name)}</h1><p class="problem" id="missing">{e(namespace)}/' \
        f"{e(name)}: {why}. This page shows it as soon as it appears.</p>"
    return View(f"{kind} {name}", body, plural, f"{plural}/{namespace}/{name}")
