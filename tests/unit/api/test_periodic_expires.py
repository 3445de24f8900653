"""spec.expires on PeriodicTask: ScheduledTask's forms and meaning, one definition, and
every run carries it (due at its fire time, so the seconds count from each fire time)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from api_crd_schema import rules, schema_at

from celery_operator.api import (
    InvalidSpec,
    parse_periodic_task_spec,
    parse_scheduled_task_spec,
    render_periodic_task_spec,
)
from celery_operator.api.expires import EXPIRES_MESSAGE, EXPIRES_SECONDS_MESSAGE
from celery_operator.scheduling.duetime import resolve_expiry
from celery_operator.scheduling.periodic_plan import ChildOrder, run_spec

TASK = {"name": "demo.add", "args": [1, 2]}
SCHEDULE = {"interval": "10m"}
FIRE = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


def periodic(**fields: Any) -> dict[str, Any]:
    return {"schedule": SCHEDULE, "task": TASK, **fields}


def scheduled(**fields: Any) -> dict[str, Any]:
    return {"task": TASK, **fields}


KINDS: list[tuple[Callable[..., dict[str, Any]], Callable[[Any], Any]]] = [
    (periodic, parse_periodic_task_spec),
    (scheduled, parse_scheduled_task_spec),
]


@pytest.mark.parametrize(("spec", "parse"), KINDS)
@pytest.mark.parametrize(
    ("value", "seconds", "at"),
    [
        (0, 0.0, None),
        (2, 2.0, None),
        (3153600000, 3153600000.0, None),
        ("2030-01-01T18:00:00+09:00", None, datetime(2030, 1, 1, 9, 0, tzinfo=UTC)),
    ],
)
def test_both_kinds_read_the_same_forms(
    spec: Callable[..., dict[str, Any]],
    parse: Callable[[Any], Any],
    value: Any,
    seconds: float | None,
    at: datetime | None,
) -> None:
    parsed = parse(spec(expires=value))
    assert (parsed.expires_seconds, parsed.expires_at) == (seconds, at)


@pytest.mark.parametrize(("spec", "parse"), KINDS)
@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, f"spec.expires: Invalid value: -1: {EXPIRES_MESSAGE}"),
        (3153600001, f"spec.expires: Invalid value: 3153600001: {EXPIRES_SECONDS_MESSAGE}"),
        ("1h", f'spec.expires: Invalid value: "1h": {EXPIRES_MESSAGE}'),
        ("3600", f'spec.expires: Invalid value: "3600": {EXPIRES_MESSAGE}'),
        (1.5, f"spec.expires: Invalid value: number: {EXPIRES_MESSAGE}"),
        (True, f"spec.expires: Invalid value: boolean: {EXPIRES_MESSAGE}"),
        (
            "9000-01-01T00:00:00Z",
            'spec.expires: Invalid value: "9000-01-01T00:00:00Z": must be a date-time at or '
            "after 1970-01-01T00:00:00Z and before 9000-01-01T00:00:00Z",
        ),
    ],
)
def test_both_kinds_refuse_the_same_values_with_the_same_message(
    spec: Callable[..., dict[str, Any]], parse: Callable[[Any], Any], value: Any, message: str
) -> None:
    with pytest.raises(InvalidSpec) as info:
        parse(spec(expires=value))
    assert [str(e) for e in info.value.errors] == [message]


@pytest.mark.parametrize("value", [0, 45, "2030-01-01T18:00:00.5+09:00"])
def test_rendering_gives_back_what_parses_to_the_same_spec(value: Any) -> None:
    parsed = parse_periodic_task_spec(periodic(expires=value))
    raw = render_periodic_task_spec(parsed)
    assert raw["expires"] == (value if isinstance(value, int) else "2030-01-01T09:00:00.5Z")
    assert parse_periodic_task_spec(raw) == parsed


def test_a_spec_without_expires_renders_none() -> None:
    raw = render_periodic_task_spec(parse_periodic_task_spec(periodic()))
    assert "expires" not in raw


def test_the_crds_share_one_expires_schema_with_the_models_message() -> None:
    assert schema_at("PeriodicTask", "spec.expires") == schema_at("ScheduledTask", "spec.expires")
    messages = [
        " ".join(r["message"].split())
        for r in schema_at("PeriodicTask", "spec.expires")["x-kubernetes-validations"]
    ]
    assert messages[0] == EXPIRES_MESSAGE
    assert any("self <= 3153600000" in r for r in rules("PeriodicTask", "spec.expires"))


# ---- every run carries it ------------------------------------------------------------------


def _run(raw: dict[str, Any], order: ChildOrder) -> dict[str, Any]:
    return run_spec(raw, parse_periodic_task_spec(raw), "nightly", order)


def test_a_run_carries_expires_seconds_and_is_due_at_its_fire_time() -> None:
    raw = periodic(expires=2, app={"kind": "CeleryApp", "name": "team"})
    child = _run(raw, ChildOrder("nightly-1893488400", FIRE))
    assert child == {
        "task": {**TASK, "headers": {"periodic_task_name": "nightly"}},
        "eta": "2030-01-01T09:00:00Z",
        "expires": 2,
        "app": {"kind": "CeleryApp", "name": "team"},
    }
    # The child is a valid ScheduledTask whose expiry is its fire time + 2 s.
    spec = parse_scheduled_task_spec(child)
    due = spec.eta
    assert due == FIRE
    assert resolve_expiry(
        expires_seconds=spec.expires_seconds, expires_at=spec.expires_at, due=due
    ) == FIRE + timedelta(seconds=2)


def test_each_run_counts_the_seconds_from_its_own_fire_time() -> None:
    raw = periodic(expires=30)
    expiries = []
    for fire in (FIRE, FIRE + timedelta(minutes=10)):
        spec = parse_scheduled_task_spec(_run(raw, ChildOrder("r", fire)))
        assert spec.eta is not None
        expiries.append(
            resolve_expiry(expires_seconds=spec.expires_seconds, expires_at=spec.expires_at,
                           due=spec.eta)
        )
    assert expiries == [FIRE + timedelta(seconds=30), FIRE + timedelta(minutes=10, seconds=30)]


def test_a_run_carries_an_absolute_expiry_unchanged() -> None:
    child = _run(periodic(expires="2030-01-01T18:00:00+09:00"), ChildOrder("r", FIRE))
    assert child["expires"] == "2030-01-01T09:00:00Z"


def test_a_run_now_run_is_due_at_once_and_still_expires() -> None:
    child = _run(periodic(expires=60), ChildOrder("nightly-manual-1", FIRE, manual=True))
    assert "eta" not in child
    assert child["expires"] == 60


def test_a_run_without_expires_has_none() -> None:
    child = _run(periodic(), ChildOrder("r", FIRE))
    assert set(child) == {"task", "eta"}
