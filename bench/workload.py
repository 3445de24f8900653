"""Timed task workloads, sent through the operator (ScheduledTasks) or natively
(`send_task(eta=...)` to the same kind of worker), and what we measure of them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis as redis_lib
from celery import Celery

from celery_operator.api import API_VERSION, SCHEDULED_KIND, SCHEDULED_PLURAL, format_time
from celery_operator.devstack.demo_app import STARTED_KEY
from celery_operator.devstack.operatorproc import OperatorProcess
from celery_operator.scheduling.task_lifecycle import task_id_for

from . import measure
from .stack import Stack, log
from .worker_app import FIRST_START

TASK = "demo.add"
FINAL = frozenset({"Succeeded", "Failed", "Revoked", "Expired", "Invalid"})


def rfc3339(ts: float) -> str:
    return format_time(datetime.fromtimestamp(ts, UTC), fraction=True)


def scheduled_task(namespace: str, name: str, queue: str, eta: float | None,
                   args: Sequence[Any] = (1, 1)) -> dict[str, Any]:
    spec: dict[str, Any] = {"task": {"name": TASK, "args": list(args), "queue": queue}}
    if eta is not None:
        spec["eta"] = rfc3339(eta)
    return {
        "apiVersion": API_VERSION,
        "kind": SCHEDULED_KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


@dataclass
class Run:
    """One side of one repeat: due times by task id, and what happened to them."""

    due: dict[str, float]  # task id -> due time (unix s)
    created: tuple[float, float] = (0.0, 0.0)  # first/last create (operator side)
    settled_at: float | None = None  # operator held every object (due-queue depth == n)
    published: dict[str, float] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    finished_at: float | None = None  # operator reported every task finished
    notes: list[str] = field(default_factory=list)

    def publish_lateness(self) -> list[float]:
        return [self.published[t] - d for t, d in self.due.items() if t in self.published]

    def start_lateness(self) -> list[float]:
        return [self.started[t] - d for t, d in self.due.items() if t in self.started]

    @property
    def missing(self) -> int:
        return len(self.due) - len(self.started)


def native_app(stack: Stack) -> Celery:
    """A publisher configured like the operator's: JSON, no result backend."""
    app = Celery("bench-native", broker=stack.broker_url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"], result_backend=None,
                    broker_connection_retry_on_startup=True)
    return app


def send_native(stack: Stack, queue: str, etas: Sequence[float | None]) -> Run:
    """send_task(eta=...) for every due time, from one thread, as fast as it goes."""
    app = native_app(stack)
    due: dict[str, float] = {}
    try:
        with app.producer_or_acquire() as producer:
            for i, eta in enumerate(etas):
                task_id = str(uuid.uuid4())
                when = datetime.fromtimestamp(eta, UTC) if eta is not None else None
                app.send_task(TASK, args=[i, 1], task_id=task_id, queue=queue, eta=when,
                              producer=producer)
                due[task_id] = eta if eta is not None else time.time()
    finally:
        app.close()
    return Run(due=due)


def create_scheduled(stack: Stack, namespace: str, queue: str,
                     etas: Sequence[float | None]) -> Run:
    bodies = [scheduled_task(namespace, f"t{i:05d}", queue, eta, (i, 1))
              for i, eta in enumerate(etas)]
    start, end, uids = stack.create_many(namespace, SCHEDULED_PLURAL, bodies)
    due = {task_id_for(uid, 1): (eta if eta is not None else end)
           for uid, eta in zip(uids, etas, strict=True)}
    return Run(due=due, created=(start, end))


def wait_started(stack: Stack, run: Run, timeout: float, *, recorder: bool = False) -> None:
    """Until every task recorded its start (or the timeout): in the demo app's keys in
    the backend Redis, or with `recorder` in bench.worker_app's Redis (never restarted)."""
    if recorder:
        client, prefix = stack.recorder_client(), FIRST_START
    else:
        client, prefix = stack.results(), STARTED_KEY
    ids = list(run.due)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if measure.count_present(client, ids, prefix) >= len(ids):
                break
        except redis_lib.ConnectionError:
            pass  # the backend Redis is restarting (churn)
        time.sleep(0.5)
    run.started = measure.started_times(client, ids, prefix)
    if run.missing:
        run.notes.append(f"{run.missing} of {len(ids)} never started within {timeout:.0f} s")
        log(run.notes[-1])


def operator_metric(op: OperatorProcess, name: str, **labels: str) -> float:
    return measure.metric_value(op.metrics(), name, **labels)


def status_patches(stack: Stack) -> float:
    """PATCHes of scheduledtasks/status the API server has served (its own counter)."""
    counts = measure.apiserver_requests(stack.apiserver_metrics_fast())
    return counts[("PATCH", "scheduledtasks", "status")]


def wait_settled(stack: Stack, run: Run, patches_before: float, timeout: float) -> None:
    """Until the operator wrote each new object's first status (`Scheduled`): from then
    on it holds every due time and has nothing left to do before the first one."""
    n = len(run.due)
    ok = measure.wait_for(lambda: status_patches(stack) - patches_before >= n, timeout, 0.25)
    if ok:
        run.settled_at = time.time()
    else:
        run.notes.append(f"the operator had not written all {n} Scheduled statuses "
                         f"{timeout:.0f} s after the creates began")
        log(run.notes[-1])


def wait_finished(op: OperatorProcess, run: Run, timeout: float) -> None:
    """Until the operator counted every task finished (its own counter, no LIST)."""
    n = len(run.due)
    ok = measure.wait_for(
        lambda: operator_metric(op, "celery_operator_finished_total") >= n, timeout, 0.5
    )
    run.finished_at = time.time()
    if not ok:
        run.notes.append(f"the operator did not finish all {n} tasks in {timeout:.0f} s")
        log(run.notes[-1])


def wait_final(stack: Stack, namespace: str, run: Run, timeout: float) -> None:
    """Until every ScheduledTask of the namespace is in a final phase (LIST polling:
    for runs where the operator restarts, so its counters start again from zero)."""
    n = len(run.due)

    def final() -> bool:
        items = stack.list_objects(namespace)
        return sum(1 for i in items if (i.get("status") or {}).get("phase") in FINAL) >= n

    ok = measure.wait_for(final, timeout, 2.0)
    run.finished_at = time.time()
    if not ok:
        run.notes.append(f"not all {n} tasks reached a final phase in {timeout:.0f} s")
        log(run.notes[-1])


def collect_published(run: Run, logs: Sequence[Path]) -> None:
    run.published = {t: at for t, at in measure.published_times(logs).items() if t in run.due}


def lateness_summary(run: Run) -> dict[str, Any]:
    out: dict[str, Any] = {
        "start": measure.summary(run.start_lateness()),
        "missing": run.missing,
        "notes": run.notes,
    }
    if run.published:
        out["publish"] = measure.summary(run.publish_lateness())
    return out
