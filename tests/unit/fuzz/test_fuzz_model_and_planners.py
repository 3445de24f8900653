"""Fuzzing the typed model and both planners with any spec-shaped input.

For any object shaped (or misshaped) like a ScheduledTask/PeriodicTask spec, the parser
returns a spec or raises InvalidSpec whose every error names a field, never anything
else; and every spec it returns, the planners handle at creation, at the due time and
far in the future without an exception, with a representable next wake-up and a status
patch within the CRD's limits.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from celery_operator.api import (
    InvalidSpec,
    PeriodicTaskSpec,
    ScheduledTaskSpec,
    parse_periodic_task_spec,
    parse_scheduled_task_spec,
)
from celery_operator.api.limits import fit_status
from celery_operator.scheduling import (
    Bounds,
    next_fire_times,
    resolve_due_time,
    resolve_expiry,
    retry_delay,
)
from celery_operator.scheduling.periodic_plan import (
    PeriodicConfig,
    PeriodicObserved,
    plan_periodic,
    schedule_of,
)
from celery_operator.scheduling.task_lifecycle import LifecycleConfig, Observed, plan_step

from ..merge_patch import merge
from .fuzz_shapes import any_periodic_specs, any_scheduled_specs, junk

FAR_FUTURE = datetime(8999, 12, 31, 23, 59, 59, tzinfo=UTC)
# creationTimestamp: written by the API server, so a real and recent time.
created_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
EXAMPLES = settings(max_examples=400)


def parse_or_refuse(parse: Any, raw: Any) -> Any:
    """The parser's spec, or its InvalidSpec after checking every error names a field."""
    try:
        parsed = parse(raw)
    except InvalidSpec as refused:
        event("refused")
        assert refused.errors
        for error in refused.errors:
            assert error.path == "spec" or error.path.startswith("spec."), error
            assert error.message, error
        return refused
    event("parsed")
    return parsed


def assert_bounded(wake_at: datetime | None, now: datetime) -> None:
    if wake_at is not None:
        assert wake_at.tzinfo is not None
        # Representable, with room for the engine's own arithmetic on it.
        assert wake_at + timedelta(days=3650) > now


@EXAMPLES
@given(any_scheduled_specs())
def test_any_scheduled_task_spec_parses_or_is_refused_with_field_paths(raw: Any) -> None:
    parse_or_refuse(parse_scheduled_task_spec, raw)


@EXAMPLES
@given(any_periodic_specs())
def test_any_periodic_task_spec_parses_or_is_refused_with_field_paths(raw: Any) -> None:
    parse_or_refuse(parse_periodic_task_spec, raw)


@given(junk)
def test_junk_is_refused_with_a_field_path(raw: Any) -> None:
    parse_or_refuse(parse_scheduled_task_spec, raw)
    parse_or_refuse(parse_periodic_task_spec, raw)
    parse_or_refuse(parse_scheduled_task_spec, {"task": raw})
    parse_or_refuse(parse_periodic_task_spec, {"schedule": raw, "task": {"name": "a"}})


def plan_task(spec: ScheduledTaskSpec | InvalidSpec, created: datetime, now: datetime) -> None:
    """Two steps of the task engine from an empty status, as the API server stores them."""
    status: dict[str, Any] = {}
    for _ in range(2):
        step = plan_step(
            Observed(uid="u-1", generation=1, created=created, spec=spec, status=status, now=now),
            LifecycleConfig(),
        )
        assert_bounded(step.wake_at, now)
        if step.status is None:
            return
        assert fit_status("scheduledtasks", step.status) == step.status
        status = merge(status, step.status)


@EXAMPLES
@given(any_scheduled_specs(), created_times)
def test_the_task_planner_handles_every_parsed_spec(raw: Any, created: datetime) -> None:
    spec = parse_or_refuse(parse_scheduled_task_spec, raw)
    nows = [created, FAR_FUTURE]
    if isinstance(spec, ScheduledTaskSpec):
        due = resolve_due_time(eta=spec.eta, countdown=spec.countdown, created=created)
        expiry = resolve_expiry(
            expires_seconds=spec.expires_seconds, expires_at=spec.expires_at, due=due
        )
        retry = spec.retry
        for attempt in (2, retry.limit + 1):
            if attempt >= 2:
                delay = retry_delay(
                    attempt,
                    initial_seconds=retry.initial_seconds,
                    factor=retry.factor,
                    max_seconds=retry.max_seconds,
                )
                assert due + delay > due - timedelta(seconds=1)
        nows += [due, due + timedelta(microseconds=1)]
        if expiry is not None:
            nows.append(expiry + timedelta(seconds=1))
    for now in nows:
        plan_task(spec, created, max(now, created))


def plan_periodic_task(
    spec: PeriodicTaskSpec | InvalidSpec, created: datetime, now: datetime
) -> None:
    """Two steps of the periodic engine from an empty status and no children."""
    status: dict[str, Any] = {}
    for later in (timedelta(0), timedelta(days=1)):
        step = plan_periodic(
            PeriodicObserved(
                name="fuzz",
                generation=1,
                created=created,
                spec=spec,
                status=status,
                annotations={},
                children=(),
                now=now + later,
            ),
            PeriodicConfig(),
        )
        assert_bounded(step.wake_at, now)
        if step.status is not None:
            assert fit_status("periodictasks", step.status) == step.status
            status = merge(status, step.status)


@EXAMPLES
@given(any_periodic_specs(), created_times)
def test_the_periodic_planner_handles_every_parsed_spec(raw: Any, created: datetime) -> None:
    spec = parse_or_refuse(parse_periodic_task_spec, raw)
    nows = [created, FAR_FUTURE - timedelta(days=2)]
    if isinstance(spec, PeriodicTaskSpec):
        bounds = Bounds(start_time=spec.start_time, end_time=spec.end_time, max_runs=spec.max_runs)
        schedule = schedule_of(spec, created)
        nows += [t for t in (spec.start_time, spec.end_time) if t is not None]
        for now in nows:
            fires = next_fire_times(schedule, after=now, count=10, bounds=bounds)
            assert fires == sorted(fires)
            assert all(fire > now for fire in fires)
    for now in nows:
        plan_periodic_task(spec, created, now)
