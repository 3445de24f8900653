"""Scenario 7 — durability under churn: the spread workload while the operator is
SIGKILLed (and started again 5 s later) and Redis restarts empty (workers reconnect).

Counted from a recorder Redis that is never restarted (bench.worker_app): lost = never
executed, duplicated = executed more than once. Run with the worker-side run-once
guard (DEMO_RUN_ONCE=1: its claims live in the result backend), without it, and with
the guard's claims in a Redis that is not restarted.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery_operator.devstack import CeleryWorker

from . import measure, spread, workload
from .settings import Sizes
from .stack import Scope, Stack, log, scope
from .worker_app import DROPPED, FIRST_START, RUNS

QUEUE = "churn"
# (worker guard, label): the demo app's DEMO_RUN_ONCE=1 guard keeps its claims in the
# result backend, the Redis that is restarted; "separate" keeps them in one that is not.
VARIANTS = (("backend", "guard"), ("", "no-guard"), ("separate", "guard-separate-store"))


def run(stack: Stack, sizes: Sizes) -> dict[str, Any]:
    out: dict[str, Any] = {"tasks": sizes.churn_tasks, "window_seconds": sizes.churn_window}
    for guard, label in VARIANTS:
        if label not in sizes.churn_variants:
            continue
        stack.flush_redis()
        with scope(stack, f"churn-{label}") as sc:
            def start_worker(sc: Scope = sc, guard: str = guard) -> CeleryWorker:
                return sc.worker(QUEUE, concurrency=sizes.worker_concurrency,
                                 pool=sizes.worker_pool, guard=guard, recorder=True)

            with Supervisor(start_worker) as supervisor:
                faults = _faults(stack, sizes.churn_window)
                run_, info = spread.operator_side(
                    stack, sc, sizes.churn_tasks, sizes.churn_window, label=f"churn-{label}",
                    queue=QUEUE, faults=faults, recorder=True,
                )
            out[label] = _count(stack, run_, info)
            out[label]["worker_restarts"] = supervisor.restarts
            stack.delete_all(info["namespace"])
        r = out[label]
        log(f"churn ({label}): lost {r['lost']}, duplicated {r['duplicated']} "
            f"(extra runs {r['extra_runs']}), dropped by guard {r['dropped_by_guard']}, "
            f"republished {r['republished']}, phases {r['phases']}")
    return out


class Supervisor:
    """Keeps one worker running, as a Deployment with a liveness probe would: a worker
    that exits, or that logged Celery's "Unrecoverable error" (its broker went away) and
    hangs without exiting, is replaced."""

    def __init__(self, start: Callable[[], CeleryWorker]) -> None:
        self.start = start
        self.worker = start()
        self.restarts: list[float] = []  # when a dead worker was replaced
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="supervisor")

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            running = self.worker.process.running()
            if running and "Unrecoverable error" not in self.worker.process.log_tail(400):
                continue
            what = "hangs after an unrecoverable error" if running else "exited"
            log(f"churn: the worker {what}; starting a new one (as a Deployment would)")
            self.restarts.append(time.time())
            with contextlib.suppress(Exception):
                self.worker.stop()
            with contextlib.suppress(Exception):
                self.worker = self.start()


def _faults(stack: Stack, window: float) -> Any:
    kill_at, down, redis_at = 0.25 * window, 5.0, 0.6 * window

    def faults(ops: spread.Operators, start: float) -> list[tuple[str, float]]:
        done: list[tuple[str, float]] = []
        time.sleep(max(start + kill_at - time.time(), 0.0))
        ops.current.kill()
        done.append(("operator SIGKILL", time.time() - start))
        time.sleep(down)
        ops.start()
        done.append(("operator started again", time.time() - start))
        time.sleep(max(start + redis_at - time.time(), 0.0))
        stack.redis.restart_empty()
        done.append(("redis restarted empty", time.time() - start))
        return done

    return faults


def _count(stack: Stack, run: workload.Run, info: dict[str, Any]) -> dict[str, Any]:
    recorder = stack.recorder_client()
    ids = list(run.due)
    runs = measure.run_counts(recorder, ids, RUNS)
    dropped = measure.run_counts(recorder, ids, DROPPED)
    first = measure.started_times(recorder, ids, FIRST_START)
    lateness = [first[t] - run.due[t] for t in ids if t in first]
    items = stack.list_objects(info["namespace"])
    phases = Counter(str((item.get("status") or {}).get("phase")) for item in items)
    # What the result backend says of tasks that never reached a final phase.
    open_ids = [str((i.get("status") or {}).get("taskId")) for i in items
                if (i.get("status") or {}).get("phase") not in workload.FINAL]
    failures = Counter(
        f"{(item['status'].get('error') or {}).get('type')}: "
        f"{str((item['status'].get('error') or {}).get('message'))[:120]}"
        for item in items if (item.get("status") or {}).get("phase") == "Failed"
    )
    backend_states: Counter[str] = Counter()
    if open_ids:
        metas = stack.results().mget([f"celery-task-meta-{t}" for t in open_ids])
        backend_states.update(
            json.loads(m).get("status", "?") if m else "none" for m in metas
        )
    publishes = measure.publish_counts([Path(p) for p in info["logs"]])
    return {
        "lost": sum(1 for t in ids if runs[t] == 0),
        "duplicated": sum(1 for t in ids if runs[t] > 1),
        "extra_runs": sum(max(runs[t] - 1, 0) for t in ids),
        "dropped_by_guard": sum(dropped.values()),
        "republished": sum(1 for t in ids if publishes.get(t, 0) > 1),
        "phases": dict(phases),
        "unfinished_backend_states": dict(backend_states),
        "failed_errors": dict(failures),
        "start_lateness": measure.summary(lateness),
        "faults": info["faults"],
        "notes": run.notes,
    }
