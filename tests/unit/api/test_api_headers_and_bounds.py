"""Reserved headers, spec maxima and date bounds: the model refuses what the CRD refuses."""

from __future__ import annotations

import re
from typing import Any

import pytest
from api_crd_schema import rules, schema_at
from celery import Celery
from celery.app.task import Context

from celery_operator.api import (
    InvalidSpec,
    bounds,
    format_time,
    headers,
    parse_periodic_task_spec,
    parse_scheduled_task_spec,
    parse_time,
)

TASK = {"name": "demo.add"}
LE_SECONDS = f": must be less than or equal to {bounds.SECONDS_MAX}"
LE_TIME_LIMIT = f": must be less than or equal to {bounds.TIME_LIMIT_SECONDS_MAX}"
YEARS = ": " + bounds.TIME_RANGE_MESSAGE
BAD_NAME = "Invalid value: header names must be 1-128 characters long"
SCHEDULE = {"cron": "* * * * *"}


def _errors(parse: Any, spec: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidSpec) as caught:
        parse(spec)
    return [str(e) for e in caught.value.errors]


def _rule_names(kind: str) -> set[str]:
    reserved = [r for r in rules(kind, "spec.task.headers") if "startsWith" in r]
    assert len(reserved) == 1
    listed = re.search(r"k in \[([^\]]*)\]", reserved[0])
    assert listed is not None
    assert f"k.startsWith('{headers.OPERATOR_HEADER_PREFIX}')" in reserved[0]
    return {name.strip().strip("'") for name in listed.group(1).split(",")}


@pytest.mark.parametrize("kind", ["ScheduledTask", "PeriodicTask"])
def test_the_crd_reserves_exactly_the_model_header_names(kind: str) -> None:
    assert _rule_names(kind) == set(headers.RESERVED_HEADERS)


def test_every_header_celery_writes_is_reserved() -> None:
    app = Celery(set_as_current=False)
    message = app.amqp.as_task_v2("an-id", "demo.add", stamped_headers=["s"], s="v")
    assert set(message.headers) == set(headers.CELERY_MESSAGE_HEADERS)


def test_every_request_field_the_worker_reads_from_headers_is_reserved() -> None:
    fields = {
        name
        for name, value in vars(Context).items()
        if not name.startswith("_") and not callable(value) and not isinstance(value, property)
    }
    assert fields <= set(headers.RESERVED_HEADERS)


def test_periodic_crd_keeps_room_for_the_run_header() -> None:
    spec_rules = rules("PeriodicTask", "spec")
    assert any(
        f"self.task.headers.size() <= {headers.PERIODIC_HEADERS_MAX}" in r for r in spec_rules
    )
    for name in headers.PERIODIC_RESERVED_HEADERS:
        assert any(f"!('{name}' in self.task.headers)" in r for r in spec_rules)
    assert (
        headers.PERIODIC_HEADERS_MAX + len(headers.PERIODIC_RESERVED_HEADERS)
        == (schema_at("ScheduledTask", "spec.task.headers")["maxProperties"])
    )


@pytest.mark.parametrize("name", ["task", "id", "ignore_result", "celeryoperator_uid", "utc"])
def test_reserved_headers_are_refused_with_their_path(name: str) -> None:
    spec = {"task": {**TASK, "headers": {name: "x", "x-team": "ok"}}}
    assert _errors(parse_scheduled_task_spec, spec) == [
        f'spec.task.headers[{name}]: Forbidden: header "{name}" is reserved: '
        f"{headers.RESERVED_HEADER_REASON}"
    ]


def test_periodic_task_reserves_its_run_header_and_one_slot() -> None:
    spec = {"schedule": SCHEDULE, "task": {**TASK, "headers": {"periodic_task_name": "x"}}}
    assert _errors(parse_periodic_task_spec, spec) == [
        'spec.task.headers[periodic_task_name]: Forbidden: header "periodic_task_name" is '
        f"reserved: {headers.PERIODIC_RESERVED_HEADER_REASON}"
    ]
    # A ScheduledTask may carry it (a PeriodicTask's runs do).
    plain = parse_scheduled_task_spec({"task": {**TASK, "headers": {"periodic_task_name": "x"}}})
    assert plain.task.headers == {"periodic_task_name": "x"}
    full = {f"h{i}": "v" for i in range(32)}
    assert parse_scheduled_task_spec({"task": {**TASK, "headers": full}}).task.headers == full
    assert _errors(
        parse_periodic_task_spec, {"schedule": SCHEDULE, "task": {**TASK, "headers": full}}
    ) == ["spec.task.headers: Too many: 32: must have at most 31 items"]


