"""metav1.Condition lists in status.conditions (kstatus: Ready, Stalled, Reconciling)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from celery_operator.api.timefmt import format_time

READY = "Ready"
STALLED = "Stalled"
RECONCILING = "Reconciling"

TRUE = "True"
FALSE = "False"
UNKNOWN = "Unknown"
_STATUSES = (TRUE, FALSE, UNKNOWN)

# metav1.Condition's own validation (the CRDs carry the same schema).
REASON_PATTERN = "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
REASON_MAX_LENGTH = 1024
MESSAGE_MAX_LENGTH = 32768
_REASON = re.compile(REASON_PATTERN)


def get_condition(
    conditions: Sequence[Mapping[str, Any]] | None, type: str
) -> Mapping[str, Any] | None:
    """The condition of this type, or None."""
    for condition in conditions or ():
        if condition.get("type") == type:
            return condition
    return None


def is_condition_true(conditions: Sequence[Mapping[str, Any]] | None, type: str) -> bool:
    """Whether the condition of this type exists with status "True"."""
    condition = get_condition(conditions, type)
    return condition is not None and condition.get("status") == TRUE


def set_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    *,
    type: str,
    status: str,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """A new condition list with the condition of `type` set; the input is not changed.

    lastTransitionTime is `now` when the status changes (or the condition is new) and kept
    otherwise; an existing condition keeps its place in the list, a new one is appended.
    `generation` becomes observedGeneration (omitted when None). The message is cut to the
    API's limit; an invalid status or reason raises ValueError (it would fail with a 422).
    """
    if status not in _STATUSES:
        raise ValueError(f"condition status must be one of {_STATUSES}, not {status!r}")
    if len(reason) > REASON_MAX_LENGTH or not _REASON.fullmatch(reason):
        raise ValueError(f"condition reason must be CamelCase (e.g. TaskFailed), not {reason!r}")
    previous = get_condition(conditions, type)
    if (
        previous is not None
        and previous.get("status") == status
        and previous.get("lastTransitionTime")
    ):
        transition = str(previous["lastTransitionTime"])
    else:
        transition = format_time(now)
    condition: dict[str, Any] = {"type": type, "status": status}
    if generation is not None:
        condition["observedGeneration"] = generation
    condition.update(
        {
            "lastTransitionTime": transition,
            "reason": reason,
            "message": message[:MESSAGE_MAX_LENGTH],
        }
    )
    result = [dict(c) for c in conditions or ()]
    for index, existing in enumerate(result):
        if existing.get("type") == type:
            result[index] = condition
            return result
    result.append(condition)
    return result
