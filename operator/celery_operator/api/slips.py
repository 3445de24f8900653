"""Keys people write by mistake, and what to write instead.

Unless the client asks for strict field validation (kubectl does; server-side apply by a
GitOps tool or a Python client need not), the API server silently drops fields its schema
does not declare: a Celery-style `day_of_week: "1"` in a crontab would vanish and a weekly
job run daily. So the CRDs declare each slip below as a field (typed as SLIP_TYPES says:
CEL sees typed fields only) and refuse it with a CEL rule whose message is the one here (a
unit test checks CRDs and table agree, both ways), and the parsers refuse these and every
other unknown key.

Messages name a sibling field by its name and a field elsewhere by its path from the
object's root, in the API server's voice ("spec.schedule.crontab.day_of_week: Forbidden:
use dayOfWeek").
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from celery_operator.api.names import PERIODIC_KIND, SCHEDULED_KIND

_TASK_OPTIONS = "queue, routingKey, exchange, priority, headers, timeLimit, softTimeLimit"

# spec.task of both kinds (their task schemas are identical): Celery's keyword names, and
# a beat entry's own keys.
TASK_SLIPS: Mapping[str, str] = MappingProxyType({
    "routing_key": "use routingKey",
    "time_limit": "use timeLimit",
    "soft_time_limit": "use softTimeLimit",
    "task": "use name (the registered name of the Celery task)",
    "options": f"set each option as a field of task ({_TASK_OPTIONS}) and expires in spec",
    "expires": "use spec.expires",
})

# The keys of a beat_schedule entry that belong in spec.task.
_BEAT_ENTRY_SLIPS: Mapping[str, str] = MappingProxyType({
    "args": "use spec.task.args",
    "kwargs": "use spec.task.kwargs",
    "queue": "use spec.task.queue",
    "options": f"set each option as a field of spec.task ({_TASK_OPTIONS}) and expires here",
})

SCHEDULED_SPEC_SLIPS: Mapping[str, str] = _BEAT_ENTRY_SLIPS

_NOT_DELAYED = (
    "a PeriodicTask's runs are due at their fire times; use startTime to start the schedule "
    "later"
)

PERIODIC_SPEC_SLIPS: Mapping[str, str] = MappingProxyType({
    **_BEAT_ENTRY_SLIPS,
    "max_runs": "use maxRuns",
    "one_off": "use maxRuns: 1",
    "start_time": "use startTime",
    "end_time": "use endTime",
    "expire_seconds": "use expires (seconds after each fire time)",
    "enabled": "use suspend (true stops new runs)",
    "concurrency_policy": "use concurrencyPolicy",
    "starting_deadline_seconds": "use startingDeadlineSeconds",
    "timezone": "use spec.schedule.timeZone",
    "timeZone": "use spec.schedule.timeZone",
    "countdown": _NOT_DELAYED,
    "eta": _NOT_DELAYED,
})

SCHEDULE_SLIPS: Mapping[str, str] = MappingProxyType({
    "timezone": "use timeZone",
    "time_zone": "use timeZone",
    "run_every": "use interval",
})

CRONTAB_SLIPS: Mapping[str, str] = MappingProxyType({
    "day_of_week": "use dayOfWeek",
    "day_of_month": "use dayOfMonth",
    "month_of_year": "use monthOfYear",
    "minutes": "use minute",
    "hours": "use hour",
    "month": "use monthOfYear",
    "timezone": "use spec.schedule.timeZone",
    "timeZone": "use spec.schedule.timeZone",
})

# The JSON type a slip's value usually has, which the CRD declares it with (CEL can only see
# typed fields); every other slip is declared int-or-string. A value of another type is
# refused too, by the type check instead of the message.
SLIP_TYPES: Mapping[str, str] = MappingProxyType({
    "args": "array",
    "kwargs": "object",
    "options": "object",
    "enabled": "boolean",
    "one_off": "boolean",
    "time_limit": "number",
    "soft_time_limit": "number",
    "countdown": "number",
})
INT_OR_STRING = "int-or-string"


def slip_type(key: str) -> str:
    return SLIP_TYPES.get(key, INT_OR_STRING)


# kind -> path of an object in its schema -> slip key -> message: what the CRDs declare.
CRD_SLIPS: Mapping[str, Mapping[str, Mapping[str, str]]] = MappingProxyType({
    SCHEDULED_KIND: MappingProxyType({
        "spec": SCHEDULED_SPEC_SLIPS,
        "spec.task": TASK_SLIPS,
    }),
    PERIODIC_KIND: MappingProxyType({
        "spec": PERIODIC_SPEC_SLIPS,
        "spec.schedule": SCHEDULE_SLIPS,
        "spec.schedule.crontab": CRONTAB_SLIPS,
        "spec.task": TASK_SLIPS,
    }),
})