def test_header_counts_names_and_values_are_bounded() -> None:
    too_many = {f"h{i}": "v" for i in range(33)}
    assert _errors(parse_scheduled_task_spec, {"task": {**TASK, "headers": too_many}}) == [
        "spec.task.headers: Too many: 33: must have at most 32 items"
    ]
    long_name = "n" * 129
    spec = {"task": {**TASK, "headers": {long_name: "v", "": "v", "v": "x" * 1025}}}
    assert _errors(parse_scheduled_task_spec, spec) == [
        f"spec.task.headers[{long_name}]: {BAD_NAME}",
        f"spec.task.headers[]: {BAD_NAME}",
        "spec.task.headers[v]: Too long: may not be more than 1024",
    ]


# (kind, CRD path, key, model constant)
MAXIMA = [
    ("ScheduledTask", "spec.countdown", "maximum", bounds.SECONDS_MAX),
    ("ScheduledTask", "spec.ttlSecondsAfterFinished", "maximum", bounds.SECONDS_MAX),
    ("ScheduledTask", "spec.retry.backoff.initialSeconds", "maximum", bounds.SECONDS_MAX),
    ("ScheduledTask", "spec.retry.backoff.maxSeconds", "maximum", bounds.SECONDS_MAX),
    ("ScheduledTask", "spec.retry.backoff.factor", "maximum", bounds.BACKOFF_FACTOR_MAX),
    ("ScheduledTask", "spec.task.timeLimit", "maximum", bounds.TIME_LIMIT_SECONDS_MAX),
    ("ScheduledTask", "spec.task.softTimeLimit", "maximum", bounds.TIME_LIMIT_SECONDS_MAX),
    ("ScheduledTask", "spec.task.headers", "maxProperties", headers.HEADERS_MAX),
    ("ScheduledTask", "spec.task.headers{}", "maxLength", headers.HEADER_VALUE_MAX_LENGTH),
    ("PeriodicTask", "spec.startingDeadlineSeconds", "maximum", bounds.SECONDS_MAX),
    ("PeriodicTask", "spec.maxRuns", "maximum", bounds.MAX_RUNS_MAX),
    ("PeriodicTask", "spec.task.timeLimit", "maximum", bounds.TIME_LIMIT_SECONDS_MAX),
]


def _schema(kind: str, path: str) -> dict[str, Any]:
    if path.endswith("{}"):
        additional: dict[str, Any] = schema_at(kind, path[:-2])["additionalProperties"]
        return additional
    return schema_at(kind, path)


@pytest.mark.parametrize(("kind", "path", "key", "value"), MAXIMA)
def test_spec_maxima_match_the_crd(kind: str, path: str, key: str, value: int) -> None:
    assert _schema(kind, path)[key] == value


def test_expires_rule_carries_the_same_bounds() -> None:
    expires_rules = rules("ScheduledTask", "spec.expires")
    in_range = bounds.TIME_RANGE_RULE.replace("self", "timestamp(self)")
    assert any(f"self <= {bounds.SECONDS_MAX}" in r and in_range in r for r in expires_rules)


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("ScheduledTask", "spec.eta"),
        ("PeriodicTask", "spec.startTime"),
        ("PeriodicTask", "spec.endTime"),
    ],
)
def test_dates_carry_the_range_rule(kind: str, path: str) -> None:
    assert bounds.TIME_RANGE_RULE in rules(kind, path)
    assert format_time(bounds.TIME_MIN) == bounds.TIME_MIN_TEXT
    assert format_time(bounds.TIME_END) == bounds.TIME_END_TEXT


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ("1970-01-01T00:00:00Z", True),
        ("1970-01-01T00:00:00+01:00", False),
        ("1969-12-31T23:00:00-01:00", True),
        ("8999-12-31T23:59:59.999999Z", True),
        ("8999-12-31T23:59:59-00:01", False),
        ("9000-01-01T00:00:00+00:01", True),
    ],
)
def test_the_date_range_is_in_utc_as_in_the_crd(text: str, accepted: bool) -> None:
    spec = {"task": TASK, "eta": text}
    if accepted:
        assert parse_scheduled_task_spec(spec).eta == parse_time(text)
    else:
        assert _errors(parse_scheduled_task_spec, spec) == [
            f'spec.eta: Invalid value: "{text}"{YEARS}'
        ]


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        (
            {"countdown": 1e12},
            "spec.countdown: Invalid value: 1000000000000" + LE_SECONDS,
        ),
        (
            {"expires": 10**15},
            "spec.expires: Invalid value: 1000000000000000: must be at most 3153600000 seconds",
        ),
        (
            {"eta": "9999-12-31T23:00:00-05:00"},
            'spec.eta: Invalid value: "9999-12-31T23:00:00-05:00"' + YEARS,
        ),
        (
            {"eta": "0001-01-01T00:00:00+01:00"},
            'spec.eta: Invalid value: "0001-01-01T00:00:00+01:00"' + YEARS,
        ),
        (
            {"eta": "1969-12-31T23:59:59Z"},
            'spec.eta: Invalid value: "1969-12-31T23:59:59Z"' + YEARS,
        ),
        (
            {"expires": "9000-01-01T00:00:00Z"},
            'spec.expires: Invalid value: "9000-01-01T00:00:00Z"' + YEARS,
        ),
        (
            {"ttlSecondsAfterFinished": 3153600001},
            "spec.ttlSecondsAfterFinished: Invalid value: 3153600001" + LE_SECONDS,
        ),
        (
            {"retry": {"backoff": {"factor": 11}}},
            "spec.retry.backoff.factor: Invalid value: 11: must be less than or equal to 10",
        ),
        (
            {"retry": {"backoff": {"initialSeconds": 1e300, "maxSeconds": 1e300}}},
            "spec.retry.backoff.initialSeconds: Invalid value: 1e+300" + LE_SECONDS,
        ),
    ],
)
def test_scheduled_task_out_of_range_values_are_refused(spec: dict[str, Any], error: str) -> None:
    assert _errors(parse_scheduled_task_spec, {"task": TASK, **spec})[0] == error


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        (
            {"startingDeadlineSeconds": 10**15},
            "spec.startingDeadlineSeconds: Invalid value: 1000000000000000" + LE_SECONDS,
        ),
        (
            {"maxRuns": 10**10},
            "spec.maxRuns: Invalid value: 10000000000: must be less than or equal to 1000000000",
        ),
        (
            {"startTime": "9000-01-01T00:00:00Z"},
            'spec.startTime: Invalid value: "9000-01-01T00:00:00Z"' + YEARS,
        ),
        (
            {"endTime": "9999-01-01T00:00:00Z"},
            'spec.endTime: Invalid value: "9999-01-01T00:00:00Z"' + YEARS,
        ),
        (
            {"task": {**TASK, "timeLimit": 1e9}},
            "spec.task.timeLimit: Invalid value: 1000000000" + LE_TIME_LIMIT,
        ),
    ],
)
def test_periodic_task_out_of_range_values_are_refused(spec: dict[str, Any], error: str) -> None:
    assert (
        _errors(parse_periodic_task_spec, {"schedule": SCHEDULE, "task": TASK, **spec})[0] == error
    )


