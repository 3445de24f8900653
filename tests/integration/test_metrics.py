"""The metrics behind the NoConsumer and missed-runs alerts move on the real stack: a task
waiting on a queue no worker consumes, then a worker that does; a PeriodicTask resumed
after fire times passed while it was suspended."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from bench.measure import metric_value

from celery_operator.devstack import CeleryWorker

from .conftest import StartOperator, Tasks, wait_for

pytestmark = pytest.mark.integration


def test_no_consumer_and_missed_runs_move_their_metrics(
    start_operator: StartOperator, tasks: Tasks, periodic: Tasks, namespace: str,
    broker_url: str, backend_url: str, tmp_path: Path,
) -> None:
    queue = f"nobody-{uuid.uuid4().hex[:8]}"
    operator = start_operator()
    periodic.create("paused", {"schedule": {"interval": "2s"}, "suspend": True,
                               "task": {"name": "demo.add", "args": [1, 2]}})
    tasks.create("waits", {"task": {"name": "demo.add", "args": [1, 1], "queue": queue}})

    def gauge() -> float:
        return metric_value(operator.metrics(), "celery_operator_no_consumer", queue=queue)

    # NoConsumer is judged 20 s after Queued, checked every 10 s.
    wait_for(lambda: gauge() == 1, 45, "the NoConsumer gauge of the queue at 1")
    # Fire times passed while suspended (at least 20 s of 2 s intervals): resuming counts
    # them as missed, and the counter moves by exactly what the status says.
    periodic.patch_spec("paused", {"suspend": False})
    missed = wait_for(lambda: periodic.get("paused").get("status", {}).get("missedRuns"), 15,
                      "status.missedRuns after the resume")
    assert missed >= 9
    wait_for(lambda: metric_value(operator.metrics(), "celery_operator_missed_runs_total",
                                  namespace=namespace) == missed, 10,
             f"the missed-runs counter at {missed}")

    worker = CeleryWorker(broker_url, backend_url, queues=(queue,), concurrency=1,
                          workdir=tmp_path).start()
    try:
        tasks.wait_phase("waits", "Succeeded", timeout=30)
        wait_for(lambda: gauge() == 0, 15, "the NoConsumer gauge back at 0")
    finally:
        worker.stop()
