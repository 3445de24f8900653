"""Celery's Redis result backend: an MGET of the `celery-task-meta-<id>` keys per batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis

from celery_operator.api.celery_state import TaskState
from celery_operator.config import redact_url
from celery_operator.dispatch.results.base import PROBE_ID, ResultBackendError
from celery_operator.dispatch.results.meta import parse_meta
from celery_operator.dispatch.revocations import RevokeMarks

META_PREFIX = "celery-task-meta-"


class RedisResults:
    available = True
    batch = 500

    def __init__(self, url: str) -> None:
        self._url = url
        self._redis = redis.Redis.from_url(url, socket_timeout=10)
        self._marks = RevokeMarks(url)

    def fetch(self, task_ids: Sequence[str], seen: Mapping[str, Any]) -> Mapping[str, Any]:
        """Every id: a key does not say whether it changed (the reader compares)."""
        try:
            values = self._redis.mget([META_PREFIX + i for i in task_ids])
        except redis.RedisError as exc:
            raise ResultBackendError(f"{redact_url(self._url)}: {exc}") from exc
        return {i: raw or None for i, raw in zip(task_ids, values, strict=True)}

    def parse(self, task_id: str, raw: Any) -> TaskState:
        return parse_meta(task_id, raw)

    def check(self) -> None:
        self.fetch([PROBE_ID], {})

    def mark_revoked(self, task_id: str) -> None:
        self._marks.mark(task_id)

    def is_revoked(self, task_id: str) -> bool:
        return self._marks.is_marked(task_id)

    def mark_sent(self, task_id: str, run_id: str) -> bool:
        self._marks.mark_sent(task_id, run_id)
        return True

    def sent(self, task_ids: Sequence[str], run_id: str) -> set[str]:
        try:
            return self._marks.sent(task_ids, run_id)
        except redis.RedisError as exc:
            raise ResultBackendError(f"{redact_url(self._url)}: {exc}") from exc

    def close(self) -> None:
        self._redis.close()
        self._marks.close()
