"""Lifecycle phases of a ScheduledTask (status.phase)."""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    """status.phase of a ScheduledTask; the values are the CRD's enum."""

    SCHEDULED = "Scheduled"  # waiting for the due time
    DISPATCHING = "Dispatching"  # claimed by the operator, being published
    QUEUED = "Queued"  # published to the broker
    STARTED = "Started"  # a worker runs it
    RETRYING = "Retrying"  # waiting for a retry (Celery's or spec.retry's)
    REVOKING = "Revoking"  # revoke sent, enforced until known to have taken effect
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    REVOKED = "Revoked"
    EXPIRED = "Expired"
    INVALID = "Invalid"  # the spec cannot be run; see the Stalled condition


FINISHED_PHASES: frozenset[Phase] = frozenset(
    {Phase.SUCCEEDED, Phase.FAILED, Phase.REVOKED, Phase.EXPIRED, Phase.INVALID}
)
