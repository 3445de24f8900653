"""Hypothesis strategies for raw specs: near-valid shapes and wild ones.

Near-valid: every field of the CRD, each drawn from a mix of good values and bad ones of
the same field (wrong types, huge numbers, far dates, odd strings). Wild: anything
JSON-like or not (sets, bytes, NaN, tuples, integer keys) where an object is expected.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from celery_operator.api.bounds import (
    BACKOFF_FACTOR_MAX,
    MAX_RUNS_MAX,
    SECONDS_MAX,
    TIME_LIMIT_SECONDS_MAX,
)
from celery_operator.api.headers import RESERVED_HEADERS

# Values JSON (as the API server sends it) can hold, plus what it cannot.
_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_odd_scalars = (
    st.floats()  # NaN, ±inf
    | st.integers()  # beyond 64 bits
    | st.binary(max_size=4)
    | st.frozensets(st.integers(0, 3), max_size=3)
    | st.sampled_from([object(), 1j, Ellipsis])
)
json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=10,
)
junk = st.recursive(
    _json_scalars | _odd_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=4) | st.integers(0, 3), inner, max_size=3)
    ),
    max_leaves=8,
)

_big_numbers = st.sampled_from(
    [0, -1, 1, 0.5, 1e12, 10**15, 2**63 - 1, 2**63, 1e300, 3153600000, 3153600001, 31536000.5]
)
_seconds = st.integers(0, 10**6) | st.floats(0, 10**6) | _big_numbers
# Values the CRD accepts, extremes included.
_good_seconds = (
    st.integers(0, SECONDS_MAX) | st.floats(0, SECONDS_MAX) | st.sampled_from([0, 1, SECONDS_MAX])
)
_good_int_seconds = st.integers(0, SECONDS_MAX) | st.sampled_from([0, SECONDS_MAX])
_good_time_limits = st.floats(0.001, TIME_LIMIT_SECONDS_MAX) | st.just(TIME_LIMIT_SECONDS_MAX)
_good_times = st.sampled_from(
    [
        "1970-01-01T00:00:00Z",
        "1969-12-31T23:00:00-01:00",
        "8999-12-31T23:59:59.999999Z",
        "9000-01-01T23:58:00+23:59",
        "2030-01-01T18:00:00+09:00",
    ]
) | st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(8999, 12, 31), timezones=st.just(UTC)
).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
_times = st.sampled_from(
    [
        "2030-01-01T09:00:00Z",
        "2030-01-01T18:00:00+09:00",
        "1970-01-01T00:00:00Z",
        "1970-01-01T00:00:00+01:00",
        "1969-12-31T23:59:59Z",
        "0001-01-01T00:00:00+01:00",
        "0001-01-01T00:00:00-23:59",
        "8999-12-31T23:59:59Z",
        "8999-12-31T23:59:59-23:59",
        "9999-12-31T23:59:59-05:00",
        "9999-12-31T23:59:59+05:00",
        "2030-02-30T00:00:00Z",
        "2030-01-01T24:00:00Z",
        "2030-01-01t00:00:00.123456789z",
        "2030-01-01T00:00:00,5+23:59",
        "2030-01-01 09:00",
        "",
    ]
) | st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S") + "Z")
_odd_text = st.text(max_size=20) | st.sampled_from(["", " ", "\x00", "é" * 300, "🙂", "a" * 2000])


def field(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly `good`, sometimes junk, sometimes an odd string."""
    return st.one_of(good, good, good, junk, _odd_text)


