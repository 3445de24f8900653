"""Scenario 6 — periodic precision: N PeriodicTasks on `* * * * *` against celery beat
(default PersistentScheduler) driving the same N entries, one after the other on one
stack: with run objects (`runObjects: Always`) for a minute, with runs kept in status
(`Never`, issue 17's budget side) for M minutes, then beat for as many.

Operator side: a child ScheduledTask's creation time is the local time its ADDED watch
event arrives (bench.watch), compared with its nominal time (annotation
`celeryoperator.dev/scheduled-time`). Children are created up to the dispatch lead
(2 s) *before* their nominal time on purpose, so this lateness is mostly negative.
Beat side: the time beat published each message (after_task_publish, bench.beat_app)
against the minute boundary. Both sides: the worker's start time against the nominal
time, and the scheduler's CPU over the measured minutes.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from celery_operator.api import API_VERSION, PERIODIC_KIND, PERIODIC_PLURAL, parse_time
from celery_operator.devstack.demo_app import STARTED_KEY
from celery_operator.scheduling.task_lifecycle import task_id_for

from . import measure
from .settings import Sizes
from .stack import Scope, Stack, log, profile_summary, scope
from .watch import AddedWatch

QUEUE = "periodic"
PARENT_LABEL = "celeryoperator.dev/periodic-task"
SCHEDULED_TIME = "celeryoperator.dev/scheduled-time"
SETTLE = 30.0  # the CPU window runs from 30 s before the first boundary to 30 s after the last
QUICK_SETTLE = 15.0


def run(stack: Stack, sizes: Sizes) -> dict[str, Any]:
    stack.flush_redis()
    n = sizes.periodic_count
    out: dict[str, Any] = {"entries": n, "minutes": sizes.periodic_minutes,
                           "always_minutes": sizes.periodic_always_minutes,
                           "beat_minutes": sizes.beat_minutes, "worker": sizes.worker_desc,
                           "concurrent": sizes.quick}
    with scope(stack, "periodic") as sc:
        sc.worker(QUEUE, concurrency=sizes.worker_concurrency, pool=sizes.worker_pool)
        op = OperatorSide(stack, sc, n)
        bounds = boundaries(time.time() + 10.0, sizes.periodic_always_minutes)
        beat = BeatSide(stack, sc, n)
        if sizes.quick:
            # Smoke mode: both schedulers in the same minute (contention: not comparable).
            _window(sc, bounds, [op, beat], QUICK_SETTLE)
        else:
            _window(sc, bounds, [op])
            op.stop()
            out["operator"] = op.finish()
            # The same entries with their runs kept in status (runObjects: Never), on
            # a fresh operator, right after: then beat. The three windows never overlap.
            never = OperatorSide(stack, sc, n, lambda ns, i: _periodic(ns, i, "Never"),
                                 name="operator-periodic-never")
            _window(sc, boundaries(time.time() + 10.0, sizes.periodic_minutes), [never])
            never.stop()
            out["operator_never"] = never.finish()
            _print("operator (runObjects Never)", out["operator_never"])
            # Started right after the operator's window (30 s after its last boundary),
            # beat waits 30 s for its first minute: the two never overlap.
            beat.start()
            _window(sc, boundaries(time.time() + 5.0, sizes.beat_minutes), [beat])
        if "operator" not in out:
            out["operator"] = op.finish()
        _print("operator", out["operator"])
        out["beat"] = beat.finish()
        _print("beat", out["beat"])
    return out


def boundaries(after: float, minutes: int) -> list[float]:
    first = math.ceil(after / 60.0) * 60.0
    return [first + 60.0 * i for i in range(minutes)]


def _sleep_until(at: float) -> None:
    time.sleep(max(at - time.time(), 0.0))


def _window(sc: Scope, bounds: list[float], sides: list[Any], settle: float = SETTLE) -> None:
    """From `settle` s before the first boundary to `settle` s after the last: CPU measured."""
    for side in sides:
        side.start()
        side.bounds = bounds
    result, requests = cpu_over(sc, bounds[0] - settle, bounds[-1] + settle)
    for side in sides:
        side.cpu = result
        side.requests = requests


def cpu_over(sc: Scope, start: float, end: float) -> tuple[dict[str, Any], dict[str, float]]:
    """Sleep until `start`; the CPU of every process and the API server's requests from
    then until `end` — every request it served, by verb and resource: what a run costs it
    (the operator's, the bench's watch, and beat's none)."""
    _sleep_until(start)
    cpu = sc.cpu_window()
    before = measure.apiserver_requests(sc.stack.apiserver_metrics_fast())
    _sleep_until(end)
    result = cpu.stop()
    after = measure.apiserver_requests(sc.stack.apiserver_metrics_fast())
    return result, {k: v for k, v in measure.request_delta(before, after).items() if v}


def _periodic(namespace: str, i: int, run_objects: str = "Always") -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": PERIODIC_KIND,
        "metadata": {"name": f"p{i:04d}", "namespace": namespace},
        "spec": {
            "schedule": {"cron": "* * * * *"},
            "task": {"name": "demo.add", "args": [i, 1], "queue": QUEUE},
            "runObjects": run_objects,
        },
    }


