"""Message header names a user may not set in spec.task.headers.

Celery lets `send_task(headers=...)` replace its own protocol-2 headers, and the worker
builds the task's request context from the same dict, so a header named `task` or `id`
would run another task, under another id. The operator's own headers (prefix
`celeryoperator_`) identify its messages to the worker guard. The CRD rule lists the
same names (a unit test checks both, and that Celery's headers are all here).
"""

from __future__ import annotations

# Headers Celery writes in every protocol-2 message (celery.app.amqp.AMQP.as_task_v2).
CELERY_MESSAGE_HEADERS: tuple[str, ...] = (
    "lang",
    "task",
    "id",
    "shadow",
    "eta",
    "expires",
    "group",
    "group_index",
    "retries",
    "timelimit",
    "root_id",
    "parent_id",
    "argsrepr",
    "kwargsrepr",
    "origin",
    "ignore_result",
    "replaced_task_nesting",
    "stamped_headers",
    "stamps",
)
# Names the worker reads from the same dict into the task's request (celery.app.task.Context).
CELERY_REQUEST_FIELDS: tuple[str, ...] = (
    "args",
    "kwargs",
    "callbacks",
    "errbacks",
    "chain",
    "chord",
    "called_directly",
    "correlation_id",
    "delivery_info",
    "headers",
    "hostname",
    "is_eager",
    "logfile",
    "loglevel",
    "properties",
    "reply_to",
    "taskset",
    "groups",
    "time_limit",
    "soft_time_limit",
    "utc",
)
RESERVED_HEADERS: tuple[str, ...] = CELERY_MESSAGE_HEADERS + CELERY_REQUEST_FIELDS
# Every header the operator adds to a message starts with this.
OPERATOR_HEADER_PREFIX = "celeryoperator_"
# A PeriodicTask adds this header to every run it creates.
PERIODIC_RESERVED_HEADERS: tuple[str, ...] = ("periodic_task_name",)

HEADERS_MAX = 32
# A PeriodicTask's runs carry one more header, and must fit in HEADERS_MAX.
PERIODIC_HEADERS_MAX = HEADERS_MAX - len(PERIODIC_RESERVED_HEADERS)
HEADER_NAME_MAX_LENGTH = 128
HEADER_VALUE_MAX_LENGTH = 1024


RESERVED_HEADER_REASON = (
    "Celery's message headers and names starting with celeryoperator_ are set by Celery and "
    "the operator"
)
PERIODIC_RESERVED_HEADER_REASON = "the operator sets it on every run of a PeriodicTask"


def reserved_header_reason(name: str, *, periodic: bool = False) -> str | None:
    """Why a user may not set header `name` (periodic: in a PeriodicTask), or None."""
    if name in RESERVED_HEADERS or name.startswith(OPERATOR_HEADER_PREFIX):
        return RESERVED_HEADER_REASON
    if periodic and name in PERIODIC_RESERVED_HEADERS:
        return PERIODIC_RESERVED_HEADER_REASON
    return None
