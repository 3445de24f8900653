"""The demo/test Celery app: small tasks that add, sleep, fail, retry and return JSON.

Workers run it with `celery -A celery_operator.devstack.demo_app worker`; the broker
and result backend come from CELERY_BROKER_URL / CELERY_RESULT_BACKEND. Every task
start is recorded in Redis (a run counter and a start timestamp per task id) so tests
and benchmarks can count executions and measure lateness from outside the worker.

With DEMO_EXECUTION_LOG set to a file path, every delivery that reaches a task (run, or
dropped by the run-once guard) is also appended to that file, one JSON line each. The
file outlives a broker/backend Redis restarted empty, which the Redis counters do not.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery import Celery, Task
from celery.signals import task_prerun

RUNS_KEY = "celery-operator-demo:runs:"  # + task id -> INCR per execution
STARTED_KEY = "celery-operator-demo:started:"  # + task id -> time.time() of the last start
DROPPED_KEY = "celery-operator-demo:dropped:"  # + task id -> INCR per duplicate the guard dropped

EXECUTION_LOG_ENV = "DEMO_EXECUTION_LOG"

broker_url = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
backend_url = os.environ.get("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/1")

app = Celery("demo", broker=broker_url, backend=backend_url)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_track_started=True,
    result_extended=True,
    worker_prefetch_multiplier=1,
    # A result backend restarting (Redis, PostgreSQL) must not lose the results stored
    # meanwhile: retry with backoff (10 ms doubling to 10 s: about a minute in all).
    result_backend_always_retry=True,
    result_backend_max_retries=16,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

if os.environ.get("DEMO_RUN_ONCE") == "1":
    # The worker-side guard from celery_operator.worker, when a test asks for it; its
    # claims in DEMO_GUARD_URL (Redis or PostgreSQL) when set.
    from celery_operator.worker import install_run_once_guard

    install_run_once_guard(app, os.environ.get("DEMO_GUARD_URL") or None)

# The run counters live in Redis: the result backend's when it is Redis. Without one
# (a database result backend) only the execution log records runs.
recorder_url = os.environ.get("DEMO_RECORDER_URL") or (
    backend_url if backend_url.startswith(("redis://", "rediss://")) else None
)
_recorder: redis.Redis | None = None


def _redis() -> redis.Redis | None:
    global _recorder
    if _recorder is None and recorder_url is not None:
        _recorder = redis.Redis.from_url(recorder_url)
    return _recorder


@task_prerun.connect
def _record_start(task_id: str | None = None, task: Task | None = None, **_: Any) -> None:
    if not task_id:
        return
    now = time.time()
    request = getattr(task, "request", None)
    if getattr(request, "celeryoperator_revoked", False):
        # The guard refused it: revoked by the operator, the body does not run.
        _journal(task_id, "revoked", now)
        return
    if getattr(request, "celeryoperator_unclaimed", None):
        # The guard could not claim its id: the task fails, the body does not run.
        _journal(task_id, "unclaimed", now)
        return
    if getattr(request, "celeryoperator_duplicate", False):
        # The run-once guard (connected before this receiver) dropped this delivery.
        _journal(task_id, "dropped", now)
        if (recorder := _redis()) is not None:
            recorder.incr(DROPPED_KEY + task_id)
        return
    _journal(task_id, "run", now)
    if (recorder := _redis()) is None:
        return
    pipe = recorder.pipeline()
    pipe.incr(RUNS_KEY + task_id)
    pipe.set(STARTED_KEY + task_id, repr(now))
    pipe.execute()


def _journal(task_id: str, kind: str, now: float) -> None:
    path = os.environ.get(EXECUTION_LOG_ENV)
    if not path:
        return
    line = json.dumps({"id": task_id, "kind": kind, "time": now, "pid": os.getpid()}) + "\n"
    # One O_APPEND write per line: prefork children share the file without tearing lines.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@dataclass
class Executions:
    """What the demo workers' execution logs say, per task id."""

    runs: Counter[str] = field(default_factory=Counter)  # task bodies entered
    dropped: Counter[str] = field(default_factory=Counter)  # deliveries the guard dropped
    first_start: dict[str, float] = field(default_factory=dict)  # time.time() of the 1st run


def read_executions(*paths: Path) -> Executions:
    """Merge execution logs (missing files count as empty: nothing ran there yet)."""
    seen = Executions()
    for path in paths:
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            entry = json.loads(line)
            task_id, kind = str(entry["id"]), str(entry["kind"])
            if kind == "dropped":
                seen.dropped[task_id] += 1
                continue
            if kind != "run":  # refused by the guard (revoked, unclaimed): no body ran
                continue
            seen.runs[task_id] += 1
            start = float(entry["time"])
            seen.first_start[task_id] = min(start, seen.first_start.get(task_id, start))
    return seen


@app.task(name="demo.add")
def add(x: float, y: float) -> float:
    return x + y


@app.task(name="demo.sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(name="demo.fail")
def fail(message: str = "demo failure") -> None:
    raise ValueError(message)


@app.task(name="demo.retry", bind=True, max_retries=10)
def retry(self: Task, times: int = 1) -> int:
    """Retries itself `times` times (Celery-level retries), then succeeds."""
    if self.request.retries < times:
        raise self.retry(countdown=0.2)
    return int(self.request.retries)


@app.task(name="demo.echo_json")
def echo_json(**kwargs: Any) -> dict[str, Any]:
    return kwargs


@app.task(name="demo.big_result")
def big_result(size: int) -> str:
    return "x" * size


@app.task(name="demo.not_json")
def not_json() -> object:
    return object()  # the JSON result serializer cannot encode this
