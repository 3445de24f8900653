"""The ScheduledTask lifecycle as a Hypothesis state machine, under injected failures.

Hypothesis plays everything around one ScheduledTask: a fake clock (small and large
jumps, and straight to the engine's next wake-up), a user editing the spec (revoke,
countdown/eta/expires, retry policy, invalid and valid again), the result backend (every
state, a record that vanishes, a backend restarted empty), the broker (restarted empty),
the worker (gone, back), publishes that fail (transient or permanent), status writes the
API server refuses (409, 422, 5xx) and operator restarts. `lifecycle_controller.World`
plays the engine. The rules checked as it goes:
  - at one instant the engine comes to rest (no tight loop of writes and publishes), and
    a resting, unfinished task has a bounded wake-up in the future or is tracked;
  - a finished phase never changes, attempt never decreases, status.taskId is always
    derived from uid + attempt; Revoked/Expired after dispatch only if the task never ran;
  - no publish in a finished phase or while a revoke is asked for, and every publish
    carries the id of the attempt it claims;
  - every status patch is within the CRD's limits (`fit_status` changes nothing), every
    Event has a CamelCase reason and a message of at most 1024 characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from celery_operator.api import InvalidSpec, Phase, ScheduledTaskSpec, parse_time
from celery_operator.api import celery_state as cs
from celery_operator.api.celery_state import TaskState
from celery_operator.api.limits import fit_status
from celery_operator.scheduling.task_lifecycle import (
    Observed,
    Step,
    current_attempt,
    current_task_id,
    task_id_for,
)

from .lifecycle_controller import FINAL_PHASES, IN_FLIGHT_PHASES, Memory, PublishFault, World
from .merge_patch import merge
from .test_task_lifecycle import T0, TASK, UID, Task, iso, s

CAMEL_CASE = re.compile(r"[A-Z][A-Za-z0-9]*")
EVENT_MESSAGE_MAX = 1024
LONGEST_BACKOFF = timedelta(minutes=10)  # status-write backoff cap; others are shorter
PLURAL = "scheduledtasks"
NEVER_RAN = frozenset({Phase.REVOKED.value, Phase.EXPIRED.value})

# ---- inputs ------------------------------------------------------------------------------

countdowns = st.sampled_from([0, 0.5, 3, 30, 600, 86400])
offsets = st.sampled_from([-3600, -5, 0, 1.5, 10, 120, 3600])  # seconds from now
expiries = st.sampled_from([None, None, None, 1, 10, 60, 3600])  # mostly none: expiry ends it
retry_policies = st.fixed_dictionaries({
    "limit": st.integers(0, 3),
    "backoff": st.fixed_dictionaries({
        "initialSeconds": st.sampled_from([0, 1, 10]),
        "factor": st.sampled_from([1, 2]),
        "maxSeconds": st.sampled_from([10, 600]),
    }),
    "on": st.sampled_from([[], ["Failed"], ["Lost"], ["Failed", "Lost"]]),
})
# Spec edits that the parser refuses (older CRDs and CEL rules let some through).
INVALID_EDITS: dict[str, dict[str, Any]] = {
    "countdown-text": {"countdown": "soon"},
    "eta-and-countdown": {"countdown": 5, "eta": "2026-03-01T12:00:00Z"},
    "retry-limit": {"retry": {"limit": -1}},
    "long-value": {"expires": "x" * 3000},
    "no-task": {"task": None},
}
LONG = "x" * 5000
FINISHED_STEPS = 3  # steps a finished task is kept before a new one replaces it
RETRY_TWICE = {"limit": 2, "backoff": {"initialSeconds": 1, "maxSeconds": 10},
               "on": ["Failed", "Lost"]}
NEXT_TASKS: list[dict[str, Any]] = [
    {"task": dict(TASK), "countdown": 3, "retry": RETRY_TWICE},
    {"task": dict(TASK), "countdown": 0, "expires": 60},
    {"task": dict(TASK), "countdown": 30, "ttlSecondsAfterFinished": 30},
]
workers = st.sampled_from(["celery@w1", "celery@w2", "celery@" + "w" * 300])
BACKEND_STATES = [cs.STARTED, cs.RETRY, cs.SUCCESS, cs.FAILURE, cs.REVOKED, cs.UNREADABLE]


def record(task_id: str, state: str, *, worker: str, big: bool, retries: int | None,
           now: datetime) -> TaskState:
    """A backend record as the result reader decodes it, long where a worker may be."""
    failure = {"exc_type": "E" * 300 if big else "ValueError",
               "exc_message": [LONG if big else "bad input"], "exc_module": "builtins"}
    if state == cs.SUCCESS:
        return TaskState(task_id, state, result=LONG * 8 if big else 3, date_done=now,
                         worker=worker, retries=retries)
    if state in (cs.FAILURE, cs.RETRY):
        return TaskState(task_id, state, result=failure, traceback=LONG if big else "tb",
                         date_done=now, worker=worker, retries=retries)
    if state == cs.UNREADABLE:
        return TaskState(task_id, state, result=LONG if big else "pickle: not JSON")
    if state == cs.REVOKED:
        return TaskState(task_id, state, date_done=now, worker=worker)
    return TaskState(task_id, state, worker=worker)


# ---- the machine -------------------------------------------------------------------------


class Lifecycle(RuleBasedStateMachine):
    world: World
    valid_spec: dict[str, Any]  # the last spec the parser accepted ("valid again")
    final_phase: str | None  # the finished phase the task reached, if it did
    finished_for: int  # steps since then
    max_attempt: int
    created: int = 0  # objects created so far

    # ---- the checks ----------------------------------------------------------------------

    def on_plan(self, obs: Observed, step: Step) -> None:
        """Every planned step, before the engine carries it out."""
        status = obs.status
        phase = status.get("phase")
        if step.status is not None:
            assert step.status == fit_status(PLURAL, step.status), "over a schema limit"
        for notice in step.notices:
            assert notice.type in ("Normal", "Warning"), notice
            assert CAMEL_CASE.fullmatch(notice.reason), notice
            assert len(notice.message) <= EVENT_MESSAGE_MAX, (notice.reason, notice.message)
        after = merge(dict(status), step.status) if step.status is not None else status
        if step.publish is not None:
            order = step.publish
            assert phase not in FINAL_PHASES and after.get("phase") not in FINAL_PHASES, phase
            spec = obs.spec
            asked = isinstance(spec, ScheduledTaskSpec) and spec.revoke is not None
            assert not asked and phase != Phase.REVOKING.value, "published a revoked task"
            assert order.task_id == task_id_for(UID, order.attempt)
            assert after.get("taskId") == order.task_id
            assert current_attempt(after) == order.attempt
        if step.revoke is not None:
            assert current_task_id(UID, status) is not None, "a revoke with no task id"
        if step.status is None and step.publish is None and not step.delete:
            self._check_rest(obs, step, after)

    def _check_rest(self, obs: Observed, step: Step, status: Mapping[str, Any]) -> None:
        """The engine rests on this step: it must know when to look again."""
        now = obs.now
        phase = status.get("phase")
        if step.wake_at is not None:
            assert now < step.wake_at <= self._latest_wake(obs, status), (
                f"wake-up {step.wake_at} out of bounds at {now}"
            )
        if phase in FINAL_PHASES:
            ttl = obs.spec.ttl_seconds_after_finished if isinstance(
                obs.spec, ScheduledTaskSpec) else None
            assert ttl is None or step.wake_at is not None, "ttl never acted on"
            return
        if phase == Phase.INVALID.value:
            return  # waits for the user's next edit (a watch event)
        assert step.track or step.wake_at is not None, (
            f"{phase}: no wake-up and not tracked: it would wait forever"
        )

    def _latest_wake(self, obs: Observed, status: Mapping[str, Any]) -> datetime:
        times = [obs.now + LONGEST_BACKOFF]
        for key in ("dueTime", "nextAttemptTime", "expiresAt"):
            if status.get(key):
                times.append(parse_time(str(status[key])))
        spec = obs.spec
        if isinstance(spec, ScheduledTaskSpec) and spec.ttl_seconds_after_finished is not None:
            done = status.get("completionTime")
            times.append((parse_time(str(done)) if done else obs.now)
                         + s(spec.ttl_seconds_after_finished))
        return max(times)

    def on_write(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
        """Every status write the API server applied."""
        phase = after.get("phase")
        if self.final_phase is not None:
            assert phase == self.final_phase, f"{self.final_phase} went back to {phase}"
        elif phase in FINAL_PHASES:
            self.final_phase = phase
        attempt = after.get("attempt")
        if attempt is not None:
            assert attempt >= self.max_attempt, f"attempt {self.max_attempt} -> {attempt}"
            self.max_attempt = attempt
        if after.get("taskId"):
            assert after["taskId"] == task_id_for(UID, current_attempt(after))
        self._check_truthful(before, after)

    def _check_truthful(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
        """Revoked or Expired after dispatch says the task never ran and never will: the
        backend must not show it started, running or finished (a revoke that did not take
        effect ends in the real outcome)."""
        phase = after.get("phase")
        dispatched = before.get("phase") in IN_FLIGHT_PHASES or (
            before.get("phase") == Phase.RETRYING.value and not before.get("nextAttemptTime")
        )
        if phase == before.get("phase") or phase not in NEVER_RAN or not dispatched:
            return
        task_id = current_task_id(UID, after)
        truth = self.world.records.get(task_id) if task_id else None
        assert truth is None or truth.status in (cs.REVOKED, cs.UNREADABLE), (
            f"{before.get('phase')} -> {phase} while the backend says {truth.status}"
        )

    def on_delete(self) -> None:
        """ttlSecondsAfterFinished deleted the object: the user creates a new one."""
        assert self.final_phase is not None, "deleted an unfinished task"
        self._create(dict(NEXT_TASKS[self.created % len(NEXT_TASKS)]))

    # ---- setup -----------------------------------------------------------------------------

    def _create(self, raw: dict[str, Any]) -> None:
        """A new object (the engine's per-object memory starts empty; its process's
        knowledge of the broker does not)."""
        old = getattr(self, "world", None)
        now = old.now if old else T0
        self.world = World(
            task=Task(raw_spec=raw, created=now),
            now=now,
            memory=Memory(broker_run_id=old.memory.broker_run_id if old else "run-1"),
            broker_run=old.broker_run if old else 1,
        )
        self.valid_spec = dict(raw)
        self.final_phase = None
        self.finished_for = 0
        self.created += 1
        self.max_attempt = 0

    @initialize(countdown=countdowns, expires=expiries, retry=st.none() | retry_policies)
    def a_task_is_created(self, countdown: float, expires: int | None,
                          retry: dict[str, Any] | None) -> None:
        raw: dict[str, Any] = {"task": dict(TASK), "countdown": countdown}
        if expires is not None:
            raw["expires"] = expires
        if retry is not None:
            raw["retry"] = retry
        self._create(raw)
        self._engine()

    def _engine(self) -> None:
        """Something the engine reacts to happened: it plans (and acts) at once. A task
        that has stayed finished for a few steps is replaced by a new one, so the steps
        go to lifecycles rather than to a finished object."""
        self.world.reconcile(self)
        if self.final_phase is not None:
            self.finished_for += 1
            if self.finished_for > FINISHED_STEPS:
                self._create(dict(NEXT_TASKS[self.created % len(NEXT_TASKS)]))
                self.world.reconcile(self)

    @property
    def _dispatched(self) -> bool:
        return current_task_id(UID, self.world.task.status) is not None

    # ---- time ------------------------------------------------------------------------------

    def _advance(self, by: timedelta) -> None:
        world = self.world
        world.now += by
        if by >= s(1):  # the result tracker and the broker check poll every second or two
            world.read_backend()
            if world.memory.broker_run_id is None:
                world.memory.broker_run_id = world.run_id
        self._engine()

    @rule(seconds=st.floats(0.01, 5))
    def a_moment_passes(self, seconds: float) -> None:
        self._advance(s(seconds))

    @rule(seconds=st.sampled_from([15, 60, 600, 3600, 86400 * 3]))
    def a_long_time_passes(self, seconds: int) -> None:
        self._advance(s(seconds))

    @precondition(lambda self: self.world.wake is not None)
    @rule()
    def the_next_wake_up_comes(self) -> None:
        assert self.world.wake is not None
        self._advance(max(self.world.wake - self.world.now, timedelta(0)))

    # ---- the user edits the spec -----------------------------------------------------------

    @rule(data=st.data())
    def the_user_edits_the_spec(self, data: st.DataObject) -> None:
        """One edit (the generation moves). Before dispatch a revoke simply ends the task
        (test_task_lifecycle covers it); after, it is enforced over many steps: that is
        where it is worth trying."""
        kinds = ["revoke", "unrevoke", "countdown", "eta", "expires", "retry", "ttl",
                 "invalid", "valid"]
        if not self._dispatched:
            kinds.remove("revoke")
        kind = data.draw(st.sampled_from(kinds), label="edit")
        if kind == "valid":
            self.edit_spec(**({key: None for key in self.world.task.raw_spec} | self.valid_spec))
        else:
            self.edit_spec(**self._changes(kind, data))

    def edit_spec(self, **changes: Any) -> None:
        task = self.world.task
        task.edit(**changes)
        if not isinstance(task.spec(), InvalidSpec):
            self.valid_spec = dict(task.raw_spec)
        self._engine()

    def _changes(self, kind: str, data: st.DataObject) -> dict[str, Any]:
        now = self.world.now
        if kind == "revoke":
            return {"revoke": {"terminate": data.draw(st.booleans(), label="terminate")}}
        if kind == "unrevoke":
            return {"revoke": None}
        if kind == "countdown":
            return {"countdown": data.draw(countdowns, label="countdown"), "eta": None}
        if kind == "eta":
            return {"eta": iso(now + s(data.draw(offsets, label="eta"))), "countdown": None}
        if kind == "expires":
            if data.draw(st.booleans(), label="expires as a date"):
                return {"expires": iso(now + s(data.draw(offsets, label="expires at")))}
            return {"expires": data.draw(expiries, label="expires")}
        if kind == "retry":
            return {"retry": data.draw(retry_policies, label="retry")}
        if kind == "ttl":
            return {"ttlSecondsAfterFinished": data.draw(
                st.sampled_from([None, 0, 30, 3600]), label="ttl")}
        return INVALID_EDITS[data.draw(st.sampled_from(sorted(INVALID_EDITS)), label="invalid")]

    # ---- the result backend ----------------------------------------------------------------

    @precondition(lambda self: self._dispatched)
    @rule(state=st.sampled_from(BACKEND_STATES), worker=workers, big=st.booleans(),
          retries=st.none() | st.integers(0, 3), event=st.booleans())
    def the_backend_record_changes(self, state: str, worker: str, big: bool,
                                   retries: int | None, event: bool) -> None:
        world = self.world
        task_id = current_task_id(UID, world.task.status)
        assert task_id is not None
        world.set_record(record(task_id, state, worker=worker, big=big, retries=retries,
                                now=world.now))
        if event and state == cs.STARTED and world.memory.tracked == task_id:
            world.memory.started.setdefault(task_id, world.now)  # a task-started event
        self._engine()

    @precondition(lambda self: self._dispatched)
    @rule()
    def the_record_vanishes(self) -> None:
        self.world.set_record(None)
        self._engine()

    @rule()
    def the_backend_restarts_empty(self) -> None:
        self.world.records.clear()
        self.world.read_backend()
        self._engine()

    # ---- broker, workers, operator ---------------------------------------------------------

    @rule()
    def the_broker_restarts_empty(self) -> None:
        world = self.world
        world.broker_run += 1
        if world.memory.broker_run_id is not None:
            world.memory.broker_run_id = world.run_id  # the broker check notices
        self._engine()

    @rule(alive=st.sampled_from([True, False, None]))
    def the_worker_changes(self, alive: bool | None) -> None:
        self.world.worker_changes(alive)
        self._engine()

    @rule(broker_reachable=st.booleans())
    def the_operator_restarts(self, broker_reachable: bool) -> None:
        self.world.restart_operator(broker_reachable=broker_reachable)
        self._engine()  # the initial listing plans every object

    # ---- injected failures -----------------------------------------------------------------

    @rule(permanent=st.booleans(), long=st.booleans())
    def the_next_publish_fails(self, permanent: bool, long: bool) -> None:
        reason = "EncodeError" if permanent else "BrokerUnavailable"
        message = ("m" * 300) if long else "the broker did not answer"
        self.world.publish_fault = PublishFault(permanent, reason, message)

    @rule(code=st.sampled_from([409, 422, 500, 503]))
    def the_next_status_write_fails(self, code: int) -> None:
        self.world.write_fault = code

    # ---- invariants between rules --------------------------------------------------------

    @invariant()
    def the_stored_status_is_within_the_schema(self) -> None:
        status = self.world.task.status
        assert status == fit_status(PLURAL, status)

    @invariant()
    def published_task_ids_are_ours(self) -> None:
        for order in self.world.published:
            assert order.task_id == task_id_for(UID, order.attempt)


TestLifecycle = Lifecycle.TestCase
TestLifecycle.settings = settings(max_examples=300, stateful_step_count=60)



# ---- sequences the machine found, replayed one by one ------------------------------------
# Each is the shortest way found to break one rule above; they fail at the check that names
# the rule, inside the engine's reconcile.


def test_a_started_task_is_not_called_expired_after_an_operator_restart() -> None:
    machine = Lifecycle()
    machine.a_task_is_created(countdown=0, expires=60, retry=None)
    machine.the_backend_record_changes(state=cs.STARTED, worker="celery@w1", big=False,
                                       retries=None, event=False)
    machine.a_long_time_passes(600)  # it runs past its expiry (expiry only stops a start)
    assert machine.world.task.phase == "Started"
    machine.the_operator_restarts(broker_reachable=True)  # lists it before any backend read
    assert machine.world.task.phase == "Started"


def test_a_revoke_that_has_not_taken_effect_is_not_called_done_after_a_restart() -> None:
    machine = Lifecycle()
    machine.a_task_is_created(countdown=0, expires=None, retry=None)
    machine.the_backend_record_changes(state=cs.STARTED, worker="celery@w1", big=False,
                                       retries=None, event=False)
    machine.a_moment_passes(2)
    machine.edit_spec(revoke={"terminate": False})  # it runs on: Revoking, not Revoked
    machine.the_broker_restarts_empty()  # the message was taken already: nothing lost
    assert machine.world.task.phase == "Revoking"
    machine.the_operator_restarts(broker_reachable=True)
    assert machine.world.task.phase == "Revoking"


def test_a_publish_the_engine_cannot_make_is_not_retried_in_a_tight_loop() -> None:
    machine = Lifecycle()
    machine.a_task_is_created(countdown=3, expires=None, retry=None)
    machine.the_next_publish_fails(permanent=False, long=False)
    machine.the_next_wake_up_comes()  # claimed; the publish failed; retried with backoff
    assert machine.world.task.phase == "Dispatching"
    machine.edit_spec(countdown="soon")  # now the engine has no call to send
    machine.the_next_wake_up_comes()  # the retry: claim, no publish, claim, no publish, …


def test_a_long_worker_host_name_is_written_within_the_schema() -> None:
    machine = Lifecycle()
    machine.a_task_is_created(countdown=0, expires=None, retry=None)
    machine.the_backend_record_changes(state=cs.STARTED, worker="celery@" + "w" * 300,
                                       big=False, retries=None, event=False)
    machine.a_moment_passes(2)  # the Started write carries status.worker (maxLength 255)
    assert machine.world.task.phase == "Started"


def test_an_invalid_spec_event_fits_an_event_message() -> None:
    machine = Lifecycle()
    machine.a_task_is_created(countdown=3, expires=None, retry=None)
    machine.edit_spec(expires="x" * 3000)
    assert machine.world.task.phase == "Invalid"
