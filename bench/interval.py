"""Scenario 12, on request (`--only interval-10k`, ~17 min): issue 17's schedule set —
10,000 PeriodicTasks on a 5-minute interval — against celery beat driving the same
10,000 interval entries, one after the other on the same stack and worker.

The entries' anchors are spread evenly over one interval, as a set created over time
would be (entry i fires at anchor + i * interval / N + k * interval: the operator's
`spec.startTime`, beat's entry `last_run_at`): ~33 runs a second, steadily. Each side
is measured over one whole interval — the N runs due in it (each entry's first) and the
CPU of every process over it. Lateness is the worker's start (the demo app's
`task_prerun` time) minus the run's due time; a run that has not started STRAGGLE s
after the window is counted as not started.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from celery_operator.api import API_VERSION, PERIODIC_KIND, PERIODIC_PLURAL, parse_time
from celery_operator.api.timefmt import format_time
from celery_operator.devstack.demo_app import STARTED_KEY
from celery_operator.scheduling.task_lifecycle import task_id_for

from . import measure, periodic
from .settings import Sizes
from .stack import Scope, Stack, log, scope

STRAGGLE = 180.0  # s after the window a run due in it may still start and be measured
# Creating N PeriodicTasks while the operator writes their first statuses ran at ~130
# objects a second here: the first due time leaves that much room, and some.
SETUP_SECONDS, SETUP_RATE = 45.0, 80.0
BEAT_SETUP_SECONDS = 30.0  # beat loads its N entries before the first is due


def run(stack: Stack, sizes: Sizes, run_objects: str = "Always",
        outcome_wait: float | None = None) -> dict[str, Any]:
    """`outcome_wait`: the operator's --run-outcome-wait (None: its default)."""
    stack.flush_redis()
    n, every = sizes.interval_entries, sizes.interval_seconds
    out: dict[str, Any] = {"entries": n, "interval_seconds": every, "worker": sizes.worker_desc,
                           "straggle_seconds": STRAGGLE, "run_objects": run_objects}
    args: list[str] = []
    if outcome_wait is not None:
        out["run_outcome_wait_seconds"] = outcome_wait
        args = [f"--run-outcome-wait={outcome_wait:g}"]
    with scope(stack, "interval") as sc:
        sc.worker(periodic.QUEUE, concurrency=sizes.worker_concurrency, pool=sizes.worker_pool)
        out["operator"] = _operator(stack, sc, n, every, run_objects, args)
        _print("operator", out["operator"])
        out["beat"] = _beat(stack, sc, n, every)
        _print("beat", out["beat"])
    return out


class RunsInStatus:
    """The same scenario with each run kept in its PeriodicTask's status
    (`runObjects: Never`; `--only interval-10k-never`)."""

    @staticmethod
    def run(stack: Stack, sizes: Sizes) -> dict[str, Any]:
        return run(stack, sizes, run_objects="Never")


class RunsInStatusOutcomesWait:
    """The same with each run's outcome waiting for the next run's claim, one interval on
    (`--run-outcome-wait` = the interval; `--only interval-10k-never-wait`): one write a
    run, outcomes shown up to an interval later."""

    @staticmethod
    def run(stack: Stack, sizes: Sizes) -> dict[str, Any]:
        return run(stack, sizes, run_objects="Never", outcome_wait=sizes.interval_seconds)


def offsets_us(n: int, every: float) -> list[int]:
    """Entry i's anchor offset in whole microseconds (exact in `spec.startTime`)."""
    every_us = round(every * 1_000_000)
    return [i * every_us // n for i in range(n)]


def _manifest(namespace: str, i: int, start: float, every: float, run_objects: str
              ) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": PERIODIC_KIND,
        "metadata": {"name": f"i{i:05d}", "namespace": namespace},
        "spec": {
            "schedule": {"interval": f"{round(every * 1000)}ms"},
            "startTime": format_time(datetime.fromtimestamp(start, UTC), fraction=True),
            "task": {"name": "demo.add", "args": [i, 1], "queue": periodic.QUEUE},
            "runObjects": run_objects,
        },
    }


