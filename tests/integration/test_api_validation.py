"""The CRDs against the real API server and the real kubectl.

Examples apply, `kubectl explain` teaches every field, printer columns read well, invalid
manifests are rejected with messages that name the field and the rule, defaults are
applied server-side, and a round trip through the API server and the model loses nothing.
No operator runs here: only the API server judges.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from celery_operator.api import (
    API_VERSION,
    GROUP,
    PERIODIC_PLURAL,
    READY,
    SCHEDULED_PLURAL,
    STALLED,
    VERSION,
    InvalidSpec,
    bounds,
    format_time,
    parse_periodic_task_spec,
    parse_scheduled_task_spec,
    parse_time,
    set_condition,
)
from celery_operator.api.defaults import PERIODIC_TASK_DEFAULTS, SCHEDULED_TASK_DEFAULTS
from celery_operator.api.headers import (
    HEADERS_MAX,
    PERIODIC_HEADERS_MAX,
    PERIODIC_RESERVED_HEADER_REASON,
    RESERVED_HEADER_REASON,
)
from celery_operator.api.status import (
    ATTEMPT_ERROR_MESSAGE_MAX_LENGTH,
    ERROR_MESSAGE_MAX_LENGTH,
    MAX_ATTEMPTS,
    RUN_PENDING,
    TRACEBACK_MAX_LENGTH,
    attempt_error,
    capped_result,
    task_error,
)
from celery_operator.devstack import KubeEnv

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))
CRDS = {
    "ScheduledTask": REPO_ROOT / "crds" / "celeryoperator.dev_scheduledtasks.yaml",
    "PeriodicTask": REPO_ROOT / "crds" / "celeryoperator.dev_periodictasks.yaml",
}
PLURALS = {"ScheduledTask": SCHEDULED_PLURAL, "PeriodicTask": PERIODIC_PLURAL}
PARSERS = {"ScheduledTask": parse_scheduled_task_spec, "PeriodicTask": parse_periodic_task_spec}

TASK: dict[str, Any] = {"name": "demo.add", "args": [1, 2]}


@pytest.fixture
def custom(kube: KubeEnv) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube.api_client())


def manifest(kind: str, spec: Any, name: str = "t", **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name, **metadata},
        "spec": spec,
    }


def apply(kube: KubeEnv, namespace: str, obj: dict[str, Any], *flags: str) -> Any:
    return kube.kubectl(
        "apply", "-n", namespace, *flags, "-f", "-", input=json.dumps(obj), check=False
    )


def create(
    api: client.CustomObjectsApi, namespace: str, obj: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    created: dict[str, Any] = api.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURALS[obj["kind"]], obj, **kwargs
    )
    return created


def crd_schema(kind: str, path: str) -> dict[str, Any]:
    schema: dict[str, Any] = yaml.safe_load(CRDS[kind].read_text())["spec"]["versions"][0][
        "schema"
    ]["openAPIV3Schema"]
    for part in path.split("."):
        schema = schema["items"] if part == "[]" else schema["properties"][part]
    return schema


def fill_defaults(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` with the model's copy of the schema defaults filled in."""
    table = SCHEDULED_TASK_DEFAULTS if kind == "ScheduledTask" else PERIODIC_TASK_DEFAULTS
    filled = copy.deepcopy(spec)
    for path, value in table.items():
        parts = path.split(".")[1:]
        parent: Any = filled
        for part in parts[:-1]:
            if not isinstance(parent, dict):
                break
            if part not in parent:
                # Only objects the schema defaults to {} spring into existence.
                if part not in ("retry", "backoff"):
                    parent = None
                    break
                parent[part] = {}
            parent = parent[part]
        if isinstance(parent, dict) and parts[-1] not in parent:
            parent[parts[-1]] = copy.deepcopy(value)
    return filled


# --- examples, explain, printer columns -------------------------------------------------


def test_every_example_applies_and_reads_back_as_written(
    kube: KubeEnv, namespace: str, custom: client.CustomObjectsApi
) -> None:
    assert len(EXAMPLES) >= 6
    args = [a for path in EXAMPLES for a in ("-f", str(path))]
    out = kube.kubectl("apply", "-n", namespace, *args).stdout
    for path in EXAMPLES:
        obj = yaml.safe_load(path.read_text())
        assert f"/{obj['metadata']['name']} created" in out
        stored = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURALS[obj["kind"]], obj["metadata"]["name"]
        )
        parse = PARSERS[obj["kind"]]
        assert parse(stored["spec"]) == parse(obj["spec"])
        assert stored["spec"] == fill_defaults(obj["kind"], obj["spec"])


