"""The baseline of the periodic scenario: celery beat driving the same entries.

`celery -A bench.beat_app beat` with the default PersistentScheduler and
BENCH_BEAT_ENTRIES crontab() entries (every minute) calling demo.add(i, 1) on
BENCH_BEAT_QUEUE — or, with BENCH_BEAT_INTERVAL (seconds) and BENCH_BEAT_ANCHOR (a Unix
time), interval entries whose last run is set to anchor + i * interval / entries, so
entry i is due at that time + k * interval: the same set as the operator's interval
scenario. Every message beat publishes is logged as "<task id> <time.time()> <i>" to
BENCH_BEAT_SENT_LOG by the after_task_publish signal (a line-buffered file append,
cheaper than a Redis round trip in beat's send path). Like the operator's publisher,
this app has no result backend.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery
from celery.schedules import crontab
from celery.signals import after_task_publish

ENTRIES = int(os.environ.get("BENCH_BEAT_ENTRIES", "1000"))
QUEUE = os.environ.get("BENCH_BEAT_QUEUE", "celery")
SENT_LOG = os.environ.get("BENCH_BEAT_SENT_LOG", os.devnull)
INTERVAL = float(os.environ.get("BENCH_BEAT_INTERVAL", "0"))
ANCHOR = float(os.environ.get("BENCH_BEAT_ANCHOR", "0"))


def _entry(i: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"task": "demo.add", "args": (i, 1), "options": {"queue": QUEUE}}
    if not INTERVAL:
        return {**entry, "schedule": crontab()}
    # A ScheduleEntry takes last_run_at from the dict: beat's interval entries are due one
    # interval after it (a fresh schedule file keeps it).
    last = datetime.fromtimestamp(ANCHOR + i * INTERVAL / ENTRIES, UTC)
    return {**entry, "schedule": timedelta(seconds=INTERVAL), "last_run_at": last}


app = Celery("bench-beat", broker=os.environ.get("CELERY_BROKER_URL"))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_backend=None,
    timezone="UTC",
    broker_connection_retry_on_startup=True,
    beat_schedule={f"entry-{i:04d}": _entry(i) for i in range(ENTRIES)},
)

_sent = open(SENT_LOG, "a", buffering=1)  # noqa: SIM115 - lives as long as beat


@after_task_publish.connect(weak=False)
def _record(headers: dict[str, Any] | None = None, body: Any = None, **_: Any) -> None:
    task_id = (headers or {}).get("id")
    if task_id:
        # Protocol 2: body = (args, kwargs, embed); args[0] is the entry's index.
        entry = body[0][0] if isinstance(body, (list, tuple)) and body and body[0] else -1
        _sent.write(f"{task_id} {time.time():.6f} {entry}\n")
