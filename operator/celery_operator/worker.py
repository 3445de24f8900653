"""Worker-side guard for users' Celery apps: a republished task id runs once.

The operator publishes at least once: after a crash between publishing and recording
it, or after Redis lost its queues, it publishes the same deterministic task id again.
Celery itself does not deduplicate ids, so a worker that wants exactly-once execution
installs this guard. Before a task body runs, the guard claims its id, with Redis
`SET NX` or a PostgreSQL `INSERT … ON CONFLICT DO NOTHING` (chosen by URL); a second
delivery of that id finds the claim and is dropped (`Ignore`: the first run's state
and result stay in the backend).

The trade-off, stated plainly: a run that dies half-way (worker SIGKILLed with
acks_late) is not repeated for that id either; the operator sees no result and
retries by its own policy under a new attempt id.

    from celery_operator.worker import install_run_once_guard
    install_run_once_guard(app)            # before the worker starts
    install_run_once_guard(app, "db+postgresql://user:pass@db/app")  # claims in PostgreSQL

The guard also enforces revokes durably: a task id the operator marked revoked (a key
in the result backend's Redis, or a row in its database) does not run when it is
delivered, even to a worker that missed the revoke broadcast or restarted since; the
guard records REVOKED for it in the result backend, as Celery does for a revoked task.

Only messages sent by the operator (they carry the `celeryoperator_uid` header) are
guarded; other tasks of the app run as before. This module imports Celery, Redis and
SQLAlchemy, so it lives with the worker code users import, not in the operator's layers.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import Celery, states
from celery.exceptions import Ignore
from celery.signals import task_prerun

from celery_operator.config import redact_url
from celery_operator.dispatch import sqlstore
from celery_operator.dispatch.revocations import revoked_key

logger = logging.getLogger(__name__)

CLAIM_PREFIX = "celery-operator:run-once:"
OPERATOR_HEADER = "celeryoperator_uid"
DEFAULT_TTL_SECONDS = 7 * 24 * 3600
REVOKED_REASON = "revoked through celery-operator"
REDIS_PREFIXES = ("redis://", "rediss://", "unix://")


class DuplicateDelivery(Ignore):
    """Raised inside the worker for a task id that already ran; Celery drops it silently."""


class RevokedDelivery(Ignore):
    """Raised inside the worker for a task id the operator revoked (REVOKED is stored)."""


class ClaimUnavailable(Exception):
    """Raised inside the worker for an operator-sent task whose id the guard could not
    claim (its claim store unreachable or failing): the task fails rather than running
    unguarded, and the operator's retry policy decides what happens next."""


class RedisClaims:
    """Claims as `SET NX` keys; revoke marks as the operator's keys (dispatch.revocations)."""

    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url)

    def is_marked(self, task_id: str) -> bool:
        return bool(self.redis.exists(revoked_key(task_id)))

    def check_and_claim(self, task_id: str, ttl_seconds: int) -> tuple[bool, bool]:
        """(marked revoked here, first claim): one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.exists(revoked_key(task_id))
        pipe.set(CLAIM_PREFIX + task_id, "1", nx=True, ex=ttl_seconds)
        marked, claimed = pipe.execute()
        return bool(marked), bool(claimed)


class PostgresClaims:
    """Claims as rows (`INSERT … ON CONFLICT DO NOTHING`, table created if missing);
    revoke marks as the operator's rows in the same database (dispatch.sqlstore)."""

    def __init__(self, url: str) -> None:
        engine = sqlstore.create_engine(url)
        self.claims = sqlstore.IdTable(engine, sqlstore.CLAIMS_TABLE)
        self.marks = sqlstore.IdTable(engine, sqlstore.REVOKED_TABLE)

    def is_marked(self, task_id: str) -> bool:
        return self.marks.has(task_id)

    def check_and_claim(self, task_id: str, ttl_seconds: int) -> tuple[bool, bool]:
        return self.is_marked(task_id), self.claims.claim(task_id, ttl_seconds)


ClaimStore = RedisClaims | PostgresClaims


def open_claims(url: str) -> ClaimStore:
    """The claim store `url` names: Redis (redis://, rediss://, unix://) or PostgreSQL
    (db+postgresql://, postgresql://)."""
    if url.startswith(REDIS_PREFIXES):
        return RedisClaims(url)
    if sqlstore.is_postgres(url):
        return PostgresClaims(url)
    raise ValueError(
        f"run-once guard: {redact_url(url)} is neither Redis nor PostgreSQL; pass "
        "claims_url=redis://… or db+postgresql://…"
    )


