"""The schema defaults, mirrored once for specs that did not pass through the API server.

The API server applies these defaults from the CRD (crds/), which is the source of truth;
the parsers use the constants below only when a field is absent (unit tests, objects built
in code). A unit test reads every `default:` in the CRDs and compares it with the
`*_DEFAULTS` tables here, so the two cannot drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

# ScheduledTask
RETRY_LIMIT = 0
RETRY_INITIAL_SECONDS = 10.0
RETRY_FACTOR = 2.0
RETRY_MAX_SECONDS = 600.0
RETRY_ON: tuple[str, ...] = ("Failed", "Lost")
REVOKE_TERMINATE = False
REVOKE_SIGNAL = "SIGTERM"

# Both task kinds: spec.app.kind
APP_KIND = "CeleryApp"

# PeriodicTask
TIME_ZONE = "UTC"
CRONTAB_FIELD = "*"
CONCURRENCY_POLICY = "Allow"
SUSPEND = False
SUCCESSFUL_RUNS_HISTORY_LIMIT = 3
FAILED_RUNS_HISTORY_LIMIT = 1
RUN_OBJECTS = "Always"

# Field path (as in the CRD, below the version's schema root) -> default value.
SCHEDULED_TASK_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "spec.retry.limit": RETRY_LIMIT,
        "spec.retry.backoff.initialSeconds": RETRY_INITIAL_SECONDS,
        "spec.retry.backoff.factor": RETRY_FACTOR,
        "spec.retry.backoff.maxSeconds": RETRY_MAX_SECONDS,
        "spec.retry.on": list(RETRY_ON),
        "spec.revoke.terminate": REVOKE_TERMINATE,
        "spec.revoke.signal": REVOKE_SIGNAL,
        "spec.app.kind": APP_KIND,
    }
)

PERIODIC_TASK_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "spec.schedule.timeZone": TIME_ZONE,
        "spec.schedule.crontab.minute": CRONTAB_FIELD,
        "spec.schedule.crontab.hour": CRONTAB_FIELD,
        "spec.schedule.crontab.dayOfWeek": CRONTAB_FIELD,
        "spec.schedule.crontab.dayOfMonth": CRONTAB_FIELD,
        "spec.schedule.crontab.monthOfYear": CRONTAB_FIELD,
        "spec.concurrencyPolicy": CONCURRENCY_POLICY,
        "spec.suspend": SUSPEND,
        "spec.successfulRunsHistoryLimit": SUCCESSFUL_RUNS_HISTORY_LIMIT,
        "spec.failedRunsHistoryLimit": FAILED_RUNS_HISTORY_LIMIT,
        "spec.runObjects": RUN_OBJECTS,
        "spec.app.kind": APP_KIND,
    }
)