@pytest.mark.parametrize(
    ("resource", "schema_path"),
    [
        ("scheduledtask.spec.task.queue", ("ScheduledTask", "spec.task.queue")),
        ("st.spec.task.name", ("ScheduledTask", "spec.task.name")),
        ("st.spec.countdown", ("ScheduledTask", "spec.countdown")),
        ("st.spec.expires", ("ScheduledTask", "spec.expires")),
        ("st.spec.retry.backoff.factor", ("ScheduledTask", "spec.retry.backoff.factor")),
        ("st.spec.revoke.signal", ("ScheduledTask", "spec.revoke.signal")),
        ("st.status.phase", ("ScheduledTask", "status.phase")),
        ("st.status.error.traceback", ("ScheduledTask", "status.error.traceback")),
        ("st.status.attempts.worker", ("ScheduledTask", "status.attempts.[].worker")),
        ("st.status.conditions.reason", ("ScheduledTask", "status.conditions.[].reason")),
        ("periodictask.spec.schedule.crontab.hour", ("PeriodicTask", "spec.schedule.crontab.hour")),
        ("pt.spec.schedule.interval", ("PeriodicTask", "spec.schedule.interval")),
        ("pt.spec.schedule.timeZone", ("PeriodicTask", "spec.schedule.timeZone")),
        ("pt.spec.concurrencyPolicy", ("PeriodicTask", "spec.concurrencyPolicy")),
        ("pt.spec.runObjects", ("PeriodicTask", "spec.runObjects")),
        ("pt.status.recentRuns.phase", ("PeriodicTask", "status.recentRuns.[].phase")),
    ],
)
def test_kubectl_explain_teaches_leaf_fields(
    kube: KubeEnv, resource: str, schema_path: tuple[str, str]
) -> None:
    out = kube.kubectl("explain", resource).stdout
    description = " ".join(crd_schema(*schema_path)["description"].split())
    assert description[:40] in " ".join(out.split())


def test_kubectl_get_reads_like_a_task_list(
    kube: KubeEnv, namespace: str, custom: client.CustomObjectsApi
) -> None:
    kube.kubectl("apply", "-n", namespace, "-f", str(REPO_ROOT / "examples"))
    custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        SCHEDULED_PLURAL,
        "add-high-priority",
        {
            "status": {
                "phase": "Failed",
                "dueTime": "2030-01-01T00:00:00Z",
                "taskId": "0b7f4c1e-task-id",
                "attempt": 2,
                "worker": "celery@worker-1",
                "error": {"type": "ValueError", "message": "boom"},
                "conditions": set_condition(
                    [], type=READY, status="False", reason="TaskFailed", message="boom",
                    generation=1, now=parse_time("2030-01-01T00:00:00Z"),
                ),
            }
        },
    )
    out = kube.kubectl("get", "-n", namespace, "st").stdout
    assert out.split("\n")[0].split() == ["NAME", "TASK", "QUEUE", "PHASE", "READY", "DUE", "AGE"]
    row = next(line for line in out.splitlines() if line.startswith("add-high-priority"))
    assert row.split()[:6] == [
        "add-high-priority",
        "demo.add",
        "high_priority",
        "Failed",
        "False",
        "2030-01-01T00:00:00Z",
    ]
    wide = kube.kubectl("get", "-n", namespace, "st", "-o", "wide").stdout
    assert wide.split("\n")[0].split()[7:] == ["TASK", "ID", "ATTEMPT", "WORKER", "ERROR"]
    row = next(line for line in wide.splitlines() if line.startswith("add-high-priority"))
    assert row.split()[7:] == ["0b7f4c1e-task-id", "2", "celery@worker-1", "ValueError"]

    custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        PERIODIC_PLURAL,
        "nightly-sleep",
        {
            "status": {
                "schedule": "15 2 * * *",
                "lastScheduleTime": "2020-01-01T01:15:00Z",
                "nextScheduleTimes": ["2030-01-02T01:15:00Z", "2030-01-03T01:15:00Z"],
                "active": [{"name": "nightly-sleep-1577841300"}],
            }
        },
    )
    out = kube.kubectl("get", "-n", namespace, "pt").stdout
    assert out.split("\n")[0].split() == [
        "NAME",
        "SCHEDULE",
        "TZ",
        "SUSPEND",
        "READY",
        "LAST",
        "NEXT",
        "AGE",
    ]
    row = next(line for line in out.splitlines() if line.startswith("nightly-sleep"))
    assert "15 2 * * *" in row
    assert "Europe/Berlin" in row
    assert "2030-01-02T01:15:00Z" in row
    assert "<invalid>" not in row
    # (tests/integration/test_get_columns.py has the operator fill SCHEDULE and READY.)
    wide = kube.kubectl("get", "-n", namespace, "pt", "-o", "wide").stdout
    assert wide.split("\n")[0].split()[8:] == ["TASK", "ACTIVE"]
    assert "nightly-sleep-1577841300" in wide
    both = kube.kubectl("get", "-n", namespace, "st,pt").stdout
    headers = [line.split() for line in both.splitlines() if line.startswith("NAME")]
    assert headers == [
        ["NAME", "TASK", "QUEUE", "PHASE", "READY", "DUE", "AGE"],
        ["NAME", "SCHEDULE", "TZ", "SUSPEND", "READY", "LAST", "NEXT", "AGE"],
    ]
    category = kube.kubectl("get", "-n", namespace, "celery", "-o", "name").stdout.split()
    assert "scheduledtask.celeryoperator.dev/add-now" in category
    assert "periodictask.celeryoperator.dev/weekly-report" in category


# --- invalid manifests -------------------------------------------------------------------

ST = "ScheduledTask"
PT = "PeriodicTask"
SCHEDULE: dict[str, Any] = {"interval": "10m"}


def st_spec(**fields: Any) -> dict[str, Any]:
    return {"task": TASK, **fields}


def st_task(**fields: Any) -> dict[str, Any]:
    return {"task": {**TASK, **fields}}


def pt_spec(**fields: Any) -> dict[str, Any]:
    return {"schedule": SCHEDULE, "task": TASK, **fields}