def _periodic_patches(stack: Stack) -> float:
    return measure.apiserver_requests(stack.apiserver_metrics_fast())[
        ("PATCH", "periodictasks", "status")]


class OperatorSide:
    """N PeriodicTasks and the operator; children seen by a watch with a local clock."""

    def __init__(self, stack: Stack, sc: Scope, n: int,
                 manifest: Callable[[str, int], dict[str, Any]] | None = None,
                 name: str = "operator-periodic", operator_args: Sequence[str] = ()) -> None:
        self.stack, self.sc, self.n = stack, sc, n
        self.bounds: list[float] = []
        self.cpu: dict[str, Any] = {}
        self.requests: dict[str, float] = {}
        self.notes: list[str] = []
        self.ns = stack.namespace("periodic")
        make = manifest or _periodic
        # Watching before anything exists: children of a big burst are created early
        # (the operator's burst-aware create-ahead), possibly before the first boundary
        # is even chosen.
        self.watch = AddedWatch(stack.api, self.ns).__enter__()
        self.op = sc.operator([self.ns], *operator_args, name=name)
        self.profile = sc.profiler(self.op.process.pid or 0, name.removeprefix("operator-"))
        before = _periodic_patches(stack)
        t = time.time()
        stack.create_many(self.ns, PERIODIC_PLURAL, [make(self.ns, i) for i in range(n)])
        self.create_seconds = time.time() - t
        self.created_at = time.time()
        if not measure.wait_for(lambda: _periodic_patches(stack) - before >= n,
                                60 + n * 0.05, 0.5):
            self.notes.append(f"the operator had not written all {n} first statuses")

    def start(self) -> None:
        pass  # running since __init__

    def stop(self) -> None:
        self.watch.stop()
        self.op.stop()

    def finish(self) -> dict[str, Any]:
        self.stop()
        bounds = self.bounds
        children = [s for s in self.watch.seen.values() if s.labels.get(PARENT_LABEL)]
        nominal = {s.name: parse_time(s.annotations[SCHEDULED_TIME]).timestamp()
                   for s in children if SCHEDULED_TIME in s.annotations}
        measured = [s for s in children if nominal.get(s.name) in bounds]
        ids = {task_id_for(s.uid, 1): nominal[s.name] for s in measured}
        if not children:  # runObjects: Never — each run's id from its parent and fire time
            ids = self._run_ids_in_status()
        starts = measure.started_times(self.stack.results(), list(ids), STARTED_KEY)
        per_minute = Counter(nominal[s.name] for s in measured) if children else Counter(
            due for t, due in ids.items() if t in starts)
        self.stack.delete_all(self.ns)
        return {
            "create_seconds": self.create_seconds,
            "child_creation": measure.summary([s.at - nominal[s.name] for s in measured]),
            "worker_start": measure.summary([starts[t] - due for t, due in ids.items()
                                             if t in starts]),
            "children_per_minute": [per_minute.get(b, 0) for b in bounds],
            # Minute by minute: the first follows the creation of all N by seconds.
            "child_creation_by_minute": [
                measure.summary([s.at - b for s in measured if nominal[s.name] == b])
                for b in bounds
            ],
            "seconds_from_creation_to_first_minute": (
                bounds[0] - self.created_at if bounds else None),
            "not_started": len(ids) - len(starts),
            "cpu": self.cpu,
            "cpu_seconds_per_minute": _per_minute(self.cpu, "operator"),
            "apiserver_requests": self.requests,
            "writes_per_run": (sum(measure.writes_only(self.requests).values())
                               / max(sum(per_minute.values()), 1)),
            "runs_in_status": not children,
            "watch_errors": self.watch.errors,
            "profile": profile_summary(self.profile),
            "notes": self.notes,
        }


    def _run_ids_in_status(self) -> dict[str, float]:
        """Task id -> fire time of every run due at a measured boundary (its id follows
        from its parent's uid and its name; counted as started or not from the results)."""
        ids: dict[str, float] = {}
        for parent in self.stack.list_objects(self.ns, PERIODIC_PLURAL):
            meta = parent["metadata"]
            for due in self.bounds:
                name = f"{meta['name']}-{int(due)}"
                ids[task_id_for(f"{meta['uid']}/run/{name}", 1)] = due
        return ids


