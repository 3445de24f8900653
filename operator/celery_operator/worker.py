"""Worker-side guard for users' Celery apps: a republished task id runs once.

The operator publishes at least once: after a crash between publishing and recording
it, or after Redis lost its queues, it publishes the same deterministic task id again.
Celery itself does not deduplicate ids, so a worker that wants exactly-once execution
installs this guard. Before a task body runs, the guard claims its id with Redis
`SET NX`; a second delivery of that id finds the claim and is dropped (`Ignore`:
the first run's state and result stay in the backend).

The trade-off, stated plainly: a run that dies half-way (worker SIGKILLed with
acks_late) is not repeated for that id either; the operator sees no result and
retries by its own policy under a new attempt id.

    from celery_operator.worker import install_run_once_guard
    install_run_once_guard(app)            # before the worker starts

Only messages sent by the operator (they carry the `celeryoperator_uid` header) are
guarded; other tasks of the app run as before. This module imports Celery and Redis,
so it lives with the worker code users import, not in the operator's layers.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import Celery, states
from celery.exceptions import Ignore
from celery.signals import task_prerun

logger = logging.getLogger(__name__)

CLAIM_PREFIX = "celery-operator:run-once:"
OPERATOR_HEADER = "celeryoperator_uid"
DEFAULT_TTL_SECONDS = 7 * 24 * 3600


class DuplicateDelivery(Ignore):
    """Raised inside the worker for a task id that already ran; Celery drops it silently."""


def claim_run(client: redis.Redis, task_id: str, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> bool:
    """True the first time `task_id` is claimed, False for every later delivery."""
    return bool(client.set(CLAIM_PREFIX + task_id, "1", nx=True, ex=ttl_seconds))


def install_run_once_guard(
    app: Celery, redis_url: str | None = None, ttl_seconds: int = DEFAULT_TTL_SECONDS
) -> None:
    """Make operator-sent tasks of `app` run at most once per task id.

    `redis_url` defaults to the app's result backend when it is Redis, else its broker.
    Claims expire after `ttl_seconds` (keep it above the longest time an id may be
    republished: the operator's retry horizon).
    """
    url = redis_url or _default_url(app)
    client: redis.Redis | None = None

    def guard(task_id: str | None = None, task: Any = None, **_: Any) -> None:
        nonlocal client
        request = getattr(task, "request", None)
        headers = getattr(request, "headers", None) or {}
        if not task_id or (OPERATOR_HEADER not in headers and not _has_header(request)):
            return
        if client is None:
            client = redis.Redis.from_url(url)
        if not claim_run(client, task_id, ttl_seconds):
            logger.warning("task %s was delivered again; it already ran, dropping it", task_id)
            # Mark the request so the task body is skipped (see _wrap_task_call) and so
            # Celery does not overwrite the first run's record with STARTED next
            # (task_track_started): the operator would wait on that record forever.
            if request is not None:
                request.celeryoperator_duplicate = True
                _skip_started_of_duplicates(task.backend)

    task_prerun.connect(guard, weak=False)
    _wrap_task_call(app)


def _has_header(request: Any) -> bool:
    # Celery flattens custom message headers onto the request object.
    return getattr(request, OPERATOR_HEADER, None) is not None


def _default_url(app: Celery) -> str:
    backend = str(app.conf.result_backend or "")
    if backend.startswith(("redis://", "rediss://", "unix://")):
        return backend
    return str(app.conf.broker_url)


def _skip_started_of_duplicates(backend: Any) -> None:
    """Wrap this backend's `store_result` (once) to drop the STARTED record of a delivery
    the guard marked as a duplicate. Celery stores STARTED through the same backend object
    right after task_prerun, with the marked request."""
    if getattr(backend, "_celeryoperator_wrapped", False):
        return
    original = backend.store_result

    def store_result(task_id: str, result: Any, state: str, *args: Any, **kwargs: Any) -> Any:
        request = kwargs.get("request")
        if state == states.STARTED and getattr(request, "celeryoperator_duplicate", False):
            return result
        return original(task_id, result, state, *args, **kwargs)

    backend.store_result = store_result
    backend._celeryoperator_wrapped = True


def _wrap_task_call(app: Celery) -> None:
    """Skip the body of a task whose delivery the guard marked as a duplicate.

    Signals cannot cancel a task, so the app's base Task gets a `__call__` that checks
    the mark first; `Ignore` leaves the state of the first run untouched.
    """
    base = app.Task

    if getattr(base, "_celeryoperator_guarded", False):
        return

    original_call = base.__call__

    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(self.request, "celeryoperator_duplicate", False):
            raise DuplicateDelivery()
        return original_call(self, *args, **kwargs)

    base.__call__ = __call__
    base._celeryoperator_guarded = True