def schedule(**fields: Any) -> dict[str, Any]:
    return {"schedule": fields, "task": TASK}


NOT_RFC3339 = "in body must be of type date-time"
CRON_SHAPE = "must be a cron expression of 5 space-separated fields"
ONE_KIND = "must set exactly one of cron, crontab or interval"
INTERVAL_SHAPE = "must be a duration such as 90s, 10m, 1h30m or 1.5h"
INTERVAL_BOUNDS = "must be at least 1s and at most 8784h"
EXPIRES = "must be a number of seconds greater than or equal to 0, or an RFC 3339 date-time"
TASK_NAME = "must be a Celery task name"

# (id, kind, spec, name, expected fragments of kubectl's error)
INVALID: list[tuple[str, str, Any, str, list[str]]] = [
    (
        "eta-and-countdown",
        ST,
        st_spec(eta="2030-01-01T00:00:00Z", countdown=5),
        "t",
        ["spec.countdown: Forbidden: may not set both eta and countdown"],
    ),
    (
        "negative-countdown",
        ST,
        st_spec(countdown=-1),
        "t",
        ["spec.countdown: Invalid value: -1", "greater than or equal to 0"],
    ),
    ("eta-not-rfc3339", ST, st_spec(eta="2030-01-01 09:00"), "t", ["spec.eta", NOT_RFC3339]),
    ("eta-without-offset", ST, st_spec(eta="2030-01-01T09:00:00"), "t", ["spec.eta", NOT_RFC3339]),
    ("eta-february-30", ST, st_spec(eta="2030-02-30T09:00:00Z"), "t", ["spec.eta", NOT_RFC3339]),
    (
        "expires-negative",
        ST,
        st_spec(expires=-1),
        "t",
        ["spec.expires: Invalid value: -1", EXPIRES],
    ),
    (
        "expires-not-a-time",
        ST,
        st_spec(expires="1h"),
        "t",
        ['spec.expires: Invalid value: "1h"', EXPIRES],
    ),
    (
        "priority-300",
        ST,
        st_task(priority=300),
        "t",
        ["spec.task.priority: Invalid value: 300", "less than or equal to 255"],
    ),
    (
        "priority-negative",
        ST,
        st_task(priority=-1),
        "t",
        ["spec.task.priority", "greater than or equal to 0"],
    ),
    (
        "unknown-revoke-signal",
        ST,
        st_spec(revoke={"signal": "SIGSTOP"}),
        "t",
        ['spec.revoke.signal: Unsupported value: "SIGSTOP"', '"SIGTERM"'],
    ),
    (
        "oversized-args",
        ST,
        st_task(args=list(range(101))),
        "t",
        ["spec.task.args: Too many: 101: must have at most 100 items"],
    ),
    (
        "oversized-kwargs",
        ST,
        st_task(kwargs={f"k{i}": i for i in range(101)}),
        "t",
        ["spec.task.kwargs: Too many: 101: must have at most 100 items"],
    ),
    ("args-not-a-list", ST, st_task(args="1, 2"), "t", ["spec.task.args", "must be of type array"]),
    ("missing-task", ST, {"countdown": 5}, "t", ["spec.task: Required value"]),
    ("missing-task-name", ST, {"task": {"args": [1]}}, "t", ["spec.task.name: Required value"]),
    (
        "task-name-starts-with-digit",
        ST,
        st_task(name="1demo.add"),
        "t",
        ['spec.task.name: Invalid value: "1demo.add"', TASK_NAME],
    ),
    ("task-name-with-space", ST, st_task(name="demo add"), "t", ["spec.task.name", TASK_NAME]),
    ("task-name-double-dot", ST, st_task(name="demo..add"), "t", ["spec.task.name", TASK_NAME]),
    (
        "task-name-too-long",
        ST,
        st_task(name="a" * 201),
        "t",
        ["spec.task.name: Too long: may not be more than 200"],
    ),
    (
        "soft-time-limit-not-below-time-limit",
        ST,
        st_task(timeLimit=30, softTimeLimit=30),
        "t",
        ["spec.task.softTimeLimit: Invalid value", "softTimeLimit must be less than timeLimit"],
    ),
    ("time-limit-zero", ST, st_task(timeLimit=0), "t", ["spec.task.timeLimit", "greater than 0"]),
    ("empty-queue", ST, st_task(queue=""), "t", ["spec.task.queue", "at least 1 chars long"]),
    (
        "header-name-too-long",
        ST,
        st_task(headers={"h" * 129: "v"}),
        "t",
        ["spec.task.headers", "header names must be 1-128 characters long"],
    ),
    (
        "retry-limit-101",
        ST,
        st_spec(retry={"limit": 101}),
        "t",
        ["spec.retry.limit", "less than or equal to 100"],
    ),
    (
        "retry-factor-below-1",
        ST,
        st_spec(retry={"backoff": {"factor": 0.5}}),
        "t",
        ["spec.retry.backoff.factor", "greater than or equal to 1"],
    ),
    (
        "retry-max-below-initial",
        ST,
        st_spec(retry={"backoff": {"initialSeconds": 60, "maxSeconds": 30}}),
        "t",
        [
            "spec.retry.backoff.maxSeconds: Invalid value",
            "maxSeconds must be greater than or equal to initialSeconds",
        ],
    ),
    (
        "retry-on-unknown-outcome",
        ST,
        st_spec(retry={"on": ["Timeout"]}),
        "t",
        ['spec.retry.on[0]: Unsupported value: "Timeout"'],
    ),
    (
        "negative-ttl",
        ST,
        st_spec(ttlSecondsAfterFinished=-1),
        "t",
        ["spec.ttlSecondsAfterFinished", "greater than or equal to 0"],
    ),
    (
        "two-schedule-kinds",
        PT,
        schedule(cron="* * * * *", interval="1m"),
        "t",
        ["spec.schedule: Invalid value", ONE_KIND],
    ),
    (
        "cron-and-crontab",
        PT,
        schedule(cron="* * * * *", crontab={"hour": "7"}),
        "t",
        ["spec.schedule", ONE_KIND],
    ),
    ("no-schedule-kind", PT, schedule(timeZone="UTC"), "t", ["spec.schedule", ONE_KIND]),
    ("missing-schedule", PT, {"task": TASK}, "t", ["spec.schedule: Required value"]),
    (
        "cron-three-fields",
        PT,
        schedule(cron="* * *"),
        "t",
        ['spec.schedule.cron: Invalid value: "* * *"', CRON_SHAPE],
    ),
    ("cron-six-fields", PT, schedule(cron="0 * * * * *"), "t", ["spec.schedule.cron", CRON_SHAPE]),
    ("cron-unknown-macro", PT, schedule(cron="@reboot"), "t", ["spec.schedule.cron", CRON_SHAPE]),
    (
        "cron-bad-characters",
        PT,
        schedule(cron="0 7 * * 1;"),
        "t",
        ["spec.schedule.cron", CRON_SHAPE],
    ),
    (
        "interval-0s",
        PT,
        schedule(interval="0s"),
        "t",
        ['spec.schedule.interval: Invalid value: "0s"', INTERVAL_BOUNDS],
    ),
    (
        "interval-500ms",
        PT,
        schedule(interval="500ms"),
        "t",
        ["spec.schedule.interval", INTERVAL_BOUNDS],
    ),
    (
        "interval-too-long",
        PT,
        schedule(interval="8785h"),
        "t",
        ["spec.schedule.interval", INTERVAL_BOUNDS],
    ),
    (
        "interval-in-days",
        PT,
        schedule(interval="1d"),
        "t",
        ["spec.schedule.interval", INTERVAL_SHAPE],
    ),
    (
        "interval-without-unit",
        PT,
        schedule(interval="600"),
        "t",
        ["spec.schedule.interval", INTERVAL_SHAPE],
    ),
    (
        "crontab-field-with-space",
        PT,
        schedule(crontab={"hour": "7 8"}),
        "t",
        ["spec.schedule.crontab.hour", "must be a cron field"],
    ),
    (
        "time-zone-shape",
        PT,
        {"schedule": {**SCHEDULE, "timeZone": "Asia Seoul"}, "task": TASK},
        "t",
        ["spec.schedule.timeZone", "must be an IANA time zone name"],
    ),
    (
        "end-before-start",
        PT,
        pt_spec(startTime="2030-01-02T00:00:00Z", endTime="2030-01-01T00:00:00Z"),
        "t",
        ["spec.endTime: Invalid value", "endTime must be after startTime"],
    ),
    (
        "end-equals-start",
        PT,
        pt_spec(startTime="2030-01-01T09:00:00+09:00", endTime="2030-01-01T00:00:00Z"),
        "t",
        ["spec.endTime", "endTime must be after startTime"],
    ),
    (
        "start-time-not-rfc3339",
        PT,
        pt_spec(startTime="2030-01-01"),
        "t",
        ["spec.startTime", NOT_RFC3339],
    ),
    (
        "bad-concurrency-policy",
        PT,
        pt_spec(concurrencyPolicy="Sometimes"),
        "t",
        ['spec.concurrencyPolicy: Unsupported value: "Sometimes"', '"Allow", "Forbid", "Replace"'],
    ),
    (
        "bad-run-objects",
        PT,
        pt_spec(runObjects="Sometimes"),
        "t",
        ['spec.runObjects: Unsupported value: "Sometimes"', '"Always", "Never"'],
    ),
    (
        "negative-successful-history",
        PT,
        pt_spec(successfulRunsHistoryLimit=-1),
        "t",
        ["spec.successfulRunsHistoryLimit", "greater than or equal to 0"],
    ),
    (
        "negative-failed-history",
        PT,
        pt_spec(failedRunsHistoryLimit=-1),
        "t",
        ["spec.failedRunsHistoryLimit", "greater than or equal to 0"],
    ),
    ("max-runs-zero", PT, pt_spec(maxRuns=0), "t", ["spec.maxRuns", "greater than or equal to 1"]),
    (
        "negative-starting-deadline",
        PT,
        pt_spec(startingDeadlineSeconds=-1),
        "t",
        ["spec.startingDeadlineSeconds", "greater than or equal to 0"],
    ),
    (
        "periodic-bad-task-name",
        PT,
        {"schedule": SCHEDULE, "task": {"name": "demo/add"}},
        "t",
        ["spec.task.name", TASK_NAME],
    ),
    (
        "long-periodic-name",
        PT,
        pt_spec(),
        "n" * 53,
        ["metadata.name: Too long: may not be more than 52"],
    ),
    ("periodic-without-task", PT, {"schedule": SCHEDULE}, "t", ["spec.task: Required value"]),
]


