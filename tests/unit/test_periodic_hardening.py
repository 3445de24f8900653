"""The PeriodicTask planner and its helpers under input nobody should write: run requests
that are long, malformed or out of range, headers that would not fit a run, look-alike
owner references, and the backoff that paces steps the API server refuses."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from celery_operator.scheduling.periodic_plan import (
    CHILD_HEADERS_MAX,
    CONFLICT_BACKOFF,
    ERROR_BACKOFF,
    HANDLED_REQUEST_MAX,
    PERIODIC_TASK_HEADER,
    REJECTED_BACKOFF,
    RUN_REQUEST_ANNOTATION,
    Backoff,
    child_headers,
    controller_uid,
    failed_step_conditions,
    run_request_token,
)

from .test_periodic_plan import AHEAD, condition, iso, m, new, reasons, s

# ---- run-requested-at ------------------------------------------------------------------------


def test_a_request_that_fits_is_recorded_as_written() -> None:
    assert run_request_token(iso(m(4))) == iso(m(4))
    assert run_request_token("x" * HANDLED_REQUEST_MAX) == "x" * HANDLED_REQUEST_MAX


def test_a_long_request_is_recorded_by_its_hash_within_the_schema_limit() -> None:
    long = "2026-01-01T00:04:00Z" + " " * 300
    token = run_request_token(long)
    assert token.startswith("sha256:") and len(token) == 7 + 64
    assert len(token) <= HANDLED_REQUEST_MAX
    # Two long values that differ only past the limit are two requests.
    assert run_request_token("a" * 300 + "1") != run_request_token("a" * 300 + "2")


def test_a_long_malformed_request_is_reported_once_and_status_stays_in_its_limit() -> None:
    p = new()
    p.step(m(1))
    value = "now please " * 1000
    p.annotations[RUN_REQUEST_ANNOTATION] = value
    step = p.settle(m(2))
    assert step.create == ()
    assert reasons(step) == [("Warning", "InvalidRunRequest")]
    message = step.notices[0].message
    assert "(11000 characters)" in message and len(message) < 300
    assert p.status["lastHandledRunRequest"] == run_request_token(value)
    # Asked again later (every wake-up): nothing more, no second Warning.
    p.assert_quiet(m(3))
    p.assert_quiet(m(9))


def test_a_long_well_formed_request_is_not_a_time_and_is_reported_once() -> None:
    p = new()
    p.step(m(1))
    p.annotations[RUN_REQUEST_ANNOTATION] = iso(m(4)) + "0" * 300
    step = p.settle(m(4))
    assert step.create == ()
    assert reasons(step) == [("Warning", "InvalidRunRequest")]
    assert len(p.status["lastHandledRunRequest"]) <= HANDLED_REQUEST_MAX


@pytest.mark.parametrize("value", [
    "9999-12-31T23:59:59-23:59",   # past year 9999 in UTC
    "0001-01-01T00:00:00+23:59",   # before year 1 in UTC
    "2026-02-30T00:00:00Z",        # no such day
    "2026-01-01T24:00:00Z",
    "\u65e5\u672c\u8a9e\U0001f600",
    "",
    " 2026-01-01T00:04:00Z",
])
def test_a_request_that_is_no_representable_time_is_one_warning(value: str) -> None:
    p = new()
    p.step(m(1))
    p.annotations[RUN_REQUEST_ANNOTATION] = value
    step = p.settle(m(4))
    assert step.create == ()
    if value:
        assert reasons(step) == [("Warning", "InvalidRunRequest")]
        assert p.status["lastHandledRunRequest"] == value
    else:  # an empty annotation is no request
        assert step.notices == ()


def test_the_run_requested_message_shows_the_time_not_the_raw_value() -> None:
    p = new()
    p.step(m(1))
    p.annotations[RUN_REQUEST_ANNOTATION] = "2026-01-01T09:04:00+09:00"
    step = p.settle(m(4))
    assert [o.scheduled_time for o in step.create] == [m(4)]
    assert step.notices[0].message == f"run requested at {iso(m(4))}: started one extra run"


# ---- conditions after a refused step -------------------------------------------------------


def test_a_refused_step_sets_ready_false_and_stalled_with_the_servers_message() -> None:
    p = new()
    p.settle(m(1))
    message = 'admission webhook "x" denied the request: no'
    conditions = failed_step_conditions(p.status, generation=1, now=m(2),
                                        reason="ChildRejected", message=message)
    assert conditions is not None
    p.status["conditions"] = conditions
    ready, stalled = condition(p, "Ready"), condition(p, "Stalled")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False", "ChildRejected", message)
    assert (stalled["status"], stalled["reason"]) == ("True", "ChildRejected")
    assert ready["lastTransitionTime"] == iso(m(2))
    # The same refusal again writes nothing; another message is written.
    assert failed_step_conditions(p.status, generation=1, now=m(3),
                                  reason="ChildRejected", message=message) is None
    other = failed_step_conditions(p.status, generation=1, now=m(3),
                                   reason="ChildRejected", message="quota exceeded")
    assert other is not None
    assert [c["message"] for c in other if c["type"] == "Ready"] == ["quota exceeded"]


def test_the_next_step_that_goes_through_makes_it_ready_again_and_then_is_quiet() -> None:
    p = new()
    p.settle(m(1))
    refused = failed_step_conditions(p.status, generation=1, now=m(2),
                                     reason="StatusRejected", message="too long")
    assert refused is not None
    p.status["conditions"] = refused
    writes = p.writes
    step = p.settle(m(3))  # nothing else changed: only the conditions are written
    assert step.status is not None and set(step.status) == {"conditions", "observedGeneration"}
    assert p.writes == writes + 1
    assert condition(p, "Ready")["status"] == "True"
    assert condition(p, "Ready")["reason"] == "Scheduled"
    assert condition(p, "Stalled")["status"] == "False"
    assert condition(p, "Ready")["lastTransitionTime"] == iso(m(3))


# ---- what a run is made of --------------------------------------------------------------------


def test_a_run_gets_the_parents_headers_and_its_name() -> None:
    assert child_headers({"tenant": "a"}, "report") == {"tenant": "a",
                                                          PERIODIC_TASK_HEADER: "report"}


def test_headers_that_fit_a_run_exactly_are_kept() -> None:
    headers = {f"h{i}": "v" for i in range(CHILD_HEADERS_MAX - 1)}
    assert len(child_headers(headers, "report")) == CHILD_HEADERS_MAX
    # An older object that set the header itself: replaced, not one more.
    own = {**{f"h{i}": "v" for i in range(CHILD_HEADERS_MAX - 1)}, PERIODIC_TASK_HEADER: "x"}
    assert child_headers(own, "report")[PERIODIC_TASK_HEADER] == "report"
    assert len(child_headers(own, "report")) == CHILD_HEADERS_MAX


def test_headers_that_would_not_fit_a_run_are_refused_naming_the_field() -> None:
    headers = {f"h{i}": "v" for i in range(CHILD_HEADERS_MAX)}
    with pytest.raises(ValueError, match=r"^spec\.task\.headers: at most 31 headers, not 32"):
        child_headers(headers, "report")


def _ref(**changes: Any) -> dict[str, Any]:
    ref = {"apiVersion": "celeryoperator.dev/v1alpha1", "kind": "PeriodicTask",
           "name": "report", "uid": "u-1", "controller": True}
    ref.update(changes)
    return {k: v for k, v in ref.items() if v is not None}


@pytest.mark.parametrize(("refs", "uid"), [
    ([_ref()], "u-1"),
    ([_ref(apiVersion="celeryoperator.dev/v2")], "u-1"),
    ([_ref(controller=False)], None),
    ([_ref(controller=None)], None),
    ([_ref(controller="true")], None),
    ([_ref(kind="ScheduledTask")], None),
    ([_ref(apiVersion="evil.example/v1alpha1")], None),
    ([_ref(uid=None)], None),
    ([_ref(uid="")], None),
    (["junk", _ref(controller=False, uid="u-0"), _ref()], "u-1"),
    ([], None),
    (None, None),
])
def test_a_run_is_recognised_by_its_controller_reference_only(
    refs: list[Any] | None, uid: str | None
) -> None:
    meta: dict[str, Any] = {"labels": {"celeryoperator.dev/periodic-task": "report"}}
    if refs is not None:
        meta["ownerReferences"] = refs
    assert controller_uid(meta) == uid


# ---- backoff -----------------------------------------------------------------------------------


def test_a_refused_step_backs_off_from_5_seconds_doubling_to_10_minutes() -> None:
    delays = [REJECTED_BACKOFF.delay(n).total_seconds() for n in range(1, 12)]
    assert delays == [5, 10, 20, 40, 80, 160, 320, 600, 600, 600, 600]
    assert REJECTED_BACKOFF.delay(10**9) == timedelta(minutes=10)


def test_other_errors_back_off_from_1_second_to_1_minute() -> None:
    delays = [ERROR_BACKOFF.delay(n).total_seconds() for n in range(1, 9)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]


def test_a_first_conflict_is_retried_at_once_and_later_ones_back_off() -> None:
    # The engine waits delay(conflicts - 1): 0 for the first conflict in a row.
    delays = [CONFLICT_BACKOFF.delay(n - 1).total_seconds() for n in range(1, 10)]
    assert delays == [0, 0.5, 1, 2, 4, 8, 16, 30, 30]


def test_no_failure_no_delay() -> None:
    assert Backoff(s(5), s(60)).delay(0) == timedelta(0)


# ---- a step carried out in part ------------------------------------------------------------


@pytest.mark.parametrize("policy", ["Forbid", "Replace", "Allow"])
def test_a_run_created_before_a_lost_status_write_is_recorded_not_repeated_or_overlapped(
    policy: str,
) -> None:
    p = new(concurrencyPolicy=policy)
    p.settle(m(1))
    before = dict(p.status)
    first = p.step(m(10) - AHEAD)
    assert [o.scheduled_time for o in first.create] == [m(10)]
    p.status = before  # the run was created, the status write after it was lost
    for now in (m(10) - AHEAD + s(1), m(10) + s(1)):
        again = p.plan(now)
        assert again.create == () and again.revoke == () and again.notices == ()
        assert again.status is not None
        assert (again.status["lastScheduleTime"], again.status["totalRuns"]) == (iso(m(10)), 1)
        assert "skippedRuns" not in again.status
    p.settle(m(10) + s(1))
    assert p.status["totalRuns"] == 1 and len(p.created_runs) == 1
    assert p.status["active"] == [{"name": f"report-{int(m(10).timestamp())}",
                                   "scheduledTime": iso(m(10))}]
    # Later fire times go on as usual.
    p.set_phase(f"report-{int(m(10).timestamp())}", "Succeeded")
    assert [o.scheduled_time for o in p.settle(m(20) - AHEAD).create] == [m(20)]


def test_an_unrecorded_run_counts_against_max_runs() -> None:
    p = new(maxRuns=1)
    p.settle(m(1))
    before = dict(p.status)
    p.step(m(10) - AHEAD)
    p.status = before  # refused, then retried with backoff much later
    step = p.settle(m(35))
    assert step.create == ()
    assert p.status["totalRuns"] == 1 and len(p.created_runs) == 1
    assert p.status["nextScheduleTimes"] == []


def test_a_later_retry_records_the_run_and_applies_the_missed_run_rule_after_it() -> None:
    p = new()
    p.settle(m(1))
    before = dict(p.status)
    p.step(m(10) - AHEAD)
    p.status = before
    step = p.settle(m(41))  # 10 is recorded; 20 and 30 were missed, 40 runs late
    assert [o.scheduled_time for o in step.create] == [m(40)]
    assert (p.status["totalRuns"], p.status["missedRuns"]) == (2, 2)
    assert p.status["lastScheduleTime"] == iso(m(40))


def test_manual_runs_are_not_taken_for_scheduled_ones() -> None:
    p = new()
    p.settle(m(1))
    p.add_child(m(30), "Succeeded", manual=True)
    step = p.settle(m(5))
    assert step.create == ()
    assert "lastScheduleTime" not in p.status


def test_an_unrecorded_run_is_not_deleted_before_it_is_recorded() -> None:
    p = new(maxRuns=1, successfulRunsHistoryLimit=0)
    p.settle(m(1))
    before = dict(p.status)
    p.step(m(10) - AHEAD)
    p.status = before  # the write was refused; meanwhile the run finished
    name = f"report-{int(m(10).timestamp())}"
    p.set_phase(name, "Succeeded")
    step = p.step(m(11))
    assert step.delete == () and step.create == ()
    assert p.status["totalRuns"] == 1
    # Recorded: now the history limit applies, and nothing runs again.
    step = p.settle(m(12))
    assert step.delete == (name,) and step.create == ()
    assert p.settle(m(30)).create == ()
