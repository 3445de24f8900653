"""The demo app, plus a start recorder in a second Redis that is never restarted.

The churn scenario restarts the broker/backend Redis empty, which also wipes the demo
app's own run counters; this recorder keeps every start so lost and duplicated runs
can be counted. Workers run it with `celery -A bench.worker_app worker` and
BENCH_RECORDER_URL set; BENCH_GUARD_URL installs the run-once guard with its claims
in that Redis instead of the result backend. Receivers run in connection order, so
the guard (connected when demo_app is imported with DEMO_RUN_ONCE=1, or below) has
marked duplicates before we look.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery.signals import task_prerun

from celery_operator.devstack.demo_app import app
from celery_operator.worker import install_run_once_guard

RUNS = "bench:runs:"  # + task id -> INCR per execution
FIRST_START = "bench:started:"  # + task id -> time.time() of the first execution
DROPPED = "bench:dropped:"  # + task id -> INCR per delivery the guard dropped

_client: redis.Redis | None = None

if os.environ.get("BENCH_GUARD_URL"):
    # The run-once guard with its claims in a Redis of their own (connected before the
    # recorder below, so duplicates are marked when it looks).
    install_run_once_guard(app, os.environ["BENCH_GUARD_URL"])


def _recorder() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["BENCH_RECORDER_URL"], socket_timeout=5)
    return _client


@task_prerun.connect(weak=False)
def _record(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if not task_id:
        return
    now = time.time()
    request = getattr(task, "request", None)
    if getattr(request, "celeryoperator_revoked", False):
        return  # the guard refused a task the operator revoked: it did not run
    if getattr(request, "celeryoperator_duplicate", False):
        _recorder().incr(DROPPED + task_id)
        return
    pipe = _recorder().pipeline()
    pipe.incr(RUNS + task_id)
    pipe.set(FIRST_START + task_id, repr(now), nx=True)
    pipe.execute()


__all__ = ["app"]