# Hardening: reserved headers, maxima and bounded dates. The model must refuse each one
# too, naming the same field: (id, kind, spec, expected fragments, model error path).
YEARS = bounds.TIME_RANGE_MESSAGE
AT_MOST = "less than or equal to"
RESERVED = "is reserved: " + RESERVED_HEADER_REASON
MANY_HEADERS = {f"h{i}": "v" for i in range(HEADERS_MAX)}
LIMITS: list[tuple[str, str, Any, list[str], str]] = [
    (
        "header-task",
        ST,
        st_task(headers={"task": "billing.refund_all"}),
        [f'spec.task.headers: Forbidden: header "task" {RESERVED}'],
        "spec.task.headers[task]",
    ),
    (
        "header-id",
        ST,
        st_task(headers={"x-team": "a", "id": "chosen"}),
        [f'spec.task.headers: Forbidden: header "id" {RESERVED}'],
        "spec.task.headers[id]",
    ),
    (
        "header-ignore-result",
        ST,
        st_task(headers={"ignore_result": "true"}),
        [f'spec.task.headers: Forbidden: header "ignore_result" {RESERVED}'],
        "spec.task.headers[ignore_result]",
    ),
    (
        "header-operator-prefix",
        ST,
        st_task(headers={"celeryoperator_uid": "forged"}),
        [f'spec.task.headers: Forbidden: header "celeryoperator_uid" {RESERVED}'],
        "spec.task.headers[celeryoperator_uid]",
    ),
    (
        "periodic-header-shadow",
        PT,
        {"schedule": SCHEDULE, "task": {**TASK, "headers": {"shadow": "x"}}},
        [f'spec.task.headers: Forbidden: header "shadow" {RESERVED}'],
        "spec.task.headers[shadow]",
    ),
    (
        "periodic-header-run-name",
        PT,
        {"schedule": SCHEDULE, "task": {**TASK, "headers": {"periodic_task_name": "x"}}},
        [
            'spec.task.headers: Forbidden: header "periodic_task_name" is reserved: '
            + PERIODIC_RESERVED_HEADER_REASON
        ],
        "spec.task.headers[periodic_task_name]",
    ),
    (
        "periodic-32-headers",
        PT,
        {"schedule": SCHEDULE, "task": {**TASK, "headers": MANY_HEADERS}},
        ["spec.task.headers: Invalid value", f"must have at most {PERIODIC_HEADERS_MAX} headers"],
        "spec.task.headers",
    ),
    ("huge-countdown", ST, st_spec(countdown=1e12), ["spec.countdown", AT_MOST], "spec.countdown"),
    (
        "huge-expires",
        ST,
        st_spec(expires=10**15),
        ["spec.expires", f"must be at most {bounds.SECONDS_MAX} seconds"],
        "spec.expires",
    ),
    (
        "eta-year-9999-with-offset",
        ST,
        st_spec(eta="9999-12-31T23:00:00-05:00"),
        ["spec.eta", YEARS],
        "spec.eta",
    ),
    ("eta-before-1970", ST, st_spec(eta="1969-12-31T23:59:59Z"), ["spec.eta", YEARS], "spec.eta"),
    (
        "expires-year-9000",
        ST,
        st_spec(expires="9000-01-01T00:00:00Z"),
        ["spec.expires", YEARS],
        "spec.expires",
    ),
    (
        "huge-ttl",
        ST,
        st_spec(ttlSecondsAfterFinished=bounds.SECONDS_MAX + 1),
        ["spec.ttlSecondsAfterFinished", AT_MOST],
        "spec.ttlSecondsAfterFinished",
    ),
    (
        "huge-backoff-initial",
        ST,
        st_spec(retry={"backoff": {"initialSeconds": 1e300, "maxSeconds": 1e300}}),
        ["spec.retry.backoff.initialSeconds", "spec.retry.backoff.maxSeconds", AT_MOST],
        "spec.retry.backoff.initialSeconds",
    ),
    (
        "huge-backoff-factor",
        ST,
        st_spec(retry={"limit": 100, "backoff": {"factor": 1e300}}),
        ["spec.retry.backoff.factor", AT_MOST],
        "spec.retry.backoff.factor",
    ),
    (
        "huge-time-limit",
        ST,
        st_task(timeLimit=1e12),
        ["spec.task.timeLimit", AT_MOST],
        "spec.task.timeLimit",
    ),
    (
        "huge-soft-time-limit",
        PT,
        {"schedule": SCHEDULE, "task": {**TASK, "softTimeLimit": 1e12}},
        ["spec.task.softTimeLimit", AT_MOST],
        "spec.task.softTimeLimit",
    ),
    (
        "huge-starting-deadline",
        PT,
        pt_spec(startingDeadlineSeconds=10**15),
        ["spec.startingDeadlineSeconds", AT_MOST],
        "spec.startingDeadlineSeconds",
    ),
    (
        "huge-max-runs",
        PT,
        pt_spec(maxRuns=2**62),
        ["spec.maxRuns", AT_MOST],
        "spec.maxRuns",
    ),
    (
        "start-time-year-9000",
        PT,
        pt_spec(startTime="9000-01-01T00:00:00Z"),
        ["spec.startTime", YEARS],
        "spec.startTime",
    ),
    (
        "end-time-year-9999",
        PT,
        pt_spec(endTime="9999-12-31T23:59:59-23:59"),
        ["spec.endTime", YEARS],
        "spec.endTime",
    ),
]
INVALID += [(case_id, kind, spec, "t", expected) for case_id, kind, spec, expected, _ in LIMITS]