def _operator(stack: Stack, sc: Scope, n: int, every: float, run_objects: str,
              operator_args: list[str]) -> dict[str, Any]:
    first = float(round(time.time() + SETUP_SECONDS + n / SETUP_RATE))
    anchor = first - every
    offsets = offsets_us(n, every)
    side = periodic.OperatorSide(stack, sc, n, manifest=lambda ns, i: _manifest(
        ns, i, anchor + offsets[i] / 1e6, every, run_objects), operator_args=operator_args)
    margin = first - time.time()
    window = (first, first + every)
    cpu, requests = periodic.cpu_over(sc, *window)
    in_status = run_objects == "Never"

    def due_in_window() -> dict[str, float]:
        """Task id of each child whose run is due in the window -> its due time."""
        out = {}
        for s in list(side.watch.seen.values()):
            at = s.annotations.get(periodic.SCHEDULED_TIME)
            due = parse_time(at).timestamp() if at else None
            if due is not None and window[0] - 0.001 <= due < window[1] - 0.001:
                out[task_id_for(s.uid, 1)] = due
        return out

    def due_in_status() -> dict[str, float]:
        """The same for runs kept in status: each run's task id follows from its parent's
        uid and its name, `<parent>-<whole seconds of its due time>` (one LIST)."""
        uids = {p["metadata"]["name"]: p["metadata"]["uid"]
                for p in stack.list_objects(side.ns, PERIODIC_PLURAL)}
        out = {}
        for i, offset in enumerate(offsets):
            name = f"i{i:05d}"
            run_name = f"{name}-{int(first) + offset // 1_000_000}"
            out[task_id_for(f"{uids[name]}/run/{run_name}", 1)] = first + offset / 1e6
        return out

    if in_status:
        known = due_in_status()  # the parents do not change: not listed again each poll
        due, starts = _when_started(stack, lambda: known, n)
    else:
        due, starts = _when_started(stack, due_in_window, n)
    if in_status:  # no child to see: a run is taken up in the window if it started in it
        created: dict[str, float] = {}
        taken_up = sum(window[0] <= starts[t] < window[1] for t in due if t in starts)
    else:
        created = {task_id_for(s.uid, 1): s.at for s in side.watch.seen.values()}
        taken_up = sum(window[0] <= created[t] < window[1] for t in due)
    side.stop()
    stack.delete_all(side.ns)
    return {
        "setup_margin_seconds": margin,
        "create_seconds": side.create_seconds,
        "runs_due_in_window": len(due),
        "child_creation": measure.summary([created[t] - d for t, d in due.items()
                                           if t in created]),
        "worker_start": measure.summary([starts[t] - d for t, d in due.items() if t in starts]),
        "not_started": n - len(starts),
        "taken_up_in_window": taken_up,
        **_costs(cpu, requests, "operator", taken_up),
        "notes": side.notes,
    }


def _beat(stack: Stack, sc: Scope, n: int, every: float) -> dict[str, Any]:
    first = float(round(time.time() + BEAT_SETUP_SECONDS))
    anchor = first - every
    offsets = offsets_us(n, every)
    beat = periodic.BeatSide(stack, sc, n, env={"BENCH_BEAT_INTERVAL": repr(every),
                                                "BENCH_BEAT_ANCHOR": repr(anchor)})
    beat.start()
    margin = first - time.time()
    window = (first, first + every)
    cpu, requests = periodic.cpu_over(sc, *window)

    def first_sends() -> dict[str, tuple[float, float]]:
        """Task id of each entry's first send -> (sent at, due time)."""
        by_entry: dict[int, tuple[float, str]] = {}
        for task_id, (at, i) in beat.sends().items():
            if 0 <= i < n and (i not in by_entry or at < by_entry[i][0]):
                by_entry[i] = (at, task_id)
        return {t: (at, anchor + offsets[i] / 1e6 + every) for i, (at, t) in by_entry.items()}

    sends, starts = _when_started(stack, first_sends, n)
    taken_up = sum(window[0] <= at < window[1] for at, _ in sends.values())
    if beat.proc is not None:
        beat.proc.stop(grace=10)
    return {
        "setup_margin_seconds": margin,
        "runs_due_in_window": len(sends),
        "send": measure.summary([at - due for at, due in sends.values()]),
        "worker_start": measure.summary([starts[t] - due for t, (_, due) in sends.items()
                                         if t in starts]),
        "not_started": n - len(starts),
        "taken_up_in_window": taken_up,
        **_costs(cpu, requests, "celery-beat", taken_up),
        "notes": beat.notes,
    }


RunsT = TypeVar("RunsT", bound=Mapping[str, Any])


def _when_started(stack: Stack, runs: Callable[[], RunsT], n: int
                  ) -> tuple[RunsT, dict[str, float]]:
    """Wait (STRAGGLE s at most) until `runs()` (task id -> what is known of the run)
    holds all n runs and every one has started; then the runs and their start times."""
    def started(ids: RunsT) -> dict[str, float]:
        return measure.started_times(stack.results(), list(ids), STARTED_KEY)

    measure.wait_for(lambda: len(ids := runs()) >= n and len(started(ids)) >= n,
                     STRAGGLE, 5.0)
    final = runs()
    return final, started(final)


def _costs(cpu: dict[str, Any], requests: dict[str, float], role: str, runs: int
           ) -> dict[str, Any]:
    """CPU per minute of the scheduler and of operator + API server + etcd; writes per run
    taken up in the window (children created, messages sent: a scheduler that falls
    behind takes up fewer than are due)."""
    used = cpu.get("cpu_seconds", {})
    minutes = (cpu.get("wall_seconds") or 0.0) / 60.0
    control = sum(used.get(k) or 0.0 for k in ("operator", "kube-apiserver", "etcd"))
    return {
        "cpu": cpu,
        "cpu_seconds_per_minute": (used.get(role) or 0.0) / minutes if minutes else None,
        "control_plane_cpu_seconds_per_minute": control / minutes if minutes else None,
        "apiserver_requests": requests,
        "writes_per_run": sum(measure.writes_only(requests).values()) / max(runs, 1),
    }


def _print(side: str, r: dict[str, Any]) -> None:
    start = r["worker_start"]
    cpu = r["cpu_seconds_per_minute"]
    log(f"interval {side}: {r['runs_due_in_window']} runs due in the window, worker start "
        f"p50 {periodic.summary_ms(start, 'p50')} p99 {periodic.summary_ms(start, 'p99')} max "
        f"{periodic.summary_ms(start, 'max')}; not started {r['not_started']}; scheduler CPU "
        f"{f'{cpu:.2f}' if cpu is not None else '-'} s/min; setup margin "
        f"{r['setup_margin_seconds']:.0f} s")
