"""The demo/test Celery app: small tasks that add, sleep, fail, retry and return JSON.

Workers run it with `celery -A celery_operator.devstack.demo_app worker`; the broker
and result backend come from CELERY_BROKER_URL / CELERY_RESULT_BACKEND. Every task
start is recorded in Redis (a run counter and a start timestamp per task id) so tests
and benchmarks can count executions and measure lateness from outside the worker.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import Celery, Task
from celery.signals import task_prerun

RUNS_KEY = "celery-operator-demo:runs:"  # + task id -> INCR per execution
STARTED_KEY = "celery-operator-demo:started:"  # + task id -> time.time() of the last start
DROPPED_KEY = "celery-operator-demo:dropped:"  # + task id -> INCR per duplicate the guard dropped

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
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

if os.environ.get("DEMO_RUN_ONCE") == "1":
    # The worker-side guard from celery_operator.worker, when a test asks for it.
    from celery_operator.worker import install_run_once_guard

    install_run_once_guard(app)

_recorder: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _recorder
    if _recorder is None:
        _recorder = redis.Redis.from_url(backend_url)
    return _recorder


@task_prerun.connect
def _record_start(task_id: str | None = None, task: Task | None = None, **_: Any) -> None:
    if not task_id:
        return
    now = time.time()
    request = getattr(task, "request", None)
    if getattr(request, "celeryoperator_revoked", False):
        return  # the guard refused it: revoked by the operator, the body does not run
    if getattr(request, "celeryoperator_duplicate", False):
        # The run-once guard (connected before this receiver) dropped this delivery.
        _redis().incr(DROPPED_KEY + task_id)
        return
    pipe = _redis().pipeline()
    pipe.incr(RUNS_KEY + task_id)
    pipe.set(STARTED_KEY + task_id, repr(now))
    pipe.execute()


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
