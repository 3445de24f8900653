"""The baseline of the periodic scenario: celery beat driving the same entries.

`celery -A bench.beat_app beat` with the default PersistentScheduler and
BENCH_BEAT_ENTRIES crontab() entries (every minute) calling demo.add on
BENCH_BEAT_QUEUE. Every message beat publishes is logged as "<task id> <time.time()>"
to BENCH_BEAT_SENT_LOG by the after_task_publish signal (a line-buffered file append,
cheaper than a Redis round trip in beat's send path). Like the operator's publisher,
this app has no result backend.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery
from celery.schedules import crontab
from celery.signals import after_task_publish

ENTRIES = int(os.environ.get("BENCH_BEAT_ENTRIES", "1000"))
QUEUE = os.environ.get("BENCH_BEAT_QUEUE", "celery")
SENT_LOG = os.environ.get("BENCH_BEAT_SENT_LOG", os.devnull)

app = Celery("bench-beat", broker=os.environ.get("CELERY_BROKER_URL"))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_backend=None,
    timezone="UTC",
    broker_connection_retry_on_startup=True,
    beat_schedule={
        f"entry-{i:04d}": {
            "task": "demo.add",
            "schedule": crontab(),
            "args": (i, 1),
            "options": {"queue": QUEUE},
        }
        for i in range(ENTRIES)
    },
)

_sent = open(SENT_LOG, "a", buffering=1)  # noqa: SIM115 - lives as long as beat


@after_task_publish.connect(weak=False)
def _record(headers: dict[str, Any] | None = None, **_: Any) -> None:
    task_id = (headers or {}).get("id")
    if task_id:
        _sent.write(f"{task_id} {time.time():.6f}\n")