def test_the_largest_values_are_accepted() -> None:
    spec = parse_scheduled_task_spec(
        {
            "task": {**TASK, "timeLimit": bounds.TIME_LIMIT_SECONDS_MAX},
            "eta": "8999-12-31T23:59:59Z",
            "expires": bounds.SECONDS_MAX,
            "retry": {"backoff": {"factor": 10, "maxSeconds": bounds.SECONDS_MAX}},
            "ttlSecondsAfterFinished": bounds.SECONDS_MAX,
        }
    )
    assert spec.eta is not None and spec.eta.year == 8999
    assert spec.expires_seconds == bounds.SECONDS_MAX


@pytest.mark.parametrize(
    ("task", "error"),
    [
        ({"args": [1, 2, {1, 2}]}, "spec.task.args[2]: must be a JSON value, not set"),
        ({"args": [b"x"]}, "spec.task.args[0]: must be a JSON value, not bytes"),
        ({"args": [[float("nan")]]}, "spec.task.args[0][0]: must be a finite number"),
        ({"kwargs": {"a": {"b": float("inf")}}}, "spec.task.kwargs.a.b: must be a finite number"),
        (
            {"kwargs": {"a": {1: "x"}}},
            "spec.task.kwargs.a: Invalid value: key 1: object keys must be strings",
        ),
        (
            {"kwargs": {1: "x"}},
            "spec.task.kwargs: Invalid value: key 1: object keys must be strings",
        ),
        (
            {"args": [2**64]},
            "spec.task.args[0]: Invalid value: integer out of range: must fit in 64 bits",
        ),
        ({"args": "abc"}, "spec.task.args: must be an array, not string"),
        ({"args": {1, 2}}, "spec.task.args: must be an array, not set"),
    ],
)
def test_args_and_kwargs_must_be_plain_json(task: dict[str, Any], error: str) -> None:
    assert _errors(parse_scheduled_task_spec, {"task": {**TASK, **task}}) == [error]


def test_deep_nesting_is_refused_not_a_crash() -> None:
    deep: Any = "leaf"
    for _ in range(10_000):
        deep = [deep]
    (error,) = _errors(parse_scheduled_task_spec, {"task": {**TASK, "args": [deep]}})
    assert error.startswith("spec.task.args[0]" + "[0]" * bounds.JSON_DEPTH_MAX + ": Too deep")
    ok: Any = "leaf"
    for _ in range(bounds.JSON_DEPTH_MAX):
        ok = [ok]
    assert parse_scheduled_task_spec({"task": {**TASK, "args": [ok]}}).task.args == (ok,)


def test_tuples_are_json_arrays() -> None:
    spec = parse_scheduled_task_spec({"task": {**TASK, "args": ((1, 2),), "kwargs": {"a": (3,)}}})
    assert spec.task.args == ((1, 2),)
