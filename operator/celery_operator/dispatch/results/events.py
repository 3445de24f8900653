"""No result backend the operator can read (`rpc://`, or none): states from worker
events alone.

rpc:// sends each result to the client that published the task, as a message only
that client can consume: nobody else (not the operator) can read it. What remains is
Celery's events (workers started with -E): task-started, -succeeded, -failed, -retried
and -revoked say how a task ended, so no task stays Queued or Started after its worker
reported the end. The result value is not known (an event carries a truncated repr,
not the value): status says results are not available from this backend. An end
reported while the operator was not listening is not heard (events are not stored).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from celery_operator.api.celery_state import (
    FAILURE,
    RETRY,
    REVOKED,
    STARTED,
    SUCCESS,
    TaskState,
)
from celery_operator.dispatch.events import TaskEvent

logger = logging.getLogger(__name__)

# Remembered ends (bounded: the oldest are forgotten first; a tracked task is read
# within seconds of its event, long before).
REMEMBERED_MAX = 100_000
EVENT_STATES = {
    "task-started": STARTED,
    "task-succeeded": SUCCESS,
    "task-failed": FAILURE,
    "task-retried": RETRY,
    "task-revoked": REVOKED,
    "task-rejected": FAILURE,
}
# A later event never replaces an end (events may arrive out of order).
ENDS = frozenset({SUCCESS, FAILURE, REVOKED})


def exception_of(event: TaskEvent) -> dict[str, Any] | None:
    """Celery's exception dict from an event's exception repr ("ValueError('boom')")."""
    if event.exception is None:
        return None
    name, _, rest = event.exception.partition("(")
    message = rest[:-1] if rest.endswith(")") else rest
    return {"exc_type": name.strip() or "Exception", "exc_message": message.strip("'\"")}


def state_of(event: TaskEvent) -> TaskState | None:
    status = EVENT_STATES.get(event.kind)
    if status is None:
        return None
    when = datetime.fromtimestamp(event.timestamp, UTC) if event.timestamp else None
    if event.kind == "task-rejected":
        result: Any = {"exc_type": "Rejected", "exc_message": "the worker rejected the task"}
    else:
        result = exception_of(event) if status in (FAILURE, RETRY) else None
    return TaskState(
        task_id=event.task_id,
        status=status,
        result=result,
        traceback=event.traceback,
        date_done=when if status in ENDS else None,
        worker=event.hostname,
    )


class EventResults:
    available = False
    batch = 10_000

    def __init__(self) -> None:
        self._states: OrderedDict[str, TaskState] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, event: TaskEvent) -> None:
        state = state_of(event)
        if state is None:
            return
        with self._lock:
            known = self._states.get(state.task_id)
            if known is not None and known.status in ENDS:
                return
            self._states[state.task_id] = state
            self._states.move_to_end(state.task_id)
            while len(self._states) > REMEMBERED_MAX:
                self._states.popitem(last=False)

    def fetch(self, task_ids: Sequence[str], seen: Mapping[str, Any]) -> Mapping[str, Any]:
        """Ids with a remembered state (one forgotten here keeps the state the reader has)."""
        with self._lock:
            return {i: self._states[i] for i in task_ids if i in self._states}

    def parse(self, task_id: str, raw: Any) -> TaskState:
        assert isinstance(raw, TaskState)
        return raw

    def check(self) -> None:
        """Nothing to read: always answers."""

    def mark_revoked(self, task_id: str) -> None:
        logger.info("task %s: no durable revoke mark (this result backend keeps none); "
                    "the revoke broadcast reaches the workers listening now", task_id)

    def is_revoked(self, task_id: str) -> bool:
        return False  # nothing is recorded: whoever leads next sends the revoke again

    def mark_sent(self, task_id: str, run_id: str) -> bool:
        return False  # nowhere to keep it: the publish is confirmed in status at once

    def sent(self, task_ids: Sequence[str], run_id: str) -> set[str]:
        return set()

    def close(self) -> None:
        """Nothing to close."""
