"""A standby's due-time queue stays armed but parks what would act, and a new leader
runs exactly the parked keys at once (virtual time, see test_duequeue)."""

from __future__ import annotations

import asyncio

from celery_operator.controllers.duequeue import DueQueue

from .test_duequeue import Clock, run, settle


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
        leading = False
        ran: list[str] = []

        async def reconcile(key: str) -> None:
            if not leading:
                queue.park(key)
                return
            ran.append(key)

        queue = DueQueue(reconcile, clock, concurrency=1)
        queue.start()
        for key, at in (("late", 30.0), ("early", 10.0), ("middle", 20.0)):
            queue.schedule(key, clock.at(at))
        await settle(60)
        leading = True
        queue.unpark_all()
        await settle(1)
        assert ran == ["early", "middle", "late"]
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