def install_run_once_guard(
    app: Celery, claims_url: str | None = None, ttl_seconds: int = DEFAULT_TTL_SECONDS
) -> None:
    """Make operator-sent tasks of `app` run at most once per task id.

    `claims_url` (Redis or PostgreSQL) defaults to the app's result backend when it is
    one of those, else its broker when that is Redis. Claims expire after `ttl_seconds`
    (keep it above the longest time an id may be republished: the operator's retry
    horizon). Revoke marks are read from the result backend (where the operator writes
    them) and from the claim store too.
    """
    backend_url = _store_backend_url(app)
    url = claims_url or backend_url or _redis_broker_url(app)
    if url is None:
        raise ValueError(
            "run-once guard: the app's result backend and broker are neither Redis nor "
            "PostgreSQL; pass claims_url=redis://… or db+postgresql://…"
        )
    open_claims(url)  # a URL it cannot use fails now, at install, not per task
    stores: dict[str, ClaimStore] = {}

    def store(for_url: str) -> ClaimStore:
        if for_url not in stores:  # in the pool process: never shared across a fork
            stores[for_url] = open_claims(for_url)
        return stores[for_url]

    def guard(task_id: str | None = None, task: Any = None, **_: Any) -> None:
        request = getattr(task, "request", None)
        headers = getattr(request, "headers", None) or {}
        if not task_id or (OPERATOR_HEADER not in headers and not _has_header(request)):
            return
        try:
            revoked = backend_url is not None and backend_url != url and (
                store(backend_url).is_marked(task_id)
            )
            marked, first = store(url).check_and_claim(task_id, ttl_seconds)
        except Exception as exc:
            # Celery logs what a signal handler raises and runs the task anyway: the
            # failure is carried to the task call instead (see _wrap_task_call).
            logger.error("task %s: the run-once guard could not claim its id (%s); "
                         "failing it rather than running it unguarded", task_id,
                         type(exc).__name__)
            if request is not None:
                request.celeryoperator_unclaimed = type(exc).__name__
            return
        revoked = revoked or marked
        if request is None:
            return
        if not first:
            logger.warning("task %s was delivered again; it already ran, dropping it", task_id)
            # Mark the request so the task body is skipped (see _wrap_task_call) and so
            # Celery does not overwrite the first run's record with STARTED next
            # (task_track_started): the operator would wait on that record forever.
            request.celeryoperator_duplicate = True
            _skip_started_of_marked(task.backend)
        elif revoked:
            logger.warning("task %s was revoked through celery-operator; not running it",
                           task_id)
            # REVOKED is what Celery itself stores for a revoked task; STARTED must not
            # follow it (see _skip_started_of_marked), and the body must not run.
            request.celeryoperator_revoked = True
            _skip_started_of_marked(task.backend)
            task.backend.mark_as_revoked(task_id, REVOKED_REASON, request=request)
            _announce_revoked(task)

    task_prerun.connect(guard, weak=False)
    _wrap_task_call(app)


def _has_header(request: Any) -> bool:
    # Celery flattens custom message headers onto the request object.
    return getattr(request, OPERATOR_HEADER, None) is not None


def _store_backend_url(app: Celery) -> str | None:
    """The app's result backend when the guard can keep claims there."""
    backend = str(app.conf.result_backend or "")
    if backend.startswith(REDIS_PREFIXES) or sqlstore.is_postgres(backend):
        return backend
    return None


def _redis_broker_url(app: Celery) -> str | None:
    broker = str(app.conf.broker_url or "")
    return broker if broker.startswith(REDIS_PREFIXES) else None


def _marked(request: Any) -> bool:
    return bool(
        getattr(request, "celeryoperator_duplicate", False)
        or getattr(request, "celeryoperator_revoked", False)
    )


def _announce_revoked(task: Any) -> None:
    """A task-revoked event, as a worker sends for a revoked task: a hint for the
    operator to read the result backend now. Best effort: the record is what counts."""
    try:
        task.send_event(
            "task-revoked", retry=False, terminated=False, signum=None, expired=False
        )
    except Exception as exc:
        logger.info("could not send task-revoked for %s: %s", task.request.id, exc)


def _skip_started_of_marked(backend: Any) -> None:
    """Wrap this backend's `store_result` (once) to drop the STARTED record of a delivery
    the guard marked (duplicate or revoked). Celery stores STARTED through the same
    backend object right after task_prerun, with the marked request."""
    if getattr(backend, "_celeryoperator_wrapped", False):
        return
    original = backend.store_result

    def store_result(task_id: str, result: Any, state: str, *args: Any, **kwargs: Any) -> Any:
        if state == states.STARTED and _marked(kwargs.get("request")):
            return result
        return original(task_id, result, state, *args, **kwargs)

    backend.store_result = store_result
    backend._celeryoperator_wrapped = True


def _wrap_task_call(app: Celery) -> None:
    """Skip the body of a task whose delivery the guard marked (duplicate or revoked).

    Signals cannot cancel a task, so the app's base Task gets a `__call__` that checks
    the mark first; `Ignore` leaves the stored state untouched (the first run's, or
    the REVOKED the guard stored).
    """
    base = app.Task

    if getattr(base, "_celeryoperator_guarded", False):
        return

    original_call = base.__call__

    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(self.request, "celeryoperator_duplicate", False):
            raise DuplicateDelivery()
        if getattr(self.request, "celeryoperator_revoked", False):
            raise RevokedDelivery()
        unclaimed = getattr(self.request, "celeryoperator_unclaimed", None)
        if unclaimed:
            raise ClaimUnavailable(
                f"the run-once guard could not claim task id {self.request.id} ({unclaimed}); "
                "not run")
        return original_call(self, *args, **kwargs)

    base.__call__ = __call__
    base._celeryoperator_guarded = True