@pytest.mark.parametrize(
    ("kind", "spec", "path"),
    [(case[1], case[2], case[4]) for case in LIMITS],
    ids=[case[0] for case in LIMITS],
)
def test_the_model_refuses_what_the_api_server_refuses(kind: str, spec: Any, path: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        PARSERS[kind](spec)
    assert path in [error.path for error in info.value.errors]


# The largest values the API server accepts: the model accepts them too.
AT_THE_LIMITS: list[tuple[str, dict[str, Any]]] = [
    (
        ST,
        st_spec(
            task={**TASK, "headers": MANY_HEADERS, "timeLimit": bounds.TIME_LIMIT_SECONDS_MAX},
            eta="8999-12-31T23:59:59+23:59",
            expires=bounds.SECONDS_MAX,
            retry={
                "limit": 100,
                "backoff": {
                    "initialSeconds": bounds.SECONDS_MAX,
                    "factor": bounds.BACKOFF_FACTOR_MAX,
                    "maxSeconds": bounds.SECONDS_MAX,
                },
            },
            ttlSecondsAfterFinished=bounds.SECONDS_MAX,
        ),
    ),
    (ST, st_spec(countdown=bounds.SECONDS_MAX, expires="8999-12-31T23:59:59Z")),
    (ST, st_task(headers={"periodic_task_name": "a run may carry it", "x-id": "id"})),
    (
        PT,
        pt_spec(
            task={**TASK, "headers": dict(list(MANY_HEADERS.items())[:PERIODIC_HEADERS_MAX])},
            startingDeadlineSeconds=bounds.SECONDS_MAX,
            maxRuns=bounds.MAX_RUNS_MAX,
            startTime="1969-12-31T23:00:00-01:00",
            endTime="8999-12-31T23:59:59.999999Z",
        ),
    ),
]


@pytest.mark.parametrize(("kind", "spec"), AT_THE_LIMITS)
def test_values_at_the_limits_are_accepted_by_both(
    namespace: str, custom: client.CustomObjectsApi, kind: str, spec: dict[str, Any]
) -> None:
    stored = create(custom, namespace, manifest(kind, spec))
    assert PARSERS[kind](stored["spec"]) == PARSERS[kind](spec)


def test_there_are_at_least_30_invalid_cases() -> None:
    assert len(INVALID) >= 30
    assert len({case[0] for case in INVALID}) == len(INVALID)


@pytest.mark.parametrize(
    ("kind", "spec", "name", "expected"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_manifest_is_rejected(
    kube: KubeEnv, namespace: str, kind: str, spec: Any, name: str, expected: list[str]
) -> None:
    proc = apply(kube, namespace, manifest(kind, spec, name=name))
    assert proc.returncode != 0, f"accepted: {proc.stdout}"
    assert "is invalid" in proc.stderr
    for fragment in expected:
        assert fragment in proc.stderr, proc.stderr
    # Nothing half-created.
    listed = kube.kubectl("get", "-n", namespace, PLURALS[kind], "-o", "name").stdout
    assert listed.strip() == ""


# --- unknown fields ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "spec", "field"),
    [
        (ST, st_spec(bogus=1), "spec.bogus"),
        (ST, st_task(qeueu="high_priority"), "spec.task.qeueu"),
        (PT, pt_spec(schedule={"interval": "10m", "tz": "UTC"}), "spec.schedule.tz"),
    ],
)
def test_kubectl_apply_rejects_unknown_fields(
    kube: KubeEnv, namespace: str, kind: str, spec: dict[str, Any], field: str
) -> None:
    # kubectl asks for server-side field validation Strict by default.
    proc = apply(kube, namespace, manifest(kind, spec))
    assert proc.returncode != 0
    assert f'unknown field "{field}"' in proc.stderr


def test_unknown_fields_are_pruned_when_validation_is_ignored(
    namespace: str, custom: client.CustomObjectsApi
) -> None:
    spec = st_task(qeueu="high_priority")
    spec["bogus"] = {"x": 1}
    obj = create(custom, namespace, manifest(ST, spec), field_validation="Ignore")
    assert "bogus" not in obj["spec"]
    assert obj["spec"]["task"] == TASK
    with pytest.raises(ApiException) as info:
        create(custom, namespace, manifest(ST, spec, name="strict"), field_validation="Strict")
    assert info.value.status == 400
    message = json.loads(info.value.body)["message"]
    assert 'unknown field "spec.bogus"' in message
    assert 'unknown field "spec.task.qeueu"' in message
    # Without fieldValidation the server warns and prunes (the default is Warn).
    plain = create(custom, namespace, manifest(ST, spec, name="plain"))
    assert plain["spec"] == obj["spec"]


# --- what the schema cannot check: the model does ---------------------------------------


@pytest.mark.parametrize(
    ("schedule_fields", "path", "message"),
    [
        (
            {"interval": "10m", "timeZone": "Mars/Base"},
            "spec.schedule.timeZone",
            'unknown time zone "Mars/Base"',
        ),
        ({"cron": "61 * * * *"}, "spec.schedule.cron", "Bad minute"),
        ({"cron": "0 0 LW * */7"}, "spec.schedule.cron", "it never fires"),
        ({"crontab": {"hour": "25"}}, "spec.schedule.crontab.hour", "Bad hour"),
    ],
)
def test_schema_valid_but_unrunnable_schedules_are_caught_by_the_model(
    kube: KubeEnv,
    namespace: str,
    custom: client.CustomObjectsApi,
    schedule_fields: dict[str, Any],
    path: str,
    message: str,
) -> None:
    proc = apply(kube, namespace, manifest(PT, {"schedule": schedule_fields, "task": TASK}))
    assert proc.returncode == 0, proc.stderr
    stored = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PERIODIC_PLURAL, "t")
    with pytest.raises(InvalidSpec) as info:
        parse_periodic_task_spec(stored["spec"])
    assert [e.path for e in info.value.errors] == [path]
    assert message in str(info.value)


# --- defaults and round trips ------------------------------------------------------------


def test_scheduled_task_defaults_are_applied_server_side(
    namespace: str, custom: client.CustomObjectsApi
) -> None:
    obj = create(custom, namespace, manifest(ST, {"task": {"name": "demo.add"}, "revoke": {}}))
    assert obj["spec"] == {
        "task": {"name": "demo.add"},
        "retry": {
            "limit": 0,
            "backoff": {"initialSeconds": 10, "factor": 2, "maxSeconds": 600},
            "on": ["Failed", "Lost"],
        },
        "revoke": {"terminate": False, "signal": "SIGTERM"},
    }
    bare = create(custom, namespace, manifest(ST, {"task": {"name": "demo.add"}}, name="bare"))
    assert "revoke" not in bare["spec"]
    assert "ttlSecondsAfterFinished" not in bare["spec"]


def test_periodic_task_defaults_are_applied_server_side(
    namespace: str, custom: client.CustomObjectsApi
) -> None:
    obj = create(
        custom, namespace, manifest(PT, {"schedule": {"crontab": {"hour": "7"}}, "task": TASK})
    )
    assert obj["spec"] == {
        "schedule": {
            "crontab": {
                "minute": "*",
                "hour": "7",
                "dayOfMonth": "*",
                "monthOfYear": "*",
                "dayOfWeek": "*",
            },
            "timeZone": "UTC",
        },
        "task": TASK,
        "concurrencyPolicy": "Allow",
        "suspend": False,
        "successfulRunsHistoryLimit": 3,
        "failedRunsHistoryLimit": 1,
        "runObjects": "Always",
    }


ROUND_TRIP: list[tuple[str, dict[str, Any]]] = [
    (ST, {"task": {"name": "demo.add"}}),
    (
        ST,
        {
            "task": {
                "name": "reports.tasks.send",
                "args": [42, None, 1.5, "x", True, {"nested": [None, {"deep": None}]}, []],
                "kwargs": {"format": "pdf", "none": None, "obj": {"a": None}, "list": [1, None]},
                "queue": "high_priority",
                "routingKey": "reports",
                "exchange": "tasks",
                "priority": 255,
                "headers": {"x-team": "reports"},
                "timeLimit": 30.5,
                "softTimeLimit": 30,
            },
            "eta": "2030-01-01T18:00:00.123456+09:00",
            "expires": "2030-01-02T00:00:00Z",
            "retry": {"limit": 3, "backoff": {"factor": 1.5}, "on": ["Lost"]},
            "revoke": {"terminate": True},
            "ttlSecondsAfterFinished": 0,
        },
    ),
    (ST, {"task": TASK, "countdown": 0.25, "expires": 0, "retry": {"on": []}}),
    (PT, {"schedule": {"cron": "@weekly"}, "task": TASK}),
    (
        PT,
        {
            "schedule": {
                "crontab": {"minute": "30", "hour": "7", "dayOfWeek": "mon"},
                "timeZone": "Asia/Seoul",
            },
            "task": TASK,
        },
    ),
    (
        PT,
        {
            "schedule": {"interval": "1h30m"},
            "task": {"name": "demo.echo_json", "kwargs": {"a": None}},
            "concurrencyPolicy": "Replace",
            "startingDeadlineSeconds": 0,
            "suspend": True,
            "startTime": "2030-01-01T00:00:00Z",
            "endTime": "2030-01-01T00:00:01Z",
            "maxRuns": 1,
            "successfulRunsHistoryLimit": 0,
            "failedRunsHistoryLimit": 100,
        },
    ),
]


@pytest.mark.parametrize(("kind", "spec"), ROUND_TRIP)
def test_round_trip_through_the_api_server_loses_nothing(
    namespace: str, custom: client.CustomObjectsApi, kind: str, spec: dict[str, Any]
) -> None:
    created = create(custom, namespace, manifest(kind, spec))
    stored = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURALS[kind], created["metadata"]["name"]
    )
    parse = PARSERS[kind]
    # The API server adds exactly the schema defaults the model knows, and nothing else.
    assert stored["spec"] == fill_defaults(kind, spec)
    assert parse(stored["spec"]) == parse(fill_defaults(kind, spec)) == parse(spec)
    # JSON nulls inside args/kwargs survive (created, not client-side applied).
    assert stored["spec"]["task"].get("args") == spec["task"].get("args")
    assert stored["spec"]["task"].get("kwargs") == spec["task"].get("kwargs")


