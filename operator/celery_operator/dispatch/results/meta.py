"""Celery's task meta, decoded the way Celery writes it, whatever backend holds it.

Every record is decoded on its own: one that is not JSON (a worker with the pickle or
msgpack serializer, garbage) or not shaped like Celery's meta raises Unreadable with a
short reason, and the reader quarantines that id alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from celery_operator.api.celery_state import TaskState


class Unreadable(ValueError):
    """A record that is not Celery's JSON meta; the message is the short reason."""


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON: status written with them would be refused.
    raise Unreadable(f"not JSON ({name})")


# One decoder for every record (json.loads would build one per call).
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def decode_json(raw: bytes | str) -> Any:
    try:
        return _DECODER.decode(raw if isinstance(raw, str) else raw.decode("utf-8"))
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
    value = meta.get("date_done")
    if isinstance(value, datetime):  # a database column: naive means UTC, as Celery writes
        date_done = value
    else:
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
    return state_from_meta(task_id, decode_json(raw))


def state_from_meta(task_id: str, meta: Any) -> TaskState:
    """The state in Celery's meta mapping (status, result, traceback, date_done and the
    optional worker and retries). Raises Unreadable with a short reason."""
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
