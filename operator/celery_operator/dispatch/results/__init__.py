"""Reads task states from the result backend in batches; one module per backend, chosen
by URL: redis:// (MGET), db+postgresql:// (Celery's celery_taskmeta), django-db+postgresql://
(django-celery-results' table), rpc:// or none (worker events only).

A poll decodes only what is new: a record equal to the one the last poll decoded keeps
its state, and an id whose last state was final (SUCCESS, FAILURE, REVOKED: an id is one
attempt, so that never changes) is not asked again while it stays tracked.

Every record is decoded on its own: one that cannot be (pickle, msgpack, garbage, the
wrong shape) becomes an UNREADABLE state for its id alone, and the batch moves on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence

from celery_operator.api.celery_state import FAILURE, REVOKED, SUCCESS, UNREADABLE, TaskState
from celery_operator.dispatch.results.base import PROBE_ID, ResultBackendError, ResultStore
from celery_operator.dispatch.results.database import DatabaseResults
from celery_operator.dispatch.results.events import EventResults
from celery_operator.dispatch.results.meta import Unreadable, parse_meta
from celery_operator.dispatch.results.redis import META_PREFIX, RedisResults
from celery_operator.dispatch.sqlstore import DB_PREFIX, DJANGO_PREFIX, is_postgres

__all__ = [
    "META_PREFIX", "PROBE_ID", "ResultBackendError", "ResultReader", "Unreadable",
    "open_store", "parse_meta", "result_backend_problem",
]

logger = logging.getLogger(__name__)

REDIS_SCHEMES = frozenset({"redis", "rediss"})
EVENTS_ONLY_SCHEMES = frozenset({"rpc"})
# Ids already logged as unreadable (bounded: forgotten wholesale when full).
LOGGED_MAX = 10_000
FINAL_STATES = frozenset({SUCCESS, FAILURE, REVOKED})


def _scheme(url: str) -> str:
    return url.partition("://")[0].lower() if "://" in url else ""


def result_backend_problem(url: str) -> str | None:
    """Why the operator cannot read results from `url` (None: it can). Never quotes
    the URL (it may hold a password)."""
    scheme = _scheme(url)
    if scheme in REDIS_SCHEMES or scheme in EVENTS_ONLY_SCHEMES:
        return None
    if scheme.startswith((DB_PREFIX, DJANGO_PREFIX)):
        if is_postgres(url):
            return None
        return (f"the result backend URL's database {scheme.partition('+')[2]!r} is not "
                "supported (use db+postgresql:// or django-db+postgresql://)")
    return (f"the result backend URL's scheme {scheme!r} is not supported (use redis://, "
            "rediss://, db+postgresql://, django-db+postgresql:// or rpc://)")


def open_store(url: str | None) -> ResultStore:
    """The backend module for `url` (None or rpc://: events only); connects lazily."""
    if not url or _scheme(url) in EVENTS_ONLY_SCHEMES:
        return EventResults()
    problem = result_backend_problem(url)
    if problem is not None:
        raise ValueError(problem)
    if _scheme(url) in REDIS_SCHEMES:
        return RedisResults(url)
    return DatabaseResults(url)


class ResultReader:
    def __init__(self, backend_url: str | None) -> None:
        self.store = open_store(backend_url)
        self._logged: set[str] = set()
        self._lock = threading.Lock()
        # Per id last asked for and found: the raw record decoded, its state, and the
        # ids among them whose state is final.
        self._raw: dict[str, object] = {}
        self._states: dict[str, TaskState] = {}
        self._final: set[str] = set()
        self._read_lock = threading.Lock()

    @property
    def available(self) -> bool:
        """False: the backend keeps no results the operator can read (events only)."""
        return self.store.available

    def read(self, task_ids: Iterable[str]) -> dict[str, TaskState | None]:
        """States by id; None where the backend has no record (Celery's PENDING), and
        UNREADABLE (result: the reason) where the record cannot be decoded. One query
        per `store.batch` ids not already final. Raises ResultBackendError."""
        ids = dict.fromkeys(task_ids)
        with self._read_lock:
            raws, states, final = self._raw, self._states, self._final
            # Only ids asked for now are kept: the next poll's ids are (nearly) these.
            for stale in raws.keys() - ids.keys():
                del raws[stale], states[stale]
                final.discard(stale)
            asked = [task_id for task_id in ids if task_id not in final]
            batch = self.store.batch
            for start in range(0, len(asked), batch):
                changed = self.store.fetch(asked[start : start + batch], raws)
                for task_id, raw in changed.items():
                    if raw is None:
                        if raws.pop(task_id, None) is not None:
                            del states[task_id]
                        continue
                    before = raws.get(task_id)
                    if before is raw or (before is not None and before == raw):
                        continue
                    state = self._state(task_id, raw)
                    raws[task_id], states[task_id] = raw, state
                    if state.status in FINAL_STATES:
                        final.add(task_id)
            return dict(zip(ids, map(states.get, ids), strict=True))

    def _state(self, task_id: str, raw: object) -> TaskState:
        try:
            return self.store.parse(task_id, raw)
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

    def check(self) -> None:
        self.store.check()

    def mark_revoked(self, task_id: str) -> None:
        self.store.mark_revoked(task_id)

    def is_revoked(self, task_id: str) -> bool:
        return self.store.is_revoked(task_id)

    def mark_sent(self, task_id: str, run_id: str) -> bool:
        return self.store.mark_sent(task_id, run_id)

    def sent(self, task_ids: Sequence[str], run_id: str) -> set[str]:
        return self.store.sent(task_ids, run_id)

    def close(self) -> None:
        self.store.close()
