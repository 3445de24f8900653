"""Durable marks in the result backend's Redis: a key per revoked task id, and a key
per task id sent to a broker lifetime.

A revoke broadcast reaches only the workers listening at that moment, and they keep it
in memory. The mark outlives both: the worker-side guard (celery_operator.worker) reads
it before a task body runs and refuses the task. The operator always has this Redis (it
reads results there), and so does a worker that reports results to it.

A sent mark is the confirm of a publish (DESIGN.md, "Dispatch"): written right after the
broker accepted the message, keyed by the task id and the broker's run id, so an
operator that takes over an unconfirmed claim finds whether the message went out to the
broker lifetime there is now — and does not publish it again.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

REVOKED_PREFIX = "celery-operator-revoked-"
# As long as the run-once guard's claims: longer than the operator republishes an id.
REVOKED_TTL_SECONDS = 7 * 24 * 3600
SENT_PREFIX = "celery-operator-sent-"
# A mark is read only until the task's Queued or final write lands (seconds, or the time
# the operator is down). Celery keeps results for a day by default; so do the marks.
SENT_TTL_SECONDS = 24 * 3600


def revoked_key(task_id: str) -> str:
    return REVOKED_PREFIX + task_id


def sent_id(task_id: str, run_id: str) -> str:
    """One publish of `task_id` to the broker lifetime `run_id`."""
    return f"{task_id}/{run_id}"


class RevokeMarks:
    def __init__(self, backend_url: str) -> None:
        self._redis = redis.Redis.from_url(backend_url, socket_timeout=10)

    def mark(self, task_id: str) -> None:
        self._redis.set(revoked_key(task_id), "1", ex=REVOKED_TTL_SECONDS)

    def is_marked(self, task_id: str) -> bool:
        return bool(self._redis.exists(revoked_key(task_id)))

    def mark_sent(self, task_id: str, run_id: str) -> None:
        self._redis.set(SENT_PREFIX + sent_id(task_id, run_id), "1", ex=SENT_TTL_SECONDS)

    def sent(self, task_ids: Sequence[str], run_id: str) -> set[str]:
        """The ids among `task_ids` marked sent to the broker lifetime `run_id`."""
        if not task_ids:
            return set()
        values = self._redis.mget([SENT_PREFIX + sent_id(i, run_id) for i in task_ids])
        return {i for i, v in zip(task_ids, values, strict=True) if v is not None}

    def close(self) -> None:
        self._redis.close()