def _same(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return good


_header_names = st.sampled_from(
    [*RESERVED_HEADERS[:5], "celeryoperator_uid", "periodic_task_name", "x-team", "", "n" * 129]
) | st.text(max_size=8)
_task_names = st.sampled_from(["demo.add", "a.b:c", "_x", "demo/add", "", "a" * 201]) | st.text(
    max_size=10
)


def _one_of_wild(value: Any, wild: bool) -> st.SearchStrategy[Any]:
    """`value` itself, or (wild) sometimes junk in its place."""
    return (
        st.one_of(st.just(value), st.just(value), st.just(value), junk) if wild else st.just(value)
    )


@st.composite
def tasks(draw: st.DrawFn, wild: bool = True) -> Any:
    pick = field if wild else _same
    if wild:
        names = _task_names
        headers = st.dictionaries(_header_names, st.text(max_size=5) | junk, max_size=5) | st.just(
            {f"h{i}": "v" for i in range(32)}
        )
        args = st.lists(json_values, max_size=4) | st.lists(junk, max_size=3)
        limits = _seconds
    else:
        names = st.sampled_from(["demo.add", "a.b:c", "_x-y.z"])
        headers = st.dictionaries(st.sampled_from(["x-team", "trace", "🙂"]), st.text(max_size=5))
        args = st.lists(json_values, max_size=4)
        limits = _good_time_limits
    optional = {
        "args": pick(args),
        "kwargs": pick(st.dictionaries(st.text(max_size=6), json_values, max_size=4)),
        "queue": pick(st.sampled_from(["celery", "high_priority"])),
        "routingKey": pick(st.just("rk")),
        "exchange": pick(st.just("ex")),
        "priority": pick(st.integers(-5, 300) if wild else st.integers(0, 255)),
        "headers": pick(headers),
        "timeLimit": pick(limits),
        "softTimeLimit": pick(limits),
    }
    task = draw(st.fixed_dictionaries({"name": pick(names)}, optional=optional))
    if not wild and "timeLimit" in task and "softTimeLimit" in task:
        task["softTimeLimit"] = task["timeLimit"] / 2
    return draw(_one_of_wild(task, wild))


@st.composite
def scheduled_specs(draw: st.DrawFn, wild: bool = True) -> Any:
    pick = field if wild else _same
    seconds = _seconds if wild else _good_seconds
    backoff = st.fixed_dictionaries(
        {},
        optional={
            "initialSeconds": pick(seconds),
            "factor": pick(
                st.floats(0, 20) | _big_numbers if wild else st.floats(1, BACKOFF_FACTOR_MAX)
            ),
            "maxSeconds": pick(seconds | st.just(SECONDS_MAX)),
        },
    )
    retry = st.fixed_dictionaries(
        {},
        optional={
            "limit": pick(st.integers(-1, 101) if wild else st.integers(0, 100)),
            "backoff": pick(backoff),
            "on": pick(
                st.lists(st.sampled_from(["Failed", "Lost", "Nope"]) | junk, max_size=3)
                if wild
                else st.lists(st.sampled_from(["Failed", "Lost"]), unique=True)
            ),
        },
    )
    optional = {
        "eta": pick(_times if wild else _good_times),
        "expires": pick(_seconds | _times if wild else _good_int_seconds | _good_times),
        "retry": pick(retry),
        "revoke": pick(
            st.fixed_dictionaries(
                {},
                optional={
                    "terminate": pick(st.booleans()),
                    "signal": pick(
                        st.sampled_from(["SIGTERM", "SIGKILL", "SIGSTOP"][: 3 if wild else 2])
                    ),
                },
            )
        ),
        "ttlSecondsAfterFinished": pick(
            st.integers(-1, 10**6) | _big_numbers if wild else _good_int_seconds
        ),
    }
    if wild or draw(st.booleans()):
        optional["countdown"] = pick(seconds)
        if not wild:
            del optional["eta"]
    spec = draw(st.fixed_dictionaries({"task": tasks(wild)}, optional=optional))
    backoff_drawn = {} if wild else spec.get("retry", {}).get("backoff", {})
    if "initialSeconds" in backoff_drawn:
        maximum = backoff_drawn.get("maxSeconds", SECONDS_MAX)
        low, high = sorted([backoff_drawn["initialSeconds"], maximum])
        backoff_drawn.update(initialSeconds=low, maxSeconds=high)
    return draw(_one_of_wild(spec, wild))


_crons = st.sampled_from(
    [
        "*/5 * * * *",
        "0 0 29 2 *",
        "0 0 29 2 1",
        "59 23 31 12 *",
        "@yearly",
        "@hourly",
        "* * * * *",
        "0 0 L * *",
        "0 0 * * 5#5",
        "30 2 * * *",
    ]
)
_bad_crons = st.sampled_from(
    ["0 0 31 2 *", "0 0 LW * */7", "0 0 1W * *", "61 * * * *", "* * * *"]
) | st.text(alphabet="0123456789*/,-LW# ", max_size=16)
_intervals = st.sampled_from(["1s", "90s", "1h30m", "1.5h", "8784h", "1000ms", "1.5s1ms"])
_bad_intervals = st.sampled_from(["8784h1ms", "0s", "999ms", "0.0000001s"]) | st.text(
    alphabet="0123456789.hms", max_size=10
)
_zones = st.sampled_from(
    [
        "UTC",
        "Asia/Seoul",
        "America/New_York",
        "Europe/Berlin",
        "Pacific/Kiritimati",
        "America/St_Johns",
        "Australia/Lord_Howe",
    ]
)
_bad_zones = st.sampled_from(["localtime", "Nowhere/City", "America", "../etc/passwd", ""])


@st.composite
def periodic_specs(draw: st.DrawFn, wild: bool = True) -> Any:
    pick = field if wild else _same
    fields = st.sampled_from(["*", "0", "*/15", "1-5", "mon-fri", "L", "99", "5#5"])
    good_fields = {
        "minute": st.sampled_from(["*", "0", "*/15", "0,30"]),
        "hour": st.sampled_from(["*", "7", "9-17"]),
        "monthOfYear": st.sampled_from(["*", "1", "jan-jun", "*/3"]),
        "dayOfWeek": st.sampled_from(["*", "1", "mon-fri", "5#5"]),
    }
    wild_fields = {key: pick(fields) for key in (*good_fields, "dayOfMonth")}
    crontab = st.fixed_dictionaries({}, optional=wild_fields if wild else good_fields)
    if wild:
        kinds = draw(st.sets(st.sampled_from(["cron", "crontab", "interval"]), max_size=3))
    else:
        kinds = {draw(st.sampled_from(["cron", "crontab", "interval"]))}
    schedule: dict[str, Any] = {}
    if "cron" in kinds:
        schedule["cron"] = draw(pick(_crons | _bad_crons if wild else _crons))
    if "crontab" in kinds:
        schedule["crontab"] = draw(pick(crontab))
    if "interval" in kinds:
        schedule["interval"] = draw(pick(_intervals | _bad_intervals if wild else _intervals))
    if draw(st.booleans()):
        schedule["timeZone"] = draw(pick(_zones | _bad_zones if wild else _zones))
    times = _times if wild else _good_times
    optional = {
        "concurrencyPolicy": pick(
            st.sampled_from(["Allow", "Forbid", "Replace", "Never"][: 4 if wild else 3])
        ),
        "startingDeadlineSeconds": pick(
            st.integers(-1, 10**6) | _big_numbers if wild else _good_int_seconds
        ),
        "suspend": pick(st.booleans()),
        "startTime": pick(times),
        "endTime": pick(times),
        "maxRuns": pick(
            st.integers(-1, 1000) | _big_numbers
            if wild
            else st.integers(1, 1000) | st.just(MAX_RUNS_MAX)
        ),
        "successfulRunsHistoryLimit": pick(st.integers(-1, 101) if wild else st.integers(0, 100)),
        "failedRunsHistoryLimit": pick(st.integers(-1, 101) if wild else st.integers(0, 100)),
    }
    spec = draw(
        st.fixed_dictionaries(
            {"schedule": _one_of_wild(schedule, wild), "task": tasks(wild)}, optional=optional
        )
    )
    if (
        not wild
        and "startTime" in spec
        and "endTime" in spec
        and spec["endTime"] <= spec["startTime"]
    ):
        del spec["endTime"]
    return draw(_one_of_wild(spec, wild))


def any_scheduled_specs() -> st.SearchStrategy[Any]:
    """Near-valid (mostly accepted) and wild (mostly refused) specs."""
    return scheduled_specs(wild=False) | scheduled_specs(wild=True)


def any_periodic_specs() -> st.SearchStrategy[Any]:
    return periodic_specs(wild=False) | periodic_specs(wild=True)
