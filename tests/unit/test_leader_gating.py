"""A standby's due-time queue parks what would act, plans only what changed (once per
burst of the leader's writes), and a new leader runs exactly the parked keys at once
(virtual time, see test_duequeue)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from celery_operator.controllers.duequeue import DueQueue

from .test_duequeue import Clock, Recorder, close, run, settle


class Standby:
    """A reconcile that parks its key unless this process leads, else records it."""

    def __init__(self) -> None:
        self.leading = False
        self.acted: list[str] = []
        self.queue: DueQueue | None = None

    async def reconcile(self, key: str) -> None:
        assert self.queue is not None
        if not self.leading:
            self.queue.park(key)
            return
        self.acted.append(key)


def test_parked_keys_run_when_leading_starts_and_no_others() -> None:
    async def main(clock: Clock) -> None:
        leading = False
        acted: list[str] = []
        has_work = {"a": True, "b": False, "c": True}

        async def reconcile(key: str) -> None:
            if has_work[key] and not leading:
                queue.park(key)  # what TaskEngine/PeriodicEngine do for a step that acts
                return
            if has_work[key]:
                acted.append(key)
                has_work[key] = False

        queue = DueQueue(reconcile, clock)
        queue.start()
        for key in has_work:
            queue.now(key)
        await settle(60)
        assert acted == []
        # c's work was done elsewhere (the leader's write arrived): re-planned, no act.
        has_work["c"] = False
        queue.now("c")
        await settle(1)
        leading = True
        assert queue.unpark_all() == 1
        await settle(0.01)
        assert acted == ["a"]
        assert queue.unpark_all() == 0
        await queue.stop()

    run(main)


def test_parked_keys_run_in_the_order_they_came_due() -> None:
    async def main(clock: Clock) -> None:
        node = Standby()
        queue = node.queue = DueQueue(node.reconcile, clock, concurrency=1)
        queue.start()
        for key, at in (("late", 30.0), ("early", 10.0), ("middle", 20.0)):
            queue.schedule(key, clock.at(at))
        await settle(60)
        node.leading = True
        queue.unpark_all()
        await settle(1)
        assert node.acted == ["early", "middle", "late"]
        await queue.stop()

    run(main)


def test_a_forgotten_key_is_not_unparked() -> None:
    async def main(clock: Clock) -> None:
        ran: list[str] = []

        async def reconcile(key: str) -> None:
            ran.append(key)

        queue = DueQueue(reconcile, clock)
        queue.park("gone")
        queue.forget("gone")
        queue.start()
        assert queue.unpark_all() == 0
        await asyncio.sleep(1)
        assert ran == []
        await queue.stop()

    run(main)


def test_a_standby_parks_keys_that_come_due_without_planning_them() -> None:
    """Standing by, a key's wake-up parks it unplanned (the leader acts on it); when this
    process leads, it is planned at once, parked keys in the order they came due."""

    async def main(clock: Clock) -> None:
        leading = False
        rec = Recorder(clock)
        queue = DueQueue(rec, clock, concurrency=1, holding=lambda: not leading)
        queue.start()
        for key, at in (("late", 30.0), ("early", 10.0)):
            queue.schedule(key, clock.at(at))
        await settle(60)
        assert rec.runs == []
        assert queue.armed() == 0  # parked, not armed: nothing wakes while standing by
        leading = True
        assert queue.unpark_all() == 2
        await settle(0.01)
        assert [key for key, _ in rec.runs] == ["early", "late"]
        assert close(rec.times("early") + rec.times("late"), [clock.at(60)] * 2)
        await queue.stop()

    run(main)


def test_a_standby_plans_a_changed_key_once_after_the_delay() -> None:
    """The leader's writes to one object in a row (claim, confirm, finish) cost a standby
    one plan, `delay` after the first of them, from the latest body."""

    async def main(clock: Clock) -> None:
        rec = Recorder(clock)
        queue = DueQueue(rec, clock, holding=lambda: True)
        queue.start()
        for _ in range(4):
            queue.defer("task", timedelta(seconds=5))
            await settle(1)
        await settle(60)
        assert close(rec.times("task"), [clock.at(5)])
        queue.defer("task", timedelta(seconds=5))  # a later change: planned again
        await settle(60)
        assert close(rec.times("task"), [clock.at(5), clock.at(69)])
        await queue.stop()

    run(main)


def test_a_deferred_key_runs_at_once_when_leading_starts() -> None:
    """A change seen just before acquiring is planned right away, not after the delay:
    the new leader acts within its first moments on everything it saw change."""

    async def main(clock: Clock) -> None:
        leading = False
        rec = Recorder(clock)
        queue = DueQueue(rec, clock, holding=lambda: not leading)
        queue.start()
        await settle(10)
        queue.defer("changed", timedelta(seconds=5))
        await settle(1)
        leading = True
        assert queue.unpark_all() == 1
        await settle(0.01)
        assert close(rec.times("changed"), [clock.at(11)])
        await settle(60)
        assert rec.count("changed") == 1  # its deferred wake-up was not run again
        await queue.stop()

    run(main)


def test_a_deferred_key_that_still_waits_for_a_leader_stays_parked() -> None:
    """Planned as a standby and its step would act: parked again, run when leading."""

    async def main(clock: Clock) -> None:
        node = Standby()
        queue = node.queue = DueQueue(node.reconcile, clock, holding=lambda: not node.leading)
        queue.start()
        queue.defer("claim", timedelta(seconds=5))
        await settle(60)
        assert node.acted == []
        node.leading = True
        assert queue.unpark_all() == 1
        await settle(0.01)
        assert node.acted == ["claim"]
        await queue.stop()

    run(main)


def test_a_forgotten_deferred_key_is_neither_planned_nor_unparked() -> None:
    async def main(clock: Clock) -> None:
        rec = Recorder(clock)
        queue = DueQueue(rec, clock, holding=lambda: True)
        queue.start()
        queue.defer("deleted", timedelta(seconds=5))
        queue.forget("deleted")
        await settle(60)
        assert queue.unpark_all() == 0
        await settle(1)
        assert rec.runs == []
        await queue.stop()

    run(main)
