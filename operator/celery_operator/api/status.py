"""Status shapes and the size limits the CRD schemas enforce on them.

A status write that breaks a maxLength/maxItems fails as a whole (422), so whatever
writes status cuts values with these helpers first. Unit tests check the limits against
the CRDs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NotRequired, TypedDict, TypeVar

# ScheduledTask status
ERROR_TYPE_MAX_LENGTH = 256
ERROR_MESSAGE_MAX_LENGTH = 4096
TRACEBACK_MAX_LENGTH = 16384
ATTEMPT_ERROR_MESSAGE_MAX_LENGTH = 1024
MAX_ATTEMPTS = 20
# status.result: compact JSON up to this many UTF-8 bytes; larger results are stored as
# their JSON text cut to this size, with resultTruncated: true.
RESULT_MAX_BYTES = 8192

# PeriodicTask status
# recentRuns[].phase of a run whose ScheduledTask has no phase yet (not a Phase: the
# ScheduledTask itself never is "Pending").
RUN_PENDING = "Pending"
MAX_NEXT_SCHEDULE_TIMES = 10
MAX_RECENT_RUNS = 20
MAX_RUNS_IN_STATUS = 256  # status.runs (runObjects: Never): both history limits and more
MAX_ACTIVE_RUNS = 100

_T = TypeVar("_T")


class TaskError(TypedDict):
    type: str
    message: str
    traceback: NotRequired[str]


class AttemptError(TypedDict):
    type: str
    message: str


class Attempt(TypedDict):
    attempt: int
    taskId: NotRequired[str]
    phase: NotRequired[str]
    queuedTime: NotRequired[str]
    startTime: NotRequired[str]
    completionTime: NotRequired[str]
    worker: NotRequired[str]
    error: NotRequired[AttemptError]


class RunRef(TypedDict):
    """An entry of PeriodicTask status.active."""

    name: str
    scheduledTime: NotRequired[str]


class RecentRun(TypedDict):
    """An entry of PeriodicTask status.recentRuns."""

    name: str
    scheduledTime: NotRequired[str]
    phase: NotRequired[str]


def truncate(text: str, limit: int, *, keep_end: bool = False) -> str:
    """`text` cut to at most `limit` characters, marking the cut with "…"."""
    if len(text) <= limit:
        return text
    if keep_end:
        return "…" + text[len(text) - limit + 1 :]
    return text[: limit - 1] + "…"


def task_error(type: str, message: str, traceback: str | None = None) -> TaskError:
    """status.error, cut to the CRD's limits (a traceback keeps its last, most useful lines)."""
    error = TaskError(
        type=truncate(type, ERROR_TYPE_MAX_LENGTH),
        message=truncate(message, ERROR_MESSAGE_MAX_LENGTH),
    )
    if traceback:
        error["traceback"] = truncate(traceback, TRACEBACK_MAX_LENGTH, keep_end=True)
    return error


def attempt_error(type: str, message: str) -> AttemptError:
    """status.attempts[].error, cut to the CRD's limits."""
    return AttemptError(
        type=truncate(type, ERROR_TYPE_MAX_LENGTH),
        message=truncate(message, ATTEMPT_ERROR_MESSAGE_MAX_LENGTH),
    )


def capped_result(value: Any, max_bytes: int = RESULT_MAX_BYTES) -> tuple[Any, bool]:
    """(status.result, status.resultTruncated) for a task's JSON result.

    A result whose compact JSON fits in `max_bytes` is kept as is; a larger one becomes
    its JSON text cut to `max_bytes` bytes (on a character boundary). So does a result
    the API server cannot store as JSON (NaN or Infinity, which Python's json emits).
    """
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        return truncate_bytes(text, max_bytes), True
    if len(text.encode()) <= max_bytes:
        return value, False
    return truncate_bytes(text, max_bytes), True


def truncate_bytes(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` UTF-8 bytes, on a character boundary."""
    return text.encode()[:max_bytes].decode(errors="ignore")


def keep_last(items: Sequence[_T], limit: int) -> list[_T]:
    """The last `limit` items (history lists are oldest first)."""
    return list(items[-limit:]) if limit > 0 else []
