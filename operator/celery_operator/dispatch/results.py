"""Reads task states from the Redis result backend in batches (MGET of the meta keys).

Every record is decoded on its own: one that is not JSON (a worker with the pickle or
msgpack serializer, garbage) or not shaped like Celery's meta becomes an UNREADABLE state
for its id alone, and the rest of the batch moves on.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import redis

from celery_operator.api.celery_state import UNREADABLE, TaskState

logger = logging.getLogger(__name__)

META_PREFIX = "celery-task-meta-"
BATCH = 500
# Ids already logged as unreadable (bounded: forgotten wholesale when full).
LOGGED_MAX = 10_000


class Unreadable(ValueError):
    """A record that is not Celery's JSON meta; the message is the short reason."""


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON: status written with them would be refused.
    raise Unreadable(f"not JSON ({name})")


def _decode(raw: bytes | str) -> Any:
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except Unreadable:
        raise
    except RecursionError:
        raise Unreadable("not JSON (nested too deeply)") from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, over-long integers
        data = raw.encode() if isinstance(raw, str) else raw
        if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            raise Unreadable("not JSON (pickled)") from None
        if data[:1] and data[0] >= 0x80:
            raise Unreadable("not JSON (binary, e.g. msgpack)") from None
        raise Unreadable("not JSON") from None


def _optional(meta: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    value = meta.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise Unreadable(f"{key} is not {what}")
    return value


def _date_done(meta: Mapping[str, Any]) -> datetime | None:
    text = _optional(meta, "date_done", str, "a date")
    if not text:
        return None
    try:
        date_done = datetime.fromisoformat(text)
    except ValueError:
        raise Unreadable("date_done is not a date") from None
    return date_done if date_done.tzinfo is not None else date_done.replace(tzinfo=UTC)


def parse_meta(task_id: str, raw: bytes | str) -> TaskState:
    """Decode one `celery-task-meta-<id>` value (JSON; result_extended fields optional).
    Raises Unreadable with a short reason for anything else."""
    meta = _decode(raw)
    if not isinstance(meta, dict):
        raise Unreadable("not a JSON object")
    status = meta.get("status")
    if not isinstance(status, str) or not status:
        raise Unreadable("status is missing" if status is None else "status is not a string")
    result = meta.get("result")
    worker = _optional(meta, "worker", str, "a string")
    if status == "STARTED" and isinstance(result, Mapping):
        hostname = result.get("hostname")
        worker = worker or (hostname if isinstance(hostname, str) else None)
    return TaskState(
        task_id=task_id,
        status=status,
        result=result,
        traceback=_optional(meta, "traceback", str, "a string"),
        date_done=_date_done(meta),
        worker=worker or None,
        retries=_optional(meta, "retries", int, "an integer"),
    )


class ResultReader:
    def __init__(self, backend_url: str) -> None:
        self._redis = redis.Redis.from_url(backend_url, socket_timeout=10)
        self._logged: set[str] = set()
        self._lock = threading.Lock()

    def read(self, task_ids: Iterable[str]) -> dict[str, TaskState | None]:
        """States by id; None where the backend has no record (Celery's PENDING), and
        UNREADABLE (result: the reason) where the record cannot be decoded."""
        ids = list(dict.fromkeys(task_ids))
        states: dict[str, TaskState | None] = {}
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            values = self._redis.mget([META_PREFIX + i for i in chunk])
            for task_id, raw in zip(chunk, values, strict=True):
                states[task_id] = self._state(task_id, raw) if raw else None
        return states

    def _state(self, task_id: str, raw: bytes | str) -> TaskState:
        try:
            return parse_meta(task_id, raw)
        except Unreadable as exc:
            self._log_once(task_id, str(exc))
            return TaskState(task_id=task_id, status=UNREADABLE, result=str(exc))

    def _log_once(self, task_id: str, reason: str) -> None:
        with self._lock:
            if task_id in self._logged:
                return
            if len(self._logged) >= LOGGED_MAX:
                self._logged.clear()
            self._logged.add(task_id)
        logger.warning("result record of task %s is unreadable: %s", task_id, reason)

    def close(self) -> None:
        self._redis.close()
