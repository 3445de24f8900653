"""The ScheduledTask state machine (`plan_step`), driven with explicit times.

A small simulator plays the API server: it keeps `status`, applies each step's merge
patch and counts the writes, so the tests read like the life of one object. After every
interesting step the same observation is planned again: a restart (or a watch echo of
our own write) over an up-to-date status must write, publish and revoke nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from celery_operator.api import (
    InvalidSpec,
    RevokeRequest,
    ScheduledTaskSpec,
    get_condition,
    parse_scheduled_task_spec,
)
from celery_operator.api.celery_state import TaskState
from celery_operator.scheduling.task_lifecycle import (
    LifecycleConfig,
    Observed,
    Publish,
    Step,
    plan_step,
    task_id_for,
)

from .merge_patch import merge

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
UID = "3f0c9a52-7d4e-4d8f-9a55-1b2c3d4e5f60"
CFG = LifecycleConfig()
TASK = {"name": "reports.send", "args": [1]}


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def iso(value: datetime) -> str:
    """How the planner writes times it acts on (fraction kept when there is one)."""
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


@dataclass
class Task:
    """One ScheduledTask as the API server holds it."""

    raw_spec: dict[str, Any]
    created: datetime = T0
    generation: int = 1
    status: dict[str, Any] = field(default_factory=dict)
    writes: int = 0
    cfg: LifecycleConfig = CFG

    def spec(self) -> ScheduledTaskSpec | InvalidSpec:
        try:
            return parse_scheduled_task_spec(self.raw_spec)
        except InvalidSpec as exc:
            return exc

    def observe(self, now: datetime, **kw: Any) -> Observed:
        return Observed(
            uid=UID, generation=self.generation, created=self.created, spec=self.spec(),
            status=self.status, now=now, **kw,
        )

    def plan(self, now: datetime, **kw: Any) -> Step:
        """Plan without applying."""
        return plan_step(self.observe(now, **kw), self.cfg)

    def step(self, now: datetime, **kw: Any) -> Step:
        """Plan and apply the status write, as the controller does."""
        step = self.plan(now, **kw)
        if step.status is not None:
            self.status = merge(self.status, step.status)
            self.writes += 1
        return step

    def edit(self, **changes: Any) -> None:
        """A user edits the spec: the generation moves."""
        for key, value in changes.items():
            if value is None:
                self.raw_spec.pop(key, None)
            else:
                self.raw_spec[key] = value
        self.generation += 1

    @property
    def phase(self) -> str | None:
        return self.status.get("phase")

    @property
    def task_id(self) -> str:
        return str(self.status["taskId"])

    def backend(self, state: str, **kw: Any) -> TaskState:
        return TaskState(task_id=self.task_id, status=state, **kw)

    def assert_quiet(self, now: datetime, **kw: Any) -> Step:
        """Planning again over the written status changes nothing."""
        step = self.plan(now, **kw)
        assert step.status is None, step.status
        assert step.publish is None
        assert step.revoke is None
        assert not step.delete
        assert step.notices == ()
        return step


def new(**spec: Any) -> Task:
    return Task(raw_spec={"task": dict(TASK), **spec})


def dispatch(task: Task, now: datetime, *, run_id: str = "run-1") -> Publish:
    """Claim and confirm (the publish happened in this process)."""
    claim = task.step(now, broker_run_id=run_id)
    assert task.phase == "Dispatching" and claim.publish is not None
    task.step(now, broker_run_id=run_id, published_here=claim.publish.task_id)
    assert task.phase == "Queued"
    return claim.publish


def conditions(task: Task) -> dict[str, str]:
    return {c["type"]: c["status"] for c in task.status["conditions"]}


def reasons(step: Step) -> list[tuple[str, str]]:
    return [(n.type, n.reason) for n in step.notices]


FAILURE = {"exc_type": "ValueError", "exc_message": ["bad input"], "exc_module": "builtins"}


# ---- task ids ----------------------------------------------------------------------------


def test_task_id_is_a_stable_uuid_per_object_and_attempt() -> None:
    first = task_id_for(UID, 1)
    assert uuid.UUID(first).version == 5
    assert task_id_for(UID, 1) == first  # same on every replica, after every restart
    assert task_id_for(UID, 2) != first
    assert task_id_for("another-uid", 1) != first


# ---- before dispatch ---------------------------------------------------------------------


def test_first_sight_of_a_future_task_schedules_it() -> None:
    task = new(countdown=600)
    step = task.step(T0 + s(1))
    due = T0 + s(600)
    assert task.phase == "Scheduled"
    assert task.status["dueTime"] == "2026-03-01T12:10:00Z"
    assert task.status["observedGeneration"] == 1
    assert "expiresAt" not in task.status
    assert step.publish is None
    assert step.wake_at == due - CFG.dispatch_lead
    assert reasons(step) == [("Normal", "Scheduled")]
    assert conditions(task) == {"Ready": "True", "Stalled": "False"}
    # A restart five minutes later does not restart the countdown and writes nothing.
    assert task.assert_quiet(T0 + s(300)).wake_at == due - CFG.dispatch_lead


def test_countdown_counts_from_creation_even_when_first_seen_late() -> None:
    task = new(countdown=600)
    task.step(T0 + s(500))  # the operator was down when the object was created
    assert task.status["dueTime"] == "2026-03-01T12:10:00Z"
    # First seen after the due time: dispatched at once, eta = the (past) due time.
    late = new(countdown=60)
    step = late.step(T0 + s(3600))
    assert late.phase == "Dispatching"
    assert step.publish is not None and step.publish.eta == T0 + s(60)


def test_claim_happens_dispatch_lead_before_due() -> None:
    due = T0 + s(600)
    task = new(eta=iso(due))
    task.step(T0)
    step = task.step(due - CFG.dispatch_lead - timedelta(microseconds=1))
    assert step.publish is None and task.phase == "Scheduled"

    claim_at = due - CFG.dispatch_lead
    step = task.step(claim_at)
    assert task.phase == "Dispatching"
    assert step.publish == Publish(task_id=task_id_for(UID, 1), attempt=1, eta=due, expires=None)
    assert task.status["taskId"] == task_id_for(UID, 1)
    assert task.status["attempt"] == 1
    assert task.status["claim"] == {"holder": CFG.holder, "time": iso(claim_at)}
    assert step.wake_at == claim_at + CFG.claim_lease


def test_dispatch_lead_and_holder_are_configurable() -> None:
    cfg = LifecycleConfig(dispatch_lead=s(10), holder="operator-b")
    task = Task(raw_spec={"task": TASK, "countdown": 60}, cfg=cfg)
    assert task.step(T0).wake_at == T0 + s(50)
    step = task.step(T0 + s(50))
    assert step.publish is not None and step.publish.eta == T0 + s(60)
    assert task.status["claim"]["holder"] == "operator-b"


def test_fractional_eta_survives_the_round_trip() -> None:
    due = T0 + timedelta(seconds=30, milliseconds=250)
    task = new(eta="2026-03-01T12:00:30.25Z")
    task.step(T0)
    assert task.status["dueTime"] == "2026-03-01T12:00:30.25Z"
    task.assert_quiet(T0 + s(1))
    step = task.step(due - CFG.dispatch_lead)
    assert step.publish is not None and step.publish.eta == due


def test_editing_eta_before_dispatch_moves_the_due_time() -> None:
    task = new(eta=iso(T0 + s(3600)))
    task.step(T0)
    task.edit(eta=iso(T0 + s(60)))
    step = task.step(T0 + s(1))
    assert task.phase == "Scheduled"
    assert task.status["dueTime"] == iso(T0 + s(60))
    assert task.status["observedGeneration"] == 2
    assert step.wake_at == T0 + s(58)
    assert step.notices == ()  # still Scheduled: no second Scheduled event
    task.assert_quiet(T0 + s(2))


def test_editing_eta_after_dispatch_changes_nothing() -> None:
    task = new()
    dispatch(task, T0)
    before = dict(task.status)
    task.edit(eta=iso(T0 + s(3600)))
    step = task.plan(T0 + s(1), broker_run_id="run-1")
    assert step.publish is None
    assert step.status is None or "dueTime" not in step.status
    assert task.status == before


# ---- claim → publish → confirm -----------------------------------------------------------


def test_immediate_task_that_succeeds_quickly_costs_three_writes() -> None:
    task = new()
    claim = task.step(T0 + s(0.1), broker_run_id="run-1")
    assert task.phase == "Dispatching"
    assert claim.publish is not None and claim.publish.eta == T0  # due at creation
    task.step(T0 + s(0.2), broker_run_id="run-1", published_here=claim.publish.task_id)
    assert task.phase == "Queued"
    # The worker starts it and finishes within the coalesce window: no Started write.
    started = T0 + s(0.3)
    step = task.step(T0 + s(0.5), backend=task.backend("STARTED", worker="w1"),
                     started_hint=started, broker_run_id="run-1")
    assert step.status is None and step.wake_at == started + CFG.started_coalesce
    done = T0 + s(0.9)
    task.step(T0 + s(1.0), backend=task.backend("SUCCESS", result=5, date_done=done,
                                                 worker="w1"),
              started_hint=started, broker_run_id="run-1")
    assert task.phase == "Succeeded"
    assert task.writes == 3


def test_queued_time_is_the_publish_time_even_when_the_confirm_is_folded_late() -> None:
    # A burst's confirms are held back and folded into the final write, seconds after
    # the publish: queuedTime still says when the message was sent.
    task = new()
    claim = task.step(T0, broker_run_id="run-1")
    assert claim.publish is not None
    published = T0 + s(0.2)
    task.step(T0 + s(20), broker_run_id="run-1", published_here=claim.publish.task_id,
              published_at=published,
              backend=task.backend("SUCCESS", result=5, date_done=T0 + s(1), worker="w1"),
              started_hint=T0 + s(0.5))
    assert task.phase == "Succeeded"
    assert task.status["queuedTime"] == iso(published)
    assert task.status["attempts"][-1]["queuedTime"] == iso(published)
    assert task.status["startTime"] == iso(T0 + s(0.5))


def test_confirm_only_when_this_process_published_the_claimed_id() -> None:
    task = new()
    claim = task.step(T0)
    assert claim.publish is not None
    # Not published here (another replica claimed, or we restarted): wait out the lease.
    for published in (None, task_id_for(UID, 2)):
        step = task.assert_quiet(T0 + s(1), published_here=published)
        assert step.wake_at == T0 + CFG.claim_lease
    step = task.step(T0 + s(1), published_here=claim.publish.task_id, broker_run_id="run-7")
    assert task.phase == "Queued"
    assert task.status["queuedTime"] == iso(T0 + s(1))
    assert task.status["brokerRunId"] == "run-7"
    assert task.status["taskId"] == claim.publish.task_id
    assert reasons(step) == [("Normal", "Dispatched")]
    assert step.track
    task.assert_quiet(T0 + s(2), published_here=claim.publish.task_id, broker_run_id="run-7")


def test_unconfirmed_claim_is_taken_over_after_the_lease_with_the_same_id() -> None:
    due = T0 + s(60)
    task = Task(raw_spec={"task": TASK, "eta": iso(due), "expires": 600},
                cfg=LifecycleConfig(holder="operator-a"))
    task.step(T0)
    claimed_at = due - CFG.dispatch_lead
    task.step(claimed_at)
    task.cfg = LifecycleConfig(holder="operator-b")  # the claimer died; another replica
    task.assert_quiet(claimed_at + CFG.claim_lease - timedelta(microseconds=1))
    now = claimed_at + CFG.claim_lease
    step = task.step(now)
    assert task.phase == "Dispatching"
    assert task.status["claim"] == {"holder": "operator-b", "time": iso(now)}
    assert step.publish == Publish(
        task_id=task_id_for(UID, 1), attempt=1, eta=due, expires=due + s(600)
    )
    assert step.wake_at == now + CFG.claim_lease
    # A possible second delivery is said out loud, not only in a condition.
    assert reasons(step) == [("Warning", "TookOver")]
    # The taker confirms its own publish.
    task.step(now, published_here=task_id_for(UID, 1), broker_run_id="run-1")
    assert task.phase == "Queued"


def test_an_unconfirmed_claim_is_not_taken_over_before_the_backend_was_read() -> None:
    # The claimer published, the worker ran the task at its eta, and the claimer died
    # before confirming. A restarted operator must look in the backend before it
    # republishes: the same id published again would run again.
    due = T0 + s(10)
    task = Task(raw_spec={"task": TASK, "eta": iso(due)}, cfg=LifecycleConfig(holder="a"))
    task.step(T0)
    claim = task.step(due - CFG.dispatch_lead)
    assert claim.publish is not None
    task.cfg = LifecycleConfig(holder="b")
    later = due + CFG.claim_lease + s(5)
    step = task.plan(later, backend_read=False)
    assert step.publish is None and step.status is None
    assert step.track and step.wake_at is not None and step.wake_at <= later + s(1)
    # Read: it ran. Adopted, not republished.
    done = task.backend("SUCCESS", result=5, date_done=due + s(0.1), worker="w1")
    step = task.step(later + s(1), backend=done, backend_read=True)
    assert step.publish is None and task.phase == "Succeeded"


def test_an_unconfirmed_claim_with_no_record_after_the_read_is_taken_over() -> None:
    due = T0 + s(10)
    task = Task(raw_spec={"task": TASK, "eta": iso(due)}, cfg=LifecycleConfig(holder="a"))
    task.step(T0)
    task.step(due - CFG.dispatch_lead)
    task.cfg = LifecycleConfig(holder="b")
    step = task.step(due + CFG.claim_lease, backend=None, backend_read=True)
    assert step.publish is not None and step.publish.task_id == task_id_for(UID, 1)


# ---- sent marks: the confirm kept in the result store ------------------------------------


def _marked_publish() -> tuple[Task, dict[str, Any]]:
    """An immediate task claimed at T0 and published here at T0 + 0.1 s, marked sent:
    the task and what this process observes about its publish."""
    task = new()
    claim = task.step(T0, broker_run_id="run-1")
    assert claim.publish is not None
    return task, {"published_here": claim.publish.task_id, "published_run_id": "run-1",
                  "published_at": T0 + s(0.1), "confirm_after": T0 + s(2.1),
                  "marks_kept": True}


def test_a_marked_publish_writes_queued_only_if_the_task_still_waits() -> None:
    task, mine = _marked_publish()
    step = task.assert_quiet(T0 + s(0.2), **mine)
    assert step.wake_at == T0 + s(2.1) and step.track
    step = task.step(T0 + s(2.1), **mine)
    assert task.phase == "Queued" and task.status["brokerRunId"] == "run-1"
    assert task.status["queuedTime"] == iso(T0 + s(0.1))
    assert task.writes == 2


def test_a_marked_publish_that_ends_quickly_costs_two_writes() -> None:
    task, mine = _marked_publish()
    task.assert_quiet(T0 + s(0.2), **mine)
    done = task.backend("SUCCESS", result=3, date_done=T0 + s(0.3), worker="w1")
    task.step(T0 + s(1.2), backend=done, started_hint=T0 + s(0.25), **mine)
    assert task.phase == "Succeeded"
    assert task.status["queuedTime"] == iso(T0 + s(0.1))
    assert task.writes == 2  # claim, final
    task.assert_quiet(T0 + s(3), backend=done, **mine)


def _claim_of_a_dead_claimer() -> tuple[Task, datetime]:
    """Claimed by "a", which died; "b" plans it: (the task, when the claim expired)."""
    due = T0 + s(10)
    task = Task(raw_spec={"task": TASK, "eta": iso(due)}, cfg=LifecycleConfig(holder="a"))
    task.step(T0)
    claimed_at = due - CFG.dispatch_lead
    task.step(claimed_at)
    task.cfg = LifecycleConfig(holder="b")
    return task, claimed_at + CFG.claim_lease


def test_a_taker_reads_the_sent_mark_before_it_publishes_again() -> None:
    task, expired = _claim_of_a_dead_claimer()
    # Marks not read yet, or read before the claim expired: wait, publish nothing.
    for read_at in (None, expired - s(0.5)):
        step = task.plan(expired, backend_read=True, marks_kept=True,
                         sent_marks_read_at=read_at, broker_run_id="run-1")
        assert step.publish is None and step.status is None and step.track
        assert step.wake_at == expired + s(1)
    # Found, sent to this broker lifetime: confirmed, not published again.
    step = task.step(expired + s(1), backend_read=True, marks_kept=True,
                     sent_marks_read_at=expired + s(0.5), sent_mark_run_id="run-1",
                     broker_run_id="run-1")
    assert step.publish is None and task.phase == "Queued"
    assert task.status["brokerRunId"] == "run-1"
    assert "sent mark" in task.status["conditions"][0]["message"]
    assert reasons(step) == [("Normal", "Dispatched")]


def test_a_taker_publishes_again_when_no_mark_was_found() -> None:
    task, expired = _claim_of_a_dead_claimer()
    step = task.step(expired + s(1), backend_read=True, marks_kept=True,
                     sent_marks_read_at=expired + s(0.5), sent_mark_run_id=None,
                     broker_run_id="run-2")
    assert step.publish is not None and step.publish.task_id == task_id_for(UID, 1)
    assert reasons(step) == [("Warning", "TookOver")]


def test_broker_restart_republishes_a_task_no_worker_took() -> None:
    task = new(countdown=30)
    task.step(T0)
    dispatch(task, T0 + s(28), run_id="run-1")
    task.assert_quiet(T0 + s(29), broker_run_id="run-1")
    task.assert_quiet(T0 + s(29), broker_run_id=None)  # broker unreachable: no judgement
    step = task.step(T0 + s(40), broker_run_id="run-2")
    assert step.publish == Publish(
        task_id=task_id_for(UID, 1), attempt=1, eta=T0 + s(30), expires=None
    )
    assert task.status["brokerRunId"] == "run-2"
    assert task.phase == "Queued"
    assert reasons(step) == [("Warning", "Republished")]
    task.assert_quiet(T0 + s(41), broker_run_id="run-2")


def test_broker_restart_does_not_republish_a_running_task() -> None:
    task = new()
    dispatch(task, T0, run_id="run-1")
    step = task.plan(T0 + s(5), broker_run_id="run-2",
                     backend=task.backend("STARTED", worker="w1"), started_hint=T0 + s(1))
    assert step.publish is None


# ---- running -----------------------------------------------------------------------------


def test_started_is_written_once_the_coalesce_window_passes() -> None:
    task = new()
    dispatch(task, T0)
    started = T0 + s(1)
    running = {"backend": task.backend("STARTED", worker="w1@host"), "started_hint": started}
    step = task.step(started + s(0.5), **running)
    assert step.status is None and step.wake_at == started + s(1) and step.track
    task.step(started + s(1), **running)
    assert task.phase == "Started"
    assert task.status["startTime"] == iso(started)
    assert task.status["worker"] == "w1@host"
    assert conditions(task) == {"Ready": "True", "Stalled": "False"}
    task.assert_quiet(started + s(30), **running)


def test_started_event_without_backend_record_counts_as_started() -> None:
    task = new()
    dispatch(task, T0)
    task.step(T0 + s(5), started_hint=T0 + s(1))
    assert task.phase == "Started"
    assert task.status["startTime"] == iso(T0 + s(1))


def test_task_started_before_the_confirm_is_written() -> None:
    task = new()
    claim = task.step(T0, broker_run_id="run-1")
    assert claim.publish is not None
    task.step(T0 + s(2), broker_run_id="run-1", published_here=claim.publish.task_id,
              backend=task.backend("STARTED", worker="w1"), started_hint=T0 + s(0.5))
    assert task.phase == "Started"
    assert task.status["queuedTime"] == iso(T0 + s(2))
    assert task.status["brokerRunId"] == "run-1"


def test_task_finished_before_the_confirm_is_written() -> None:
    task = new()
    claim = task.step(T0)
    assert claim.publish is not None
    task.step(T0 + s(1), published_here=claim.publish.task_id,
              backend=task.backend("SUCCESS", result="ok", date_done=T0 + s(0.5)))
    assert task.phase == "Succeeded"
    assert task.status["queuedTime"] == iso(T0 + s(1))
    assert task.writes == 2


def test_celery_retry_shows_retrying_with_the_count() -> None:
    task = new()
    dispatch(task, T0)
    started = T0 + s(1)
    task.step(T0 + s(3), backend=task.backend("STARTED", worker="w1"), started_hint=started)
    assert task.phase == "Started"

    retry1 = task.backend("RETRY", worker="w1", retries=1, result=FAILURE)
    step = task.step(T0 + s(4), backend=retry1, started_hint=started)
    assert task.phase == "Retrying"
    assert task.status["retries"] == 1
    assert "nextAttemptTime" not in task.status  # Celery's retry, not a new attempt
    assert task.status["taskId"] == task_id_for(UID, 1)
    assert step.track
    task.assert_quiet(T0 + s(5), backend=retry1, started_hint=started)

    retry2 = task.backend("RETRY", worker="w1", retries=2, result=FAILURE)
    task.step(T0 + s(20), backend=retry2, started_hint=started)
    assert task.status["retries"] == 2
    task.assert_quiet(T0 + s(21), backend=retry2, started_hint=started)

    # Retrying is not "lost", even when the worker is gone.
    task.assert_quiet(T0 + s(22), backend=retry2, started_hint=started, worker_alive=False)

    task.step(T0 + s(40), backend=task.backend("SUCCESS", result=1, retries=2,
                                                date_done=T0 + s(39), worker="w1"),
              started_hint=started)
    assert task.phase == "Succeeded"
    assert task.status["retries"] == 2


def test_celery_retry_without_a_count_in_the_backend_is_written_once() -> None:
    # Celery stores `retries` in the backend only with result_extended=True.
    task = new()
    dispatch(task, T0)
    retry = task.backend("RETRY", result=FAILURE)
    task.step(T0 + s(4), backend=retry, started_hint=T0 + s(1))
    assert task.phase == "Retrying" and task.status["retries"] == 1
    # The same record read again (watch echo of our own write, tracker poll, restart).
    task.assert_quiet(T0 + s(5), backend=retry, started_hint=T0 + s(1))


# ---- finishing ---------------------------------------------------------------------------


def test_success_records_result_times_and_the_attempt() -> None:
    task = new()
    dispatch(task, T0)
    started, done = T0 + s(1), T0 + s(7.5)
    step = task.step(T0 + s(8), backend=task.backend("SUCCESS", result={"rows": 3},
                                                      date_done=done, worker="w1"),
                     started_hint=started)
    st = task.status
    assert st["phase"] == "Succeeded"
    assert st["result"] == {"rows": 3}
    assert "resultTruncated" not in st and "error" not in st
    assert st["completionTime"] == iso(done)
    assert st["startTime"] == iso(started)
    assert st["worker"] == "w1"
    assert st["attempts"] == [{
        "attempt": 1, "taskId": task_id_for(UID, 1), "phase": "Succeeded",
        "queuedTime": iso(T0), "startTime": iso(started), "completionTime": iso(done),
        "worker": "w1",
    }]
    assert conditions(task) == {"Ready": "True", "Stalled": "False"}
    assert reasons(step) == [("Normal", "Succeeded")]
    assert step.finished_outcome == "Succeeded"
    assert not step.track and step.wake_at is None
    task.assert_quiet(T0 + s(9))  # finished: the backend is not needed any more


def test_result_up_to_32_kib_is_kept_whole() -> None:
    task = new()
    dispatch(task, T0)
    result = "x" * 20_000  # over the 8 KiB status default, under the operator's 32 KiB
    task.step(T0 + s(2), backend=task.backend("SUCCESS", result=result, date_done=T0 + s(1)))
    assert task.status["result"] == result
    assert "resultTruncated" not in task.status


def test_result_over_32_kib_is_truncated_json_text() -> None:
    task = new()
    dispatch(task, T0)
    result = {"blob": "é" * 40_000}
    step = task.step(T0 + s(2), backend=task.backend("SUCCESS", result=result,
                                                      date_done=T0 + s(1)))
    stored = task.status["result"]
    assert task.phase == "Succeeded"
    assert task.status["resultTruncated"] is True
    assert isinstance(stored, str) and stored.startswith('{"blob":"éé')
    assert 32 * 1024 - 4 < len(stored.encode()) <= 32 * 1024
    assert "truncated" in step.notices[0].message


def test_failure_without_a_retry_policy_fails_the_task() -> None:
    task = new()
    dispatch(task, T0)
    done = T0 + s(3)
    step = task.step(T0 + s(4), backend=task.backend(
        "FAILURE", result=FAILURE, traceback="Traceback (most recent call last):\n...",
        date_done=done, worker="w1"))
    st = task.status
    assert st["phase"] == "Failed"
    assert st["error"]["type"] == "ValueError"
    assert st["error"]["message"] == "bad input"
    assert st["error"]["traceback"].startswith("Traceback")
    assert st["completionTime"] == iso(done)
    assert st["attempts"][-1]["phase"] == "Failed"
    assert st["attempts"][-1]["error"] == {"type": "ValueError", "message": "bad input"}
    assert "nextAttemptTime" not in st
    assert conditions(task) == {"Ready": "False", "Stalled": "True"}
    assert get_condition(st["conditions"], "Stalled")["reason"] == "TaskFailed"  # type: ignore[index]
    assert reasons(step) == [("Warning", "TaskFailed")]
    assert step.finished_outcome == "Failed"
    assert step.publish is None and step.wake_at is None
    task.assert_quiet(T0 + s(60))


def test_failures_retry_by_policy_with_backoff_then_fail() -> None:
    retry = {"limit": 2, "backoff": {"initialSeconds": 10, "factor": 3, "maxSeconds": 20}}
    task = new(retry=retry)
    first = dispatch(task, T0)

    # Attempt 1 fails: attempt 2 in 10 s.
    f1 = T0 + s(5)
    step = task.step(f1, backend=task.backend("FAILURE", result=FAILURE, date_done=f1))
    assert task.phase == "Retrying"
    assert task.status["nextAttemptTime"] == iso(f1 + s(10))
    assert task.status["error"]["type"] == "ValueError"
    assert step.wake_at == f1 + s(10)
    assert step.publish is None
    assert reasons(step) == [("Warning", "TaskFailed")]
    assert "attempt 2 of 3" in step.notices[0].message
    assert conditions(task) == {"Ready": "True", "Stalled": "False"}
    assert [a["attempt"] for a in task.status["attempts"]] == [1]

    # A restart while waiting writes nothing and wakes a lead before the attempt.
    quiet = task.assert_quiet(f1 + s(1))
    assert quiet.wake_at == f1 + s(10) - CFG.dispatch_lead

    # Attempt 2: a new task id, published with eta = nextAttemptTime.
    step = task.step(f1 + s(8))
    second = step.publish
    assert task.phase == "Dispatching"
    assert second == Publish(task_id=task_id_for(UID, 2), attempt=2, eta=f1 + s(10),
                             expires=None)
    assert second.task_id != first.task_id
    assert task.status["attempt"] == 2
    assert task.status["taskId"] == second.task_id
    assert "nextAttemptTime" not in task.status
    assert task.status["error"]["type"] == "ValueError"  # the last error stays visible
    task.step(f1 + s(8), published_here=second.task_id, broker_run_id="run-1")
    assert task.phase == "Queued"

    # A stale record of attempt 1 does not end attempt 2.
    old = TaskState(task_id=first.task_id, status="FAILURE", result=FAILURE, date_done=f1)
    task.assert_quiet(f1 + s(11), backend=old)

    # Attempt 2 fails: the delay grows (10 * 3 = 30) but is capped at 20 s.
    f2 = f1 + s(15)
    step = task.step(f2, backend=task.backend("FAILURE", result=FAILURE, date_done=f2))
    assert task.phase == "Retrying"
    assert task.status["nextAttemptTime"] == iso(f2 + s(20))
    assert "attempt 3 of 3" in step.notices[0].message

    # Attempt 3 fails: no attempts left.
    third = task.step(f2 + s(18)).publish
    assert third is not None and third.task_id == task_id_for(UID, 3)
    task.step(f2 + s(18), published_here=third.task_id)
    f3 = f2 + s(25)
    step = task.step(f3, backend=task.backend("FAILURE", result=FAILURE, date_done=f3))
    assert task.phase == "Failed"
    assert step.finished_outcome == "Failed"
    attempts = task.status["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["taskId"] for a in attempts] == [task_id_for(UID, n) for n in (1, 2, 3)]
    assert all(a["phase"] == "Failed" for a in attempts)
    assert attempts[2]["completionTime"] == iso(f3)


def test_a_successful_retry_clears_the_error() -> None:
    task = new(retry={"limit": 1, "backoff": {"initialSeconds": 1}})
    dispatch(task, T0)
    task.step(T0 + s(1), backend=task.backend("FAILURE", result=FAILURE, date_done=T0 + s(1)))
    claim = task.step(T0 + s(2)).publish
    assert claim is not None
    task.step(T0 + s(2), published_here=claim.task_id)
    task.step(T0 + s(3), backend=task.backend("SUCCESS", result=42, date_done=T0 + s(3)))
    assert task.phase == "Succeeded"
    assert "error" not in task.status
    assert [(a["attempt"], a["phase"]) for a in task.status["attempts"]] == [
        (1, "Failed"), (2, "Succeeded")
    ]


def test_retry_on_lost_only_does_not_retry_failures() -> None:
    task = new(retry={"limit": 3, "on": ["Lost"]})
    dispatch(task, T0)
    task.step(T0 + s(1), backend=task.backend("FAILURE", result=FAILURE, date_done=T0 + s(1)))
    assert task.phase == "Failed"


# ---- lost workers ------------------------------------------------------------------------


def started_task(**spec: Any) -> Task:
    task = new(**spec)
    dispatch(task, T0)
    task.step(T0 + s(3), backend=task.backend("STARTED", worker="w1@node"),
              started_hint=T0 + s(1))
    assert task.phase == "Started"
    return task


@pytest.mark.parametrize("alive", [None, True])
def test_a_worker_not_known_dead_is_not_judged(alive: bool | None) -> None:
    task = started_task()
    task.assert_quiet(T0 + s(600), backend=task.backend("STARTED", worker="w1@node"),
                      started_hint=T0 + s(1), worker_alive=alive)


def test_lost_worker_fails_the_task_without_retry_policy() -> None:
    task = started_task()
    now = T0 + s(60)
    step = task.step(now, backend=task.backend("STARTED", worker="w1@node"),
                     started_hint=T0 + s(1), worker_alive=False)
    assert task.phase == "Failed"
    assert task.status["error"]["type"] == "WorkerLost"
    assert "w1@node" in task.status["error"]["message"]
    assert task.status["completionTime"] == iso(now)
    assert task.status["attempts"][-1]["error"]["type"] == "WorkerLost"
    assert conditions(task) == {"Ready": "False", "Stalled": "True"}
    assert reasons(step) == [("Warning", "TaskFailed")]


def test_lost_worker_retries_when_lost_is_in_retry_on() -> None:
    task = started_task(retry={"limit": 1, "backoff": {"initialSeconds": 30}})
    now = T0 + s(60)
    task.step(now, backend=task.backend("STARTED", worker="w1@node"), started_hint=T0 + s(1),
              worker_alive=False)
    assert task.phase == "Retrying"
    assert task.status["nextAttemptTime"] == iso(now + s(30))
    assert task.status["error"]["type"] == "WorkerLost"
    step = task.step(now + s(28))
    assert step.publish is not None and step.publish.task_id == task_id_for(UID, 2)


def test_lost_worker_is_not_retried_when_only_failures_are() -> None:
    task = started_task(retry={"limit": 5, "on": ["Failed"]})
    task.step(T0 + s(60), backend=task.backend("STARTED", worker="w1@node"),
              started_hint=T0 + s(1), worker_alive=False)
    assert task.phase == "Failed"
    assert task.status["error"]["type"] == "WorkerLost"


def test_lost_worker_known_only_from_a_started_event() -> None:
    task = new()
    dispatch(task, T0)
    task.step(T0 + s(30), started_hint=T0 + s(1), worker_alive=False)
    assert task.phase == "Failed"
    assert task.status["error"]["type"] == "WorkerLost"


# ---- revoke and expiry -------------------------------------------------------------------


def test_revoked_in_celery_is_revoked() -> None:
    task = new()
    dispatch(task, T0)
    done = T0 + s(5)
    step = task.step(T0 + s(6), backend=task.backend("REVOKED", date_done=done))
    assert task.phase == "Revoked"
    assert task.status["completionTime"] == iso(done)
    assert task.status["attempts"][-1]["phase"] == "Revoked"
    assert conditions(task) == {"Ready": "True", "Stalled": "False"}
    assert reasons(step) == [("Normal", "Revoked")]
    assert step.finished_outcome == "Revoked"


def test_message_reaching_a_worker_after_expiry_is_expired() -> None:
    task = new(expires=60)
    dispatch(task, T0)
    assert task.status["expiresAt"] == iso(T0 + s(60))
    step = task.step(T0 + s(120), backend=task.backend("REVOKED", date_done=T0 + s(90)))
    assert task.phase == "Expired"
    assert conditions(task) == {"Ready": "False", "Stalled": "True"}
    assert reasons(step) == [("Warning", "Expired")]
    assert step.finished_outcome == "Expired"


def test_revoked_before_expiry_is_revoked_not_expired() -> None:
    task = new(expires=60)
    dispatch(task, T0)
    task.step(T0 + s(120), backend=task.backend("REVOKED", date_done=T0 + s(30)))
    assert task.phase == "Revoked"


def test_expired_before_dispatch_is_never_sent() -> None:
    task = new(countdown=10, expires=30)
    step = task.step(T0 + s(60))  # the operator was down past the expiry
    assert task.phase == "Expired"
    assert step.publish is None
    assert task.status["expiresAt"] == iso(T0 + s(40))
    assert task.status["completionTime"] == iso(T0 + s(60))
    assert conditions(task) == {"Ready": "False", "Stalled": "True"}
    assert reasons(step) == [("Warning", "Expired")]
    assert step.finished_outcome == "Expired"
    task.assert_quiet(T0 + s(61))


def test_expiry_as_a_date_time() -> None:
    task = new(countdown=100, expires=iso(T0 + s(50)))
    step = task.step(T0 + s(1))
    # Nothing to wait for: it would expire before it is due.
    assert task.phase == "Scheduled"
    assert task.status["expiresAt"] == iso(T0 + s(50))
    step = task.step(T0 + s(50))
    assert task.phase == "Expired" and step.publish is None


def test_publish_carries_the_expiry_while_in_time() -> None:
    task = new(countdown=10, expires=30)
    step = task.step(T0 + s(39))
    assert step.publish is not None
    assert step.publish.eta == T0 + s(10)
    assert step.publish.expires == T0 + s(40)


def test_spec_revoke_before_dispatch_never_sends_the_message() -> None:
    task = new(countdown=600)
    task.step(T0)
    task.edit(revoke={})
    step = task.step(T0 + s(10))
    assert task.phase == "Revoked"
    assert step.publish is None
    assert step.revoke is None  # nothing was sent, nothing to revoke
    assert task.status["completionTime"] == iso(T0 + s(10))
    assert task.status["observedGeneration"] == 2
    assert conditions(task) == {"Ready": "True", "Stalled": "False"}
    assert reasons(step) == [("Normal", "Revoked")]
    assert step.finished_outcome == "Revoked"
    # Nor at its due time, nor ever.
    task.assert_quiet(T0 + s(600))


def test_spec_revoke_on_first_sight() -> None:
    task = new(revoke={"terminate": True})
    step = task.step(T0)
    assert task.phase == "Revoked"
    assert step.publish is None


def test_spec_revoke_while_waiting_for_a_retry() -> None:
    task = new(retry={"limit": 3})
    dispatch(task, T0)
    task.step(T0 + s(1), backend=task.backend("FAILURE", result=FAILURE, date_done=T0 + s(1)))
    assert task.phase == "Retrying"
    task.edit(revoke={})
    step = task.step(T0 + s(30))
    assert task.phase == "Revoked"
    assert step.publish is None
    assert "nextAttemptTime" not in task.status


@pytest.mark.parametrize("running", [False, True], ids=["queued", "started"])
def test_spec_revoke_after_dispatch_sends_a_revoke_and_enforces_it(running: bool) -> None:
    task = new()
    dispatch(task, T0)
    extra: dict[str, Any] = {}
    if running:
        extra = {"backend": task.backend("STARTED", worker="w1"), "started_hint": T0 + s(1)}
        task.step(T0 + s(5), **extra)
        assert task.phase == "Started"
    task.edit(revoke={"terminate": True, "signal": "SIGKILL"})
    step = task.step(T0 + s(10), **extra)
    assert step.revoke == RevokeRequest(terminate=True, signal="SIGKILL")
    assert step.publish is None
    # Sent is not done: Revoking until a worker (or the backend) says it took effect.
    assert task.phase == "Revoking"
    assert "completionTime" not in task.status
    assert reasons(step) == [("Normal", "Revoking")]
    assert "terminate=true" in step.notices[0].message
    assert step.finished_outcome is None
    assert step.track and step.wake_at == T0 + s(15)
    # The worker terminated it: Celery stores REVOKED.
    step = task.step(T0 + s(12), backend=task.backend("REVOKED", date_done=T0 + s(11)))
    assert task.phase == "Revoked"
    assert task.status["completionTime"] == iso(T0 + s(11))
    assert step.finished_outcome == "Revoked"
    task.assert_quiet(T0 + s(13), backend=task.backend("REVOKED", date_done=T0 + s(11)))


def test_spec_revoke_after_the_task_already_succeeded_keeps_the_success() -> None:
    task = new()
    dispatch(task, T0)
    task.edit(revoke={})
    step = task.step(T0 + s(10), backend=task.backend("SUCCESS", result=1, date_done=T0 + s(9)))
    assert task.phase == "Succeeded"
    assert step.revoke is None


# ---- invalid specs -----------------------------------------------------------------------


def test_invalid_spec_is_stalled_once() -> None:
    task = new(eta="tomorrow morning")
    step = task.step(T0)
    assert task.phase == "Invalid"
    assert step.publish is None
    assert conditions(task) == {"Ready": "False", "Stalled": "True"}
    stalled = get_condition(task.status["conditions"], "Stalled")
    assert stalled is not None and stalled["reason"] == "InvalidSpec"
    assert "spec.eta" in stalled["message"]
    assert reasons(step) == [("Warning", "InvalidSpec")]
    assert "spec.eta" in step.notices[0].message
    task.assert_quiet(T0 + s(60))

    # Fixing it schedules the task.
    task.edit(eta=iso(T0 + s(3600)))
    step = task.step(T0 + s(120))
    assert task.phase == "Scheduled"
    assert task.status["dueTime"] == iso(T0 + s(3600))
    assert conditions(task) == {"Ready": "True", "Stalled": "False"}
    task.assert_quiet(T0 + s(121))


def test_invalid_spec_still_invalid_after_another_edit_is_rewritten() -> None:
    task = new(countdown=-1)
    task.step(T0)
    task.edit(countdown="soon")
    step = task.step(T0 + s(1))
    assert task.phase == "Invalid"
    assert task.status["observedGeneration"] == 2
    assert step.status is not None


def test_an_invalid_edit_of_a_dispatched_task_keeps_tracking_it() -> None:
    task = new()
    dispatch(task, T0)
    task.edit(countdown=-5)
    step = task.plan(T0 + s(1))
    assert step.status is None or step.status.get("phase") != "Invalid"
    task.step(T0 + s(2), backend=task.backend("SUCCESS", result=1, date_done=T0 + s(2)))
    assert task.phase == "Succeeded"


# ---- after the end -----------------------------------------------------------------------


def succeeded(**spec: Any) -> tuple[Task, datetime]:
    task = new(**spec)
    dispatch(task, T0)
    done = T0 + s(10)
    task.step(T0 + s(11), backend=task.backend("SUCCESS", result=1, date_done=done))
    assert task.phase == "Succeeded"
    return task, done


def test_ttl_deletes_the_finished_task_after_completion_time_plus_ttl() -> None:
    task, done = succeeded(ttlSecondsAfterFinished=300)
    step = task.assert_quiet(done + s(100))
    assert step.wake_at == done + s(300)
    step = task.plan(done + s(300))
    assert step.delete and step.status is None and step.publish is None


def test_ttl_zero_deletes_at_once() -> None:
    task, done = succeeded(ttlSecondsAfterFinished=0)
    assert task.plan(done + s(1)).delete


def test_failed_task_is_deleted_by_ttl_too() -> None:
    task = new(ttlSecondsAfterFinished=60)
    dispatch(task, T0)
    task.step(T0 + s(1), backend=task.backend("FAILURE", result=FAILURE, date_done=T0 + s(1)))
    assert task.phase == "Failed"
    assert task.plan(T0 + s(30)).wake_at == T0 + s(61)
    assert task.plan(T0 + s(61)).delete


def test_without_ttl_a_finished_task_stays() -> None:
    task, done = succeeded()
    step = task.assert_quiet(done + timedelta(days=365))
    assert step.wake_at is None


def test_editing_a_finished_task_only_moves_observed_generation() -> None:
    task, done = succeeded()
    task.edit(eta=iso(T0 + s(7200)), countdown=None)
    step = task.plan(done + s(5))
    assert step.status == {"observedGeneration": 2}
    assert step.publish is None and step.notices == ()


def test_editing_a_finished_task_with_ttl_still_deletes_on_time() -> None:
    task, done = succeeded(ttlSecondsAfterFinished=60)
    task.edit(task={"name": "reports.other"})
    step = task.plan(done + s(10))
    assert step.status == {"observedGeneration": 2}
    assert step.wake_at == done + s(60)


# ---- conditions --------------------------------------------------------------------------


def test_ready_keeps_its_transition_time_while_the_task_progresses() -> None:
    task = new(countdown=60)
    task.step(T0)
    first = get_condition(task.status["conditions"], "Ready")
    assert first is not None
    dispatch(task, T0 + s(58))
    ready = get_condition(task.status["conditions"], "Ready")
    assert ready is not None
    assert ready["lastTransitionTime"] == first["lastTransitionTime"]
    assert ready["reason"] == "Queued"
    task.step(T0 + s(70), backend=task.backend("FAILURE", result=FAILURE, date_done=T0 + s(70)))
    ready = get_condition(task.status["conditions"], "Ready")
    assert ready is not None and ready["status"] == "False"
    assert ready["lastTransitionTime"] == "2026-03-01T12:01:10Z"
    assert all(c["observedGeneration"] == 1 for c in task.status["conditions"])


def test_no_confirm_before_the_broker_run_id_is_known() -> None:
    """Without the run id a later Redis restart could not be noticed: wait, then confirm
    with the run id seen just before the publish (not a newer one)."""
    task = Task({"task": {"name": "demo.add"}})
    claim = task.step(T0 + s(0.1))
    assert claim.publish is not None
    waiting = task.plan(T0 + s(0.2), published_here=claim.publish.task_id)
    assert waiting.status is None and waiting.wake_at is not None
    confirm = task.step(T0 + s(0.7), published_here=claim.publish.task_id,
                        published_run_id="run-old", broker_run_id="run-new")
    assert confirm.status is not None
    assert confirm.status["phase"] == "Queued"
    assert confirm.status["brokerRunId"] == "run-old"
