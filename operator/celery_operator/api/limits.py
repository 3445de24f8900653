"""Every status size limit of both CRDs, and `fit_status` to cut a status patch to them.

One value over a maxLength/maxItems/maxProperties makes the API server refuse the whole
status write (422), which would freeze the status. So every status merge patch goes
through `fit_status` before it is sent. A unit test checks this table against the CRDs,
both ways.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from celery_operator.api import status
from celery_operator.api.names import PERIODIC_PLURAL, SCHEDULED_PLURAL

MAX_LENGTH = "maxLength"
MAX_ITEMS = "maxItems"
MAX_PROPERTIES = "maxProperties"

# metav1.Condition, identical in both CRDs.
_CONDITION_LIMITS = {
    "conditions": (MAX_ITEMS, 16),
    "conditions[].message": (MAX_LENGTH, 32768),
    "conditions[].reason": (MAX_LENGTH, 1024),
    "conditions[].type": (MAX_LENGTH, 316),
}

_SCHEDULED_LIMITS: Mapping[str, tuple[str, int]] = {
    "taskId": (MAX_LENGTH, 255),
    "worker": (MAX_LENGTH, 255),
    "error.type": (MAX_LENGTH, status.ERROR_TYPE_MAX_LENGTH),
    "error.message": (MAX_LENGTH, status.ERROR_MESSAGE_MAX_LENGTH),
    "error.traceback": (MAX_LENGTH, status.TRACEBACK_MAX_LENGTH),
    "attempts": (MAX_ITEMS, status.MAX_ATTEMPTS),
    "attempts[].taskId": (MAX_LENGTH, 255),
    "attempts[].worker": (MAX_LENGTH, 255),
    "attempts[].error.type": (MAX_LENGTH, status.ERROR_TYPE_MAX_LENGTH),
    "attempts[].error.message": (
        MAX_LENGTH,
        status.ATTEMPT_ERROR_MESSAGE_MAX_LENGTH,
    ),
    "claim.holder": (MAX_LENGTH, 253),
    "brokerRunId": (MAX_LENGTH, 64),
    **_CONDITION_LIMITS,
}

# plural -> path below .status ("[]": list items, "{}": map values) -> (keyword, limit).
STATUS_LIMITS: Mapping[str, Mapping[str, tuple[str, int]]] = MappingProxyType(
    {
        SCHEDULED_PLURAL: MappingProxyType(_SCHEDULED_LIMITS),
        PERIODIC_PLURAL: MappingProxyType(
            {
                "schedule": (MAX_LENGTH, 512),
                "nextScheduleTimes": (MAX_ITEMS, status.MAX_NEXT_SCHEDULE_TIMES),
                "active": (MAX_ITEMS, status.MAX_ACTIVE_RUNS),
                "active[].name": (MAX_LENGTH, 253),
                "recentRuns": (MAX_ITEMS, status.MAX_RECENT_RUNS),
                "recentRuns[].name": (MAX_LENGTH, 253),
                "lastHandledRunRequest": (MAX_LENGTH, 256),
                # Runs kept in status (runObjects: Never): each a ScheduledTask's status.
                "runs": (MAX_PROPERTIES, status.MAX_RUNS_IN_STATUS),
                "runs{}.revoke.signal": (MAX_LENGTH, 16),
                **{f"runs{{}}.status.{path}": limit for path, limit in _SCHEDULED_LIMITS.items()},
                **_CONDITION_LIMITS,
            }
        ),
    }
)

# Strings whose end is worth more than their start: a traceback's last lines name the error.
_KEEP_END = frozenset({"error.traceback", "runs{}.status.error.traceback"})


def fit_status(plural: str, patch: Mapping[str, Any]) -> dict[str, Any]:
    """`patch` (a .status merge patch) with every value cut to the CRD's limits.

    Strings longer than their maxLength end in "…" within the limit; lists keep their
    last (newest) maxItems items; maps their first maxProperties entries. None (remove
    the field) and values of unexpected types pass through unchanged.
    """
    limits = STATUS_LIMITS[plural]
    fitted: dict[str, Any] = _fit_object(patch, "", limits, _prefixes(plural))
    return fitted


@functools.cache
def _prefixes(plural: str) -> frozenset[str]:
    """Every path that has a limit at or below it: the only places worth walking into."""
    found: set[str] = {""}
    for path in STATUS_LIMITS[plural]:
        for index, char in enumerate(path):
            if char in ".[{":
                found.add(path[:index])
        found.add(path)
        found.add(path + "[]")
        found.add(path + "{}")
    return frozenset(found)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _fit_object(
    value: Mapping[str, Any],
    path: str,
    limits: Mapping[str, tuple[str, int]],
    prefixes: frozenset[str],
) -> dict[str, Any]:
    items = list(value.items())
    limit = limits.get(path)
    if limit is not None and limit[0] == MAX_PROPERTIES:
        items = items[: limit[1]]
        return {k: _fit(v, f"{path}{{}}", limits, prefixes) for k, v in items}
    return {k: _fit(v, _join(path, str(k)), limits, prefixes) for k, v in items}


def _fit(
    value: Any,
    path: str,
    limits: Mapping[str, tuple[str, int]],
    prefixes: frozenset[str],
) -> Any:
    if value is None or path not in prefixes:
        return value
    limit = limits.get(path)
    if isinstance(value, str):
        if limit is not None and limit[0] == MAX_LENGTH:
            return status.truncate(value, limit[1], keep_end=path in _KEEP_END)
        return value
    if isinstance(value, Mapping):
        return _fit_object(value, path, limits, prefixes)
    if isinstance(value, list | tuple):
        items = list(value)
        if limit is not None and limit[0] == MAX_ITEMS:
            items = items[len(items) - limit[1] :] if len(items) > limit[1] else items
        return [_fit(item, f"{path}[]", limits, prefixes) for item in items]
    return value
