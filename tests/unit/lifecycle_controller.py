"""A double of the task engine's per-object loop, for the stateful lifecycle test.

It carries out `plan_step`'s steps as controllers/taskengine.py does (`reconcile`,
`_write_status`, `_status_rejected`, `_publish`, `_after`), against the `Task` simulator
of test_task_lifecycle (the API server's side), with failures injected by the test.
`Memory` is what one operator process knows and a restart loses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from celery_operator.api import Phase, ScheduledTaskSpec
from celery_operator.api import celery_state as cs
from celery_operator.api.celery_state import TaskState
from celery_operator.controllers.kubeio import stalled_conditions
from celery_operator.scheduling.backoff import Backoff
from celery_operator.scheduling.task_lifecycle import (
    IN_FLIGHT,
    Observed,
    Publish,
    PublishFailure,
    Step,
    current_task_id,
    plan_step,
)

from .merge_patch import merge
from .test_task_lifecycle import CFG, UID, Task

IN_FLIGHT_PHASES = frozenset(p.value for p in IN_FLIGHT)
# The engine re-plans at once after a write, a publish or a conflict: at one instant it
# must come to rest within a few passes, or it is a tight loop.
MAX_PASSES = 8
SERVER_ERROR_RETRY = timedelta(seconds=5)  # DueQueue: a reconcile that raised


class Checks(Protocol):
    """The test's invariants, called as the engine goes."""

    def on_plan(self, obs: Observed, step: Step) -> None: ...

    def on_write(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> None: ...

    def on_delete(self) -> None: ...


@dataclass(frozen=True)
class Published:
    task_id: str
    run_id: str | None
    at: datetime


@dataclass
class Memory:
    """The in-memory facts of one operator process (taskengine.TaskEngine's fields)."""

    broker_run_id: str | None
    published: Published | None = None
    publish_failure: PublishFailure | None = None
    publish_backoff: Backoff = field(default_factory=lambda: Backoff(initial=1.0, maximum=300.0))
    revoke_sent: tuple[datetime | None, int] | None = None
    rejected_backoff: Backoff = field(
        default_factory=lambda: Backoff(initial=5.0, maximum=600.0)
    )
    rejected_message: str | None = None
    states: dict[str, TaskState | None] = field(default_factory=dict)  # last backend reads
    started: dict[str, datetime] = field(default_factory=dict)  # started hints by task id
    tracked: str | None = None  # the task id the result tracker reads

    def forget_failures(self) -> None:
        self.publish_failure = None
        self.publish_backoff.succeeded(UID)
        self.revoke_sent = None
        self.rejected_message = None
        self.rejected_backoff.succeeded(UID)


@dataclass(frozen=True)
class PublishFault:
    permanent: bool
    reason: str
    message: str


@dataclass
class World:
    """One ScheduledTask, the backend, broker and workers around it, and one operator."""

    task: Task
    now: datetime
    memory: Memory
    records: dict[str, TaskState] = field(default_factory=dict)  # the result backend
    broker_run: int = 1
    worker_alive: bool | None = None
    write_fault: int | None = None  # HTTP status of the next status write's failure
    publish_fault: PublishFault | None = None
    wake: datetime | None = None  # the engine's pending wake-up for the object
    published: list[Publish] = field(default_factory=list)  # messages that went out
    plans: int = 0

    @property
    def run_id(self) -> str:
        return f"run-{self.broker_run}"

    # ---- what the engine sees ------------------------------------------------------------

    def observe(self) -> Observed:
        """taskengine.TaskEngine.observed."""
        status = self.task.status
        mem = self.memory
        task_id = current_task_id(UID, status)
        backend = mem.states.get(task_id) if task_id else None
        started = mem.started.get(task_id) if task_id else None
        if started is None and task_id and backend is not None and backend.status in (
            cs.STARTED, cs.RETRY
        ):
            started = mem.started.setdefault(task_id, self.now)
        worker = (backend.worker if backend else None) or status.get("worker")
        published = mem.published
        sent_at, sends = mem.revoke_sent or (None, 0)
        return self.task.observe(
            self.now,
            backend=backend,
            backend_read=bool(task_id) and task_id in mem.states,
            broker_run_id=mem.broker_run_id,
            published_here=published.task_id if published else None,
            published_run_id=published.run_id if published else None,
            published_at=published.at if published else None,
            started_hint=started,
            # The engine judges only a worker it has heard of (by host name).
            worker_alive=self.worker_alive if worker else None,
            publish_failure=mem.publish_failure,
            revoke_sent_at=sent_at,
            revoke_sends=sends,
        )

    def read_backend(self) -> None:
        """One poll of the result tracker (it reads the tracked task id only)."""
        tracked = self.memory.tracked
        if tracked is not None:
            self.memory.states[tracked] = self.records.get(tracked)

    # ---- what the engine does ------------------------------------------------------------

    def reconcile(self, check: Checks) -> None:
        """Plan and carry out until the engine rests; `check` sees every planned step and
        every status write the API server applied."""
        for _ in range(MAX_PASSES):
            if not self._reconcile_once(check):
                return
        raise AssertionError(
            f"no rest after {MAX_PASSES} passes at {self.now}: the engine loops "
            f"(status {self.task.status})"
        )

    def _reconcile_once(self, check: Checks) -> bool:
        """taskengine.TaskEngine.reconcile; True when the engine plans again at once."""
        obs = self.observe()
        step = plan_step(obs, CFG)
        self.plans += 1
        check.on_plan(obs, step)
        task_id = current_task_id(UID, obs.status)
        again = False
        if step.status is not None:
            fault, self.write_fault = self.write_fault, None
            if fault == 409:
                return True  # not applied; plan again from the object as it is now
            if fault == 422:
                self._status_rejected()
                return False
            if fault is not None:  # 5xx: the reconcile raised; the queue retries it
                self.wake = self.now + SERVER_ERROR_RETRY
                return False
            before = self.task.status
            self.task.status = merge(before, step.status)
            self.task.writes += 1
            if self.memory.rejected_message is not None:
                self.memory.rejected_message = None
                self.memory.rejected_backoff.succeeded(UID)
            check.on_write(before, self.task.status)
            again = True
        if step.publish is not None:
            self._publish(step.publish)
            again = True
        if step.revoke is not None and task_id:
            sends = (self.memory.revoke_sent or (None, 0))[1]
            self.memory.revoke_sent = (self.now, sends + 1)
        if step.delete:
            check.on_delete()
            return False
        self._after(step)
        return again

    def _status_rejected(self) -> None:
        """taskengine.TaskEngine._status_rejected: report once, retry with backoff."""
        mem = self.memory
        delay = mem.rejected_backoff.failed(UID)
        message = "the API server refused a status update (422): status.worker: Too long"
        if mem.rejected_message != message:
            mem.rejected_message = message
            conditions = stalled_conditions(
                self.task.status.get("conditions"), "StatusRejected", message,
                self.task.generation, self.now,
            )
            self.task.status = merge(self.task.status, {"conditions": conditions})
        self.wake = self.now + delay

    def _publish(self, order: Publish) -> None:
        """taskengine.TaskEngine._publish."""
        mem = self.memory
        if not isinstance(self.task.spec(), ScheduledTaskSpec):
            return  # the engine has no call to send
        fault, self.publish_fault = self.publish_fault, None
        if fault is not None:
            delay = mem.publish_backoff.failed(UID)
            mem.publish_failure = PublishFailure(
                order.task_id, fault.permanent, fault.reason, fault.message, self.now + delay
            )
            return
        mem.publish_failure = None
        mem.publish_backoff.succeeded(UID)
        mem.published = Published(order.task_id, mem.broker_run_id, self.now)
        self.published.append(order)

    def _after(self, step: Step) -> None:
        """taskengine.TaskEngine._after."""
        mem = self.memory
        status = self.task.status
        task_id = current_task_id(UID, status)
        if step.finished_outcome:
            mem.published = None
            mem.forget_failures()
        in_flight = status.get("phase") in IN_FLIGHT_PHASES
        if task_id and (step.track or in_flight) and not step.finished_outcome:
            mem.tracked = task_id
        elif mem.tracked is not None:
            mem.started.pop(mem.tracked, None)
            mem.states.pop(mem.tracked, None)
            mem.tracked = None
        if step.wake_at is not None:
            self.wake = step.wake_at
        elif self.wake is not None and self.wake <= self.now:
            self.wake = None

    # ---- the world changes ---------------------------------------------------------------

    def restart_operator(self, *, broker_reachable: bool) -> None:
        """A new process: everything in memory is gone; the broker's run id is read at
        start (unless the broker cannot be reached then)."""
        self.memory = Memory(broker_run_id=self.run_id if broker_reachable else None)
        self.wake = None

    def worker_changes(self, alive: bool | None) -> None:
        joined = alive is True and self.worker_alive is not True
        self.worker_alive = alive
        if joined and self.memory.revoke_sent is not None:
            # A worker (re)joined: it has not heard the revokes sent so far.
            self.memory.revoke_sent = (None, self.memory.revoke_sent[1])

    def set_record(self, state: TaskState | None) -> None:
        task_id = current_task_id(UID, self.task.status)
        assert task_id is not None
        if state is None:
            self.records.pop(task_id, None)
        else:
            self.records[task_id] = state
        self.read_backend()


FINAL_PHASES = frozenset(
    p.value for p in (Phase.SUCCEEDED, Phase.FAILED, Phase.REVOKED, Phase.EXPIRED)
)
