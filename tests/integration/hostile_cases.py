"""The table of hostile and careless manifests for test_hostile_manifests.py.

Each case is what a tenant (or a careless user) could apply, and what issue 11 says must
happen to it — not what the code did when the case was written:

- REFUSED: the API server refuses it at apply, with the field named in its message;
- REPORTED: accepted, and within 10 s the object says so (phase Invalid, Stalled=True or
  a Warning Event), with nothing published to the broker;
- RUNS: odd but legitimate input: published exactly once, ends in `phase`, and its
  status stays within the schema's limits (`check` looks at it).

A case that allows both REFUSED and REPORTED leaves the choice of layer open (schema or
operator); the field must still be named when it is refused.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

from celery_operator.api import API_VERSION


class Outcome(Enum):
    REFUSED = "refused at apply"
    REPORTED = "accepted and reported"
    RUNS = "accepted and run"


REFUSED = frozenset({Outcome.REFUSED})
REPORTED = frozenset({Outcome.REPORTED})
EITHER = frozenset({Outcome.REFUSED, Outcome.REPORTED})
RUNS = frozenset({Outcome.RUNS})

ST = "ScheduledTask"
PT = "PeriodicTask"

ADD: dict[str, Any] = {"name": "demo.add", "args": [1, 2]}
YEARLY: dict[str, Any] = {"cron": "0 0 1 1 *"}  # never fires while the test runs
FORGED_ID = "6a0f1c2e-0000-4000-8000-00000000f04d"
OVERFLOWING_TIME = "9999-12-31T23:59:59-01:00"  # year 10000 in UTC
UNDERFLOWING_TIME = "0001-01-01T00:00:00+01:00"  # year 0 in UTC
RUN_REQUEST = "celeryoperator.dev/run-requested-at"
WEIRD_TEXT = {
    "ключ": "значение",
    "emoji🙂": "\u202eevil\u202c",
    "controls": "a\u0000b\u0007c\u001fd\u007f",
    "quotes": "\"'`\\",
}
BIG_RESULT = 2_000_000  # characters: far past status.result's 32 KiB
HUGE_ERROR = 200_000  # characters of exception message: status.error.message max 4096

Check = Callable[[Mapping[str, Any]], None]


@dataclasses.dataclass(frozen=True)
class Case:
    name: str  # also the object's name
    kind: str
    spec: Any
    expect: frozenset[Outcome]
    field: str = ""  # what a refusal must name
    why: str = ""
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    raw: str | None = None  # JSON text sent as is (what Python's json cannot write)
    phase: str | None = None  # RUNS: the final phase
    check: Check | None = None  # RUNS: more about the final status

    def manifest(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": {"name": self.name, **self.metadata},
            "spec": self.spec,
        }


def st(name: str, expect: frozenset[Outcome], field: str = "", why: str = "",
       task: Mapping[str, Any] | None = None, **spec: Any) -> Case:
    return Case(name, ST, {"task": dict(task or ADD), **spec}, expect, field, why)


def pt(name: str, expect: frozenset[Outcome], field: str = "", why: str = "",
       task: Mapping[str, Any] | None = None, schedule: Mapping[str, Any] | None = None,
       metadata: Mapping[str, Any] | None = None, **spec: Any) -> Case:
    body = {"schedule": dict(schedule or YEARLY), "task": dict(task or ADD), **spec}
    return Case(name, PT, body, expect, field, why, metadata=dict(metadata or {}))


def headers(task: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    return {**task, "headers": dict(values)}


def many_headers(count: int) -> dict[str, str]:
    return {f"x-tenant-{i:02d}": "v" for i in range(count)}


def raw_case(name: str, expect: frozenset[Outcome], field: str, why: str,
             task_json: str) -> Case:
    """A ScheduledTask whose task object is JSON text no Python encoder would produce."""
    text = (
        f'{{"apiVersion": "{API_VERSION}", "kind": "{ST}", '
        f'"metadata": {{"name": "{name}"}}, "spec": {{"task": {task_json}}}}}'
    )
    return Case(name, ST, None, expect, field, why, raw=text)


def nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


# --- RUNS checks --------------------------------------------------------------------------


def result_is(expected: Any) -> Check:
    def check(status: Mapping[str, Any]) -> None:
        assert status.get("result") == expected, status.get("result")
        assert not status.get("resultTruncated")

    return check


def result_truncated(status: Mapping[str, Any]) -> None:
    assert status.get("resultTruncated") is True, status.get("resultTruncated")
    assert len(json.dumps(status.get("result"))) <= 40 * 1024


def error_capped(status: Mapping[str, Any]) -> None:
    error = status.get("error") or {}
    assert error.get("type") == "ValueError", error
    assert 0 < len(error.get("message") or "") <= 4096
    for attempt in status.get("attempts") or []:
        assert len((attempt.get("error") or {}).get("message") or "") <= 1024


# --- the table ----------------------------------------------------------------------------

RESERVED_HEADER_CASES = [
    st(f"st-header-{slug}", REFUSED, "spec.task.headers",
       f"header {key!r} would replace Celery's own message header",
       task=headers(ADD, {key: value}))
    for slug, key, value in [
        ("task", "task", "billing.refund_all"),
        ("id", "id", FORGED_ID),
        ("ignore-result", "ignore_result", "True"),
        ("eta", "eta", "2000-01-01T00:00:00+00:00"),
        ("expires", "expires", "2000-01-01T00:00:00+00:00"),
        ("shadow", "shadow", "innocent.task"),
        ("parent-id", "parent_id", FORGED_ID),
        ("root-id", "root_id", FORGED_ID),
        ("timelimit", "timelimit", "[null, null]"),
        ("argsrepr", "argsrepr", "('harmless',)"),
        ("origin", "origin", "gen1@trusted-host"),
        ("lang", "lang", "rust"),
        ("retries", "retries", "99"),
        ("group", "group", FORGED_ID),
        ("stamped-headers", "stamped_headers", "[]"),
        ("own-uid", "celeryoperator_uid", FORGED_ID),
        ("own-prefix", "celeryoperator_anything", "x"),
    ]
]

SCHEDULED_CASES = [
    *RESERVED_HEADER_CASES,
    st("st-33-headers", REFUSED, "spec.task.headers", "more than 32 headers",
       task=headers(ADD, many_headers(33))),
    st("st-header-name-129", REFUSED, "spec.task.headers", "header name over 128",
       task=headers(ADD, {"h" * 129: "v"})),
    st("st-header-value-1025", REFUSED, "spec.task.headers", "header value over 1024",
       task=headers(ADD, {"big": "v" * 1025})),
    st("st-countdown-1e12", REFUSED, "spec.countdown", "overflows a datetime",
       countdown=1e12),
    st("st-countdown-negative", REFUSED, "spec.countdown", "below 0", countdown=-1),
    st("st-expires-1e15", REFUSED, "spec.expires", "overflows a datetime", expires=10**15),
    st("st-expires-2e63", REFUSED, "spec.expires", "past int64", expires=2**63 + 1),
    st("st-expires-overflowing-date", REFUSED, "spec.expires", "year 10000 in UTC",
       expires=OVERFLOWING_TIME),
    st("st-eta-overflowing", REFUSED, "spec.eta", "year 10000 in UTC", eta=OVERFLOWING_TIME),
    st("st-eta-underflowing", EITHER, "spec.eta", "year 0 in UTC", eta=UNDERFLOWING_TIME),
    st("st-eta-and-countdown", REFUSED, "spec.countdown", "conflicting fields",
       eta="2030-01-01T00:00:00Z", countdown=5),
    st("st-expired-before-due", REPORTED, "", "expires an hour before its eta",
       eta="2099-01-01T00:00:00Z", expires="2020-01-01T00:00:00Z"),
    st("st-timelimit-1e300", REFUSED, "spec.task.timeLimit", "no maximum",
       task={**ADD, "timeLimit": 1e300}),
    st("st-soft-over-hard", REFUSED, "spec.task.softTimeLimit", "conflicting fields",
       task={**ADD, "timeLimit": 5, "softTimeLimit": 10}),
    st("st-priority-256", REFUSED, "spec.task.priority", "over 255",
       task={**ADD, "priority": 256}),
    st("st-retry-limit-1e9", REFUSED, "spec.retry.limit", "over 100",
       retry={"limit": 10**9}),
    st("st-backoff-initial-1e300", REFUSED, "spec.retry.backoff.initialSeconds",
       "overflows a timedelta", retry={"limit": 1, "backoff": {"initialSeconds": 1e300,
                                                               "maxSeconds": 1e300}}),
    st("st-backoff-factor-1e300", REFUSED, "spec.retry.backoff.factor",
       "overflows a float after a few retries", retry={"limit": 3, "backoff": {"factor": 1e300}}),
    st("st-backoff-max-1e300", REFUSED, "spec.retry.backoff.maxSeconds",
       "overflows a timedelta", retry={"limit": 1, "backoff": {"maxSeconds": 1e300}}),
    st("st-ttl-2e62", REFUSED, "spec.ttlSecondsAfterFinished", "overflows a datetime",
       ttlSecondsAfterFinished=2**62),
    st("st-name-newline", REFUSED, "spec.task.name", "control character",
       task={"name": "demo.add\n"}),
    st("st-name-unicode", REFUSED, "spec.task.name", "not a Celery name",
       task={"name": "démo.add"}),
    st("st-name-201", REFUSED, "spec.task.name", "over 200 characters",
       task={"name": "a" * 201}),
    st("st-kwargs-101", REFUSED, "spec.task.kwargs", "over 100 entries",
       task={"name": "demo.echo_json", "kwargs": {f"k{i}": i for i in range(101)}}),
    # The API server's JSON decoder refuses these before any schema is consulted: its
    # message names the value, not the field (nothing of ours can change that).
    raw_case("st-args-infinity", EITHER, "cannot unmarshal number 1e400",
             "1e400 is Infinity to Python's json: not JSON when published",
             '{"name": "demo.add", "args": [1e400, 1]}'),
    raw_case("st-kwargs-nested-infinity", EITHER, "cannot unmarshal number -1e400",
             "-1e400 deep in kwargs", '{"name": "demo.echo_json", '
             '"kwargs": {"a": {"b": [0, -1e400]}}}'),
    st("st-exchange-mistyped", REPORTED, "",
       "no queue is bound to the exchange: the broker drops the message",
       task={**ADD, "exchange": "no-such-exchange", "routingKey": "celery"}),
    Case("st-weird-text", ST, {"task": {"name": "demo.echo_json", "kwargs": WEIRD_TEXT}}, RUNS,
         why="unicode and control characters round-trip into the result",
         phase="Succeeded", check=result_is(WEIRD_TEXT)),
    Case("st-giant-result", ST, {"task": {"name": "demo.big_result", "args": [BIG_RESULT]}},
         RUNS, why="a 2 MB result is cut to the status limit", phase="Succeeded",
         check=result_truncated),
    Case("st-giant-error", ST,
         {"task": {"name": "demo.fail", "args": ["e" * HUGE_ERROR]}}, RUNS,
         why="a 200 KB exception message is cut to the status limit", phase="Failed",
         check=error_capped),
    Case("st-" + "n" * 250, ST, {"task": ADD}, RUNS,
         why="the longest name an object may have (Event names are longer)",
         phase="Succeeded", check=result_is(3)),
    Case("st-huge-annotation", ST, {"task": ADD}, RUNS,
         why="200 KB of annotations, within the API server's 256 KB",
         metadata={"annotations": {"example.com/blob": "a" * 200_000}},
         phase="Succeeded", check=result_is(3)),
]

PERIODIC_CASES = [
    pt("pt-32-headers", REFUSED, "spec.task.headers",
       "its children would carry 33 (periodic_task_name is added)",
       task=headers(ADD, many_headers(32))),
    pt("pt-33-headers", REFUSED, "spec.task.headers", "more than 32 headers",
       task=headers(ADD, many_headers(33))),
    pt("pt-header-periodic-task-name", REFUSED, "spec.task.headers",
       "the operator sets it on every child", task=headers(ADD, {"periodic_task_name": "x"})),
    pt("pt-header-task", REFUSED, "spec.task.headers", "replaces the task name",
       task=headers(ADD, {"task": "billing.refund_all"})),
    pt("pt-header-id", REFUSED, "spec.task.headers", "every run under one forged id",
       task=headers(ADD, {"id": FORGED_ID})),
    pt("pt-tz-unknown", REPORTED, "", "no such zone",
       schedule={"cron": "* * * * *", "timeZone": "Mars/Olympus"}),
    pt("pt-tz-directory", REPORTED, "", "a directory of the zone database",
       schedule={"cron": "* * * * *", "timeZone": "America"}),
    pt("pt-tz-traversal", REFUSED, "spec.schedule.timeZone", "a path out of the zone database",
       schedule={"cron": "* * * * *", "timeZone": "../../../../etc/passwd"}),
    pt("pt-cron-feb-30", REPORTED, "", "never fires", schedule={"cron": "0 0 30 2 *"}),
    pt("pt-crontab-feb-31", REPORTED, "", "never fires",
       schedule={"crontab": {"minute": "0", "hour": "0", "dayOfMonth": "31",
                             "monthOfYear": "2"}}),
    pt("pt-cron-step-zero", EITHER, "spec.schedule.cron", "step 0",
       schedule={"cron": "*/0 * * * *"}),
    pt("pt-cron-letters", EITHER, "spec.schedule.cron", "five fields of nonsense",
       schedule={"cron": "a b c d e"}),
    pt("pt-crontab-minute-99", EITHER, "spec.schedule.crontab.minute", "out of range",
       schedule={"crontab": {"minute": "99"}}),
    pt("pt-interval-zero", REFUSED, "spec.schedule.interval", "0s", schedule={"interval": "0s"}),
    pt("pt-interval-8785h", REFUSED, "spec.schedule.interval", "over 366 days",
       schedule={"interval": "8785h"}),
    pt("pt-cron-and-interval", REFUSED, "spec.schedule", "conflicting fields",
       schedule={"cron": "* * * * *", "interval": "1m"}),
    pt("pt-start-overflowing", REFUSED, "spec.startTime", "year 10000 in UTC",
       startTime=OVERFLOWING_TIME),
    pt("pt-end-before-start", REFUSED, "spec.endTime", "conflicting fields",
       startTime="2030-01-01T00:00:00Z", endTime="2029-01-01T00:00:00Z"),
    pt("pt-max-runs-2e62", REFUSED, "spec.maxRuns", "no maximum", maxRuns=2**62),
    pt("pt-deadline-2e62", REFUSED, "spec.startingDeadlineSeconds", "overflows a timedelta",
       startingDeadlineSeconds=2**62),
    pt("pt-history-101", REFUSED, "spec.successfulRunsHistoryLimit", "over 100",
       successfulRunsHistoryLimit=101),
    pt("p" * 53, REFUSED, "metadata.name", "children <name>-<unix seconds> would not fit"),
    pt("pt-run-request-300", REPORTED, "",
       "status.lastHandledRunRequest holds at most 256 characters",
       metadata={"annotations": {RUN_REQUEST: "2026-01-01T00:00:00Z" + " " * 280}}),
    pt("pt-run-request-garbage", REPORTED, "", "not a time",
       metadata={"annotations": {RUN_REQUEST: "yesterday\u202e"}}),
    pt("pt-run-request-overflowing", REPORTED, "", "year 10000 in UTC",
       metadata={"annotations": {RUN_REQUEST: OVERFLOWING_TIME}}),
]

CASES = [*SCHEDULED_CASES, *PERIODIC_CASES]

# Deeper than Python's recursion limit (1000), well within the API server's JSON decoder
# (10000): anything in the operator that decodes or walks it recursively fails. It gets an
# operator of its own, so that if it brings the operator down it hides no other result.
DEEP = raw_case("st-args-nested-2000", EITHER, "spec.task.args",
                "nested deeper than Python's recursion limit",
                f'{{"name": "demo.add", "args": [{nested(2000)}, 1]}}')
