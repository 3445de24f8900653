"""Reads task states from the Redis result backend in batches (MGET of the meta keys)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

import redis

from celery_operator.api.celery_state import TaskState

META_PREFIX = "celery-task-meta-"
BATCH = 500


def parse_meta(task_id: str, raw: bytes | str) -> TaskState:
    """Decode one `celery-task-meta-<id>` value (JSON; result_extended fields optional)."""
    meta = json.loads(raw)
    date_done = None
    if meta.get("date_done"):
        date_done = datetime.fromisoformat(str(meta["date_done"]))
        if date_done.tzinfo is None:
            date_done = date_done.replace(tzinfo=UTC)
    result = meta.get("result")
    worker = meta.get("worker")
    if meta.get("status") == "STARTED" and isinstance(result, Mapping):
        worker = worker or result.get("hostname")
    retries = meta.get("retries")
    return TaskState(
        task_id=task_id,
        status=str(meta.get("status", "PENDING")),
        result=result,
        traceback=meta.get("traceback"),
        date_done=date_done,
        worker=str(worker) if worker else None,
        retries=int(retries) if isinstance(retries, int) else None,
    )


class ResultReader:
    def __init__(self, backend_url: str) -> None:
        self._redis = redis.Redis.from_url(backend_url, socket_timeout=10)

    def read(self, task_ids: Iterable[str]) -> dict[str, TaskState | None]:
        """States by id; None where the backend has no record (Celery's PENDING)."""
        ids = list(dict.fromkeys(task_ids))
        states: dict[str, TaskState | None] = {}
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            values = self._redis.mget([META_PREFIX + i for i in chunk])
            for task_id, raw in zip(chunk, values, strict=True):
                states[task_id] = parse_meta(task_id, raw) if raw else None
        return states

    def close(self) -> None:
        self._redis.close()
