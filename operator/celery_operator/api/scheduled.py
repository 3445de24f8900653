"""ScheduledTask spec: one Celery call, when to send it, expiry, retries and revocation."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from celery_operator.api import defaults
from celery_operator.api._fields import Reader, describe, join
from celery_operator.api.apps import AppDefaults, AppRef, read_app_ref, render_app_ref
from celery_operator.api.bounds import BACKOFF_FACTOR_MAX, SECONDS_MAX
from celery_operator.api.expires import read_expires, render_expires
from celery_operator.api.slips import SCHEDULED_SPEC_SLIPS
from celery_operator.api.task import TaskCall, read_task, render_task
from celery_operator.api.timefmt import format_time

RETRY_ON_FAILED = "Failed"
RETRY_ON_LOST = "Lost"
RETRY_ON_CHOICES = (RETRY_ON_FAILED, RETRY_ON_LOST)
RETRY_LIMIT_MAX = 100
# Every field of the spec and its objects, as the CRD declares them (a unit test compares).
SPEC_FIELDS = (
    "task",
    "eta",
    "countdown",
    "expires",
    "retry",
    "revoke",
    "ttlSecondsAfterFinished",
    "app",
)
RETRY_FIELDS = ("limit", "backoff", "on")
BACKOFF_FIELDS = ("initialSeconds", "factor", "maxSeconds")
REVOKE_FIELDS = ("terminate", "signal")
REVOKE_SIGNALS = ("SIGTERM", "SIGKILL", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2")


@dataclass(frozen=True)
class RetryPolicy:
    """Retries by the operator (new task id per attempt), not Celery's in-worker retries.

    The delay before retry n (from 1) is min(max_seconds, initial_seconds * factor**(n-1)).
    """

    limit: int = defaults.RETRY_LIMIT
    initial_seconds: float = defaults.RETRY_INITIAL_SECONDS
    factor: float = defaults.RETRY_FACTOR
    max_seconds: float = defaults.RETRY_MAX_SECONDS
    on: frozenset[str] = frozenset(defaults.RETRY_ON)


@dataclass(frozen=True)
class RevokeRequest:
    """spec.revoke is set: the user asked to cancel the task."""

    terminate: bool = defaults.REVOKE_TERMINATE
    signal: str = defaults.REVOKE_SIGNAL


@dataclass(frozen=True)
class ScheduledTaskSpec:
    """A parsed ScheduledTask spec. At most one of eta/countdown and of the expires forms."""

    task: TaskCall
    eta: datetime | None = None
    countdown: float | None = None
    expires_seconds: float | None = None  # seconds after the due time
    expires_at: datetime | None = None
    retry: RetryPolicy = RetryPolicy()
    revoke: RevokeRequest | None = None
    ttl_seconds_after_finished: int | None = None
    app: AppRef | None = None  # None: the namespace's or the cluster's default app


def with_app_defaults(spec: ScheduledTaskSpec, defaults: AppDefaults) -> ScheduledTaskSpec:
    """The spec with its app's defaults where it leaves them unset (the queue is applied
    when the message is sent: effective_queue)."""
    if defaults.expires is None or spec.expires_seconds is not None or spec.expires_at:
        return spec
    return replace(spec, expires_seconds=float(defaults.expires))


def parse_scheduled_task_spec(spec: Mapping[str, Any]) -> ScheduledTaskSpec:
    """Parse `spec` of a ScheduledTask, with or without schema defaults applied.

    Raises InvalidSpec listing every problem with its field path (e.g. `spec.countdown`).
    """
    reader = Reader()
    path = "spec"
    if not isinstance(spec, Mapping):
        reader.error(path, f"must be an object, not {describe(spec)}")
        reader.raise_if_invalid()
    reader.no_other_keys(spec, path, SPEC_FIELDS, SCHEDULED_SPEC_SLIPS)
    raw_task = reader.mapping(spec, "task", path, required=True)
    task = read_task(reader, raw_task, join(path, "task")) if raw_task is not None else None
    eta = reader.time(spec, "eta", path)
    countdown = reader.number(spec, "countdown", path, minimum=0, maximum=SECONDS_MAX)
    if spec.get("eta") is not None and spec.get("countdown") is not None:
        reader.error(join(path, "countdown"), "Forbidden: may not set both eta and countdown")
    expires_seconds, expires_at = read_expires(reader, spec, path)
    retry = _read_retry(reader, spec, path)
    revoke = _read_revoke(reader, spec, path)
    ttl = reader.integer(spec, "ttlSecondsAfterFinished", path, minimum=0, maximum=SECONDS_MAX)
    app = read_app_ref(reader, spec, path)
    reader.raise_if_invalid()
    assert task is not None
    return ScheduledTaskSpec(
        task=task,
        eta=eta,
        countdown=countdown,
        expires_seconds=expires_seconds,
        expires_at=expires_at,
        retry=retry,
        revoke=revoke,
        ttl_seconds_after_finished=ttl,
        app=app,
    )


def _read_retry(reader: Reader, spec: Mapping[str, Any], path: str) -> RetryPolicy:
    raw = reader.mapping(spec, "retry", path)
    if raw is None:
        return RetryPolicy()
    path = join(path, "retry")
    reader.no_other_keys(raw, path, RETRY_FIELDS)
    limit = reader.integer(raw, "limit", path, minimum=0, maximum=RETRY_LIMIT_MAX)
    backoff = reader.mapping(raw, "backoff", path) or {}
    backoff_path = join(path, "backoff")
    reader.no_other_keys(backoff, backoff_path, BACKOFF_FIELDS)
    initial = reader.number(backoff, "initialSeconds", backoff_path, minimum=0, maximum=SECONDS_MAX)
    factor = reader.number(backoff, "factor", backoff_path, minimum=1, maximum=BACKOFF_FACTOR_MAX)
    maximum = reader.number(backoff, "maxSeconds", backoff_path, minimum=0, maximum=SECONDS_MAX)
    initial = defaults.RETRY_INITIAL_SECONDS if initial is None else initial
    maximum = defaults.RETRY_MAX_SECONDS if maximum is None else maximum
    if maximum < initial:
        reader.error(
            join(backoff_path, "maxSeconds"),
            "maxSeconds must be greater than or equal to initialSeconds",
        )
    on = _read_retry_on(reader, raw, path)
    return RetryPolicy(
        limit=defaults.RETRY_LIMIT if limit is None else limit,
        initial_seconds=initial,
        factor=defaults.RETRY_FACTOR if factor is None else factor,
        max_seconds=maximum,
        on=on,
    )


def _read_retry_on(reader: Reader, raw: Mapping[str, Any], path: str) -> frozenset[str]:
    items = reader.sequence(raw, "on", path)
    if items is None:
        return frozenset(defaults.RETRY_ON)
    outcomes: set[str] = set()
    for index, item in enumerate(items):
        if item not in RETRY_ON_CHOICES:
            supported = ", ".join(f'"{c}"' for c in RETRY_ON_CHOICES)
            shown = json.dumps(item) if isinstance(item, str) else describe(item)
            reader.error(
                f"{join(path, 'on')}[{index}]",
                f"Unsupported value: {shown}: supported values: {supported}",
            )
        else:
            outcomes.add(item)
    return frozenset(outcomes)


def _read_revoke(reader: Reader, spec: Mapping[str, Any], path: str) -> RevokeRequest | None:
    raw = reader.mapping(spec, "revoke", path)
    if raw is None:
        return None
    path = join(path, "revoke")
    reader.no_other_keys(raw, path, REVOKE_FIELDS)
    terminate = reader.boolean(raw, "terminate", path, default=defaults.REVOKE_TERMINATE)
    signal = reader.string(raw, "signal", path, choices=REVOKE_SIGNALS)
    return RevokeRequest(terminate=terminate, signal=signal or defaults.REVOKE_SIGNAL)


def render_scheduled_task_spec(spec: ScheduledTaskSpec) -> dict[str, Any]:
    """The raw spec of a ScheduledTaskSpec, defaults written out (inverse of the parser)."""
    raw: dict[str, Any] = {"task": render_task(spec.task)}
    if spec.eta is not None:
        raw["eta"] = format_time(spec.eta, fraction=True)
    if spec.countdown is not None:
        raw["countdown"] = spec.countdown
    expires = render_expires(spec.expires_seconds, spec.expires_at)
    if expires is not None:
        raw["expires"] = expires
    retry = spec.retry
    raw["retry"] = {
        "limit": retry.limit,
        "backoff": {
            "initialSeconds": retry.initial_seconds,
            "factor": retry.factor,
            "maxSeconds": retry.max_seconds,
        },
        "on": [outcome for outcome in RETRY_ON_CHOICES if outcome in retry.on],
    }
    if spec.revoke is not None:
        raw["revoke"] = {"terminate": spec.revoke.terminate, "signal": spec.revoke.signal}
    if spec.ttl_seconds_after_finished is not None:
        raw["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
    if spec.app is not None:
        raw["app"] = render_app_ref(spec.app)
    return raw