class BeatSide:
    """celery beat with N crontab() entries; sends logged by bench.beat_app."""

    def __init__(self, stack: Stack, sc: Scope, n: int,
                 env: Mapping[str, str] | None = None) -> None:
        self.stack, self.sc, self.n = stack, sc, n
        self.env = dict(env or {})
        self.bounds: list[float] = []
        self.cpu: dict[str, Any] = {}
        self.requests: dict[str, float] = {}
        self.notes: list[str] = []
        self.sent_log = sc.dir / "beat-sent.log"
        self.proc: Any = None

    def start(self) -> None:
        if self.proc is not None:
            return
        sc = self.sc
        self.proc = sc.process(
            "celery-beat",
            [sys.executable, "-m", "celery", "-A", "bench.beat_app", "beat",
             f"--schedule={sc.dir / 'beat-schedule'}", f"--pidfile={sc.dir / 'beat.pid'}",
             "--loglevel=INFO"],
            env={"CELERY_BROKER_URL": self.stack.broker_url, "BENCH_BEAT_ENTRIES": str(self.n),
                 "BENCH_BEAT_QUEUE": QUEUE, "BENCH_BEAT_SENT_LOG": str(self.sent_log),
                 **self.env},
        )
        if not measure.wait_for(lambda: "beat: Starting" in self.proc.log_tail(50), 60, 0.2):
            self.notes.append("beat did not log 'Starting' within 60 s")

    def sends(self) -> dict[str, tuple[float, int]]:
        """Task id -> (when beat published it, the entry's index), from the sent log."""
        out: dict[str, tuple[float, int]] = {}
        lines = self.sent_log.read_text().splitlines() if self.sent_log.exists() else []
        for line in lines:
            task_id, at, entry = line.split()
            out.setdefault(task_id, (float(at), int(entry)))
        return out

    def finish(self) -> dict[str, Any]:
        if self.proc is not None:
            self.proc.stop(grace=10)
        sends = {t: at for t, (at, _) in self.sends().items()}
        # The boundary a send belongs to (beat never sends early beyond clock noise).
        nominal = {t: math.floor((at + 1.0) / 60.0) * 60.0 for t, at in sends.items()}
        measured = {t: nominal[t] for t in sends if nominal[t] in self.bounds}
        starts = measure.started_times(self.stack.results(), list(measured), STARTED_KEY)
        per_minute = Counter(measured.values())
        return {
            "send": measure.summary([sends[t] - due for t, due in measured.items()]),
            "worker_start": measure.summary([starts[t] - due for t, due in measured.items()
                                             if t in starts]),
            "sends_per_minute": [per_minute.get(b, 0) for b in self.bounds],
            "not_started": len(measured) - len(starts),
            "cpu": self.cpu,
            "cpu_seconds_per_minute": _per_minute(self.cpu, "celery-beat"),
            "notes": self.notes,
        }


def _per_minute(cpu: dict[str, Any], role: str) -> float | None:
    used = cpu.get("cpu_seconds", {}).get(role)
    wall = cpu.get("wall_seconds")
    return used / (wall / 60.0) if used is not None and wall else None


def summary_ms(summary: dict[str, Any], key: str) -> str:
    value = summary.get(key)
    return f"{value * 1000:.0f} ms" if isinstance(value, float) else "-"


def _print(side: str, r: dict[str, Any]) -> None:
    first = r.get("child_creation") or r.get("send") or {}
    what = "child creation" if side == "operator" else "beat send"
    start = r["worker_start"]
    counts = r.get("children_per_minute") or r.get("sends_per_minute")
    cpu = r["cpu_seconds_per_minute"]
    log(f"periodic {side}: {what} lateness p50 {summary_ms(first, 'p50')} p99 "
        f"{summary_ms(first, 'p99')} max {summary_ms(first, 'max')}; worker start p50 "
        f"{summary_ms(start, 'p50')} p99 "
        f"{summary_ms(start, 'p99')}; per minute {counts}; CPU "
        f"{f'{cpu:.2f}' if cpu is not None else '-'} s/min")
