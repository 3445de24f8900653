"""What Celery's result backend says about one task id, as plain values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Celery's backend states (RECEIVED is never written to the backend).
PENDING = "PENDING"
STARTED = "STARTED"
RETRY = "RETRY"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REVOKED = "REVOKED"
# Not Celery's: the record exists but cannot be decoded (pickle, msgpack, garbage);
# TaskState.result then holds the reason. Quarantined: it stops only its own task.
UNREADABLE = "UNREADABLE"


@dataclass(frozen=True)
class TaskState:
    """One `celery-task-meta-<id>` record, decoded."""

    task_id: str
    status: str
    result: Any = None  # the return value (SUCCESS) or the exception dict (FAILURE/RETRY)
    traceback: str | None = None
    date_done: datetime | None = None
    worker: str | None = None
    retries: int | None = None

    @property
    def exception_type(self) -> str | None:
        if isinstance(self.result, Mapping) and self.result.get("exc_type"):
            return str(self.result["exc_type"])
        return None

    @property
    def exception_message(self) -> str | None:
        if not isinstance(self.result, Mapping):
            return None
        message = self.result.get("exc_message")
        if isinstance(message, list | tuple):
            return " ".join(str(m) for m in message)
        return None if message is None else str(message)
