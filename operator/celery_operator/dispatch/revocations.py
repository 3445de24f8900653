"""Durable revoke marks: a key per revoked task id in the result backend's Redis.

A revoke broadcast reaches only the workers listening at that moment, and they keep it
in memory. The mark outlives both: the worker-side guard (celery_operator.worker) reads
it before a task body runs and refuses the task. The operator always has this Redis (it
reads results there), and so does a worker that reports results to it.
"""

from __future__ import annotations

import redis

REVOKED_PREFIX = "celery-operator-revoked-"
# As long as the run-once guard's claims: longer than the operator republishes an id.
REVOKED_TTL_SECONDS = 7 * 24 * 3600


def revoked_key(task_id: str) -> str:
    return REVOKED_PREFIX + task_id


class RevokeMarks:
    def __init__(self, backend_url: str) -> None:
        self._redis = redis.Redis.from_url(backend_url, socket_timeout=10)

    def mark(self, task_id: str) -> None:
        self._redis.set(revoked_key(task_id), "1", ex=REVOKED_TTL_SECONDS)

    def is_marked(self, task_id: str) -> bool:
        return bool(self._redis.exists(revoked_key(task_id)))

    def close(self) -> None:
        self._redis.close()