def test_kubectl_client_side_apply_drops_nulls_server_side_apply_keeps_them(
    kube: KubeEnv, namespace: str, custom: client.CustomObjectsApi
) -> None:
    # Pinned kubectl behaviour the docs warn about: in client-side apply a null means
    # "delete this field", so {"a": null} in kwargs disappears; server-side apply keeps it.
    spec = {"task": {"name": "demo.echo_json", "kwargs": {"a": None, "b": 1}}}
    assert apply(kube, namespace, manifest(ST, spec, name="csa")).returncode == 0
    assert apply(kube, namespace, manifest(ST, spec, name="ssa"), "--server-side").returncode == 0
    csa = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, SCHEDULED_PLURAL, "csa")
    ssa = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, SCHEDULED_PLURAL, "ssa")
    assert csa["spec"]["task"]["kwargs"] == {"b": 1}
    assert ssa["spec"]["task"]["kwargs"] == {"a": None, "b": 1}


# --- status written with the model's helpers fits the schema -----------------------------


def test_status_built_with_the_model_is_accepted(
    namespace: str, custom: client.CustomObjectsApi
) -> None:
    obj = create(custom, namespace, manifest(ST, {"task": TASK}))
    now = parse_time("2030-01-01T00:00:00Z")
    conditions = set_condition(
        [],
        type=READY,
        status="False",
        reason="TaskFailed",
        message="x" * 40_000,
        generation=obj["metadata"]["generation"],
        now=now,
    )
    conditions = set_condition(
        conditions,
        type=STALLED,
        status="False",
        reason="SpecValid",
        message="",
        generation=None,
        now=now,
    )
    result, truncated = capped_result({"rows": ["r" * 100] * 1000})
    status = {
        "phase": "Failed",
        "dueTime": format_time(now),
        "taskId": "id",
        "attempt": MAX_ATTEMPTS,
        "result": result,
        "resultTruncated": truncated,
        "error": task_error("E" * 1000, "m" * 100_000, "t" * 100_000),
        "attempts": [
            {"attempt": i + 1, "phase": "Failed", "error": attempt_error("E", "m" * 5000)}
            for i in range(MAX_ATTEMPTS)
        ],
        "brokerRunId": "a" * 40,
        "claim": {"holder": "celery-operator-0", "time": "2030-01-01T00:00:00.25Z"},
        "conditions": conditions,
        "observedGeneration": obj["metadata"]["generation"],
    }
    stored = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, SCHEDULED_PLURAL, "t", {"status": status}
    )["status"]
    assert len(stored["error"]["message"]) == ERROR_MESSAGE_MAX_LENGTH
    assert len(stored["error"]["traceback"]) == TRACEBACK_MAX_LENGTH
    assert len(stored["attempts"][0]["error"]["message"]) == ATTEMPT_ERROR_MESSAGE_MAX_LENGTH
    assert [c["type"] for c in stored["conditions"]] == [READY, STALLED]
    assert stored["claim"] == status["claim"]  # not pruned
    # A null result (a task returning None) can be stored (a JSON patch; in a merge patch
    # null means "remove").
    stored = custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        SCHEDULED_PLURAL,
        "t",
        [{"op": "replace", "path": "/status/result", "value": None}],
        _content_type="application/json-patch+json",
    )["status"]
    assert "result" in stored and stored["result"] is None


@pytest.mark.parametrize(
    ("status", "fragment"),
    [
        ({"phase": "Bogus"}, 'status.phase: Unsupported value: "Bogus"'),
        (
            {"error": {"message": "m" * (ERROR_MESSAGE_MAX_LENGTH + 1)}},
            "status.error.message: Too long",
        ),
        (
            {"attempts": [{"attempt": i + 1} for i in range(MAX_ATTEMPTS + 1)]},
            "status.attempts: Too many",
        ),
        ({"conditions": [{"type": "Ready", "status": "Yes"}]}, "status.conditions[0].status"),
    ],
)
def test_status_outside_the_schema_is_rejected(
    namespace: str, custom: client.CustomObjectsApi, status: dict[str, Any], fragment: str
) -> None:
    create(custom, namespace, manifest(ST, {"task": TASK}))
    with pytest.raises(ApiException) as info:
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, SCHEDULED_PLURAL, "t", {"status": status}
        )
    assert info.value.status == 422
    assert fragment in json.loads(info.value.body)["message"]


def test_periodic_status_fields_are_kept(namespace: str, custom: client.CustomObjectsApi) -> None:
    create(custom, namespace, manifest(PT, pt_spec()))
    status = {
        "lastScheduleTime": "2030-01-01T00:00:00Z",
        "nextScheduleTimes": [f"2030-01-01T00:{m:02d}:00Z" for m in range(10, 60, 10)],
        "lastSuccessfulTime": "2030-01-01T00:00:00Z",
        "totalRuns": 7,
        "missedRuns": 1,
        "skippedRuns": 2,
        "active": [{"name": "t-1893456000", "scheduledTime": "2030-01-01T00:00:00Z"}],
        "recentRuns": [
            {"name": "t-1893455400", "scheduledTime": "2029-12-31T23:50:00Z", "phase": "Failed"},
            {"name": "t-1893456000", "scheduledTime": "2030-01-01T00:00:00Z", "phase": RUN_PENDING},
        ],
        "lastHandledRunRequest": "2030-01-01T00:00:00Z",
        "observedGeneration": 1,
    }
    stored = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PERIODIC_PLURAL, "t", {"status": status}
    )["status"]
    assert stored == status
