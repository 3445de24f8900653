"""The due-time queue, on virtual time: nothing sleeps for real.

The event loop below runs on the same fake clock the queue reads: when the loop has
nothing ready, instead of blocking in select() for `timeout` seconds it moves the clock
forward by `timeout`. So `asyncio.sleep(3600)` returns at once with the clock an hour
later, and the queue's own waits (asyncio.wait_for on its nudge) are virtual too.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from celery_operator.controllers.duequeue import DueQueue

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TOLERANCE = timedelta(milliseconds=5)


class Clock:
    """The fake clock: seconds since T0, moved only by the virtual event loop."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> datetime:
        return T0 + timedelta(seconds=self.seconds)

    def at(self, seconds: float) -> datetime:
        return T0 + timedelta(seconds=seconds)


class _VirtualSelector:
    """A selector that never blocks: an idle wait advances the clock instead."""

    def __init__(self, real: selectors.BaseSelector, clock: Clock) -> None:
        self._real = real
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = self._real.select(0)
        if ready:
            return ready
        if timeout is None:
            # Nothing scheduled at all: only another thread can wake the loop.
            return self._real.select(None)
        self._clock.seconds += timeout
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: Clock) -> None:
        self.fake_clock = clock
        super().__init__()
        real: selectors.BaseSelector = self._selector
        self._selector: Any = _VirtualSelector(real, clock)

    def time(self) -> float:
        return self.fake_clock.seconds


def run(main: Callable[[Clock], Coroutine[Any, Any, None]]) -> None:
    clock = Clock()
    with asyncio.Runner(loop_factory=lambda: VirtualLoop(clock)) as runner:
        runner.run(asyncio.wait_for(main(clock), timeout=10 * 24 * 3600))


class Recorder:
    """A reconcile that records when each key ran and how many ran at once."""

    def __init__(self, clock: Clock, duration: float = 0.0) -> None:
        self.clock = clock
        self.duration = duration
        self.runs: list[tuple[str, datetime]] = []
        self.running: dict[str, int] = {}
        self.max_running_per_key = 0
        self.max_running = 0
        self.hook: Callable[[str, int], Awaitable[None] | None] | None = None

    async def __call__(self, key: str) -> None:
        self.runs.append((key, self.clock()))
        self.running[key] = self.running.get(key, 0) + 1
        self.max_running_per_key = max(self.max_running_per_key, self.running[key])
        self.max_running = max(self.max_running, sum(self.running.values()))
        try:
            if self.hook is not None:
                result = self.hook(key, self.count(key))
                if result is not None:
                    await result
            if self.duration:
                await asyncio.sleep(self.duration)
        finally:
            self.running[key] -= 1

    def count(self, key: str) -> int:
        return sum(1 for k, _ in self.runs if k == key)

    def times(self, key: str) -> list[datetime]:
        return [t for k, t in self.runs if k == key]


def close(actual: list[datetime], expected: list[datetime]) -> bool:
    return len(actual) == len(expected) and all(
        e <= a <= e + TOLERANCE for a, e in zip(actual, expected, strict=True)
    )


async def settle(seconds: float) -> None:
    """Let virtual time pass."""
    await asyncio.sleep(seconds)


def test_the_virtual_loop_does_not_sleep_for_real() -> None:
    import time

    async def main(clock: Clock) -> None:
        await asyncio.sleep(3600)
        assert clock.seconds >= 3600

    wall = time.monotonic()
    run(main)
    assert time.monotonic() - wall < 1.0


def test_keys_run_at_their_time_in_time_order() -> None:
    async def main(clock: Clock) -> None:
        rec = Recorder(clock)
        queue = DueQueue(rec, clock)
        queue.start()
        queue.schedule("late", clock.at(30))
        queue.schedule("soon", clock.at(5))
        queue.now("first")
        await settle(60)
        assert [k for k, _ in rec.runs] == ["first", "soon", "late"]
        assert close(rec.times("first"), [clock.at(0)])
        assert close(rec.times("soon"), [clock.at(5)])
        assert close(rec.times("late"), [clock.at(30)])
        assert queue.armed() == 0
        await queue.stop()

    run(main)


def test_a_key_is_not_run_before_its_time() -> None:
    async def main(clock: Clock) -> None:
        rec = Recorder(clock)
        queue = DueQueue(rec, clock)
        queue.start()
        queue.schedule("k", clock.at(3600))
        await settle(3599)
        assert rec.runs == []
        assert queue.armed() == 1
        await settle(2)
        assert close(rec.times("k"), [clock.at(3600)])
        await queue.stop()

    run(main)


def test_a_wake_up_in_the_past_runs_at_once() -> None:
    async def main(clock: Clock) -> None:
        rec = Recorder(clock)
        queue = DueQueue(rec, clock)
        queue.start()
        await settle(100)
        queue.schedule("k", clock.at(10))
        await settle(0.01)
        assert close(rec.times("k"), [clock.at(100)])
        await queue.stop()

    run(main)


def test_an_earlier_reschedule_wins_and_the_later_one_is_dropped() -> None:
    async def main(clock: Clock) -> None:
        rec = Recorder(clock)
        queue = DueQueue(rec, clock)
        queue.start()
        queue.schedule("k", clock.at(60))
        queue.schedule("k", clock.at(10))
        await settle(120)
        assert close(rec.times("k"), [clock.at(10)])  # once, not again at 60 s
        await queue.stop()

    run(main)


def test_a_later_reschedule_does_not_delay_a_queued_wake_up() -> None:
    async def main(clock: Clock) -> None:
        rec = Recorder(clock)
        queue = DueQueue(rec, clock)
        queue.start()
        queue.schedule("k", clock.at(10))
        queue.schedule("k", clock.at(60))
        await settle(120)
        assert close(rec.times("k"), [clock.at(10)])
        assert queue.armed() == 0
        await queue.stop()

    run(main)


def test_a_key_can_be_scheduled_again_after_it_ran() -> None:
    async def main(clock: Clock) -> None:
        rec = Recorder(clock)
        queue = DueQueue(rec, clock)
        queue.start()
        queue.schedule("k", clock.at(10))
        await settle(20)
        queue.schedule("k", clock.at(30))
        await settle(20)
        assert close(rec.times("k"), [clock.at(10), clock.at(30)])
        await queue.stop()

    run(main)


def test_forget_drops_a_pending_wake_up() -> None:
    async def main(clock: Clock) -> None:
        rec = Recorder(clock)
        queue = DueQueue(rec, clock)
        queue.start()
        queue.schedule("gone", clock.at(10))
        queue.schedule("kept", clock.at(10))
        queue.forget("gone")
        assert queue.armed() == 1
        await settle(60)
        assert [k for k, _ in rec.runs] == ["kept"]
        # Forgetting is not forever: a new wake-up runs.
        queue.schedule("gone", clock.at(70))
        await settle(20)
        assert close(rec.times("gone"), [clock.at(70)])
        await queue.stop()

    run(main)


def test_a_key_never_reconciles_twice_at_once() -> None:
    async def main(clock: Clock) -> None:
        rec = Recorder(clock, duration=10)
        queue = DueQueue(rec, clock)
        queue.start()
        queue.now("k")
        await settle(1)
        assert rec.count("k") == 1
        # Woken three times while it runs: one more run, right after the current one.
        queue.now("k")
        await settle(1)
        queue.schedule("k", clock.at(3))
        await settle(2)
        queue.now("k")
        await settle(30)
        assert rec.max_running_per_key == 1
        assert close(rec.times("k"), [clock.at(0), clock.at(10)])
        await queue.stop()

    run(main)


def test_different_keys_run_concurrently() -> None:
    async def main(clock: Clock) -> None:
        rec = Recorder(clock, duration=10)
        queue = DueQueue(rec, clock)
        queue.start()
        for key in ("a", "b", "c"):
            queue.now(key)
        await settle(11)
        assert rec.max_running == 3
        assert all(close(rec.times(k), [clock.at(0)]) for k in ("a", "b", "c"))
        await queue.stop()

    run(main)


def test_concurrency_limits_reconciles_in_flight() -> None:
    async def main(clock: Clock) -> None:
        rec = Recorder(clock, duration=10)
        queue = DueQueue(rec, clock, concurrency=2)
        queue.start()
        for key in ("a", "b", "c", "d"):
            queue.now(key)
        await settle(25)
        assert rec.max_running == 2
        assert len(rec.runs) == 4
        assert sorted(t for _, t in rec.runs)[-1] >= clock.at(10)
        await queue.stop()

    run(main)


def test_again_while_running_runs_exactly_once_more() -> None:
    async def main(clock: Clock) -> None:
        rec = Recorder(clock, duration=5)
        queue = DueQueue(rec, clock)
        queue.start()
        queue.now("k")
        await settle(1)
        queue.again("k")
        queue.again("k")
        queue.again("k")
        await settle(20)
        assert close(rec.times("k"), [clock.at(0), clock.at(5)])
        assert rec.max_running_per_key == 1
        await queue.stop()

    run(main)


def test_again_from_inside_the_reconcile_runs_once_more() -> None:
    async def main(clock: Clock) -> None:
        rec = Recorder(clock, duration=1)
        queue = DueQueue(rec, clock)

        def hook(key: str, count: int) -> None:
            if count == 1:
                queue.again(key)  # e.g. "confirm right after the publish"

        rec.hook = hook
        queue.start()
        queue.now("k")
        await settle(10)
        assert close(rec.times("k"), [clock.at(0), clock.at(1)])
        await queue.stop()

    run(main)


def test_again_when_idle_runs_now() -> None:
    async def main(clock: Clock) -> None:
        rec = Recorder(clock)
        queue = DueQueue(rec, clock)
        queue.start()
        await settle(42)
        queue.again("k")
        await settle(1)
        assert close(rec.times("k"), [clock.at(42)])
        await queue.stop()

    run(main)


def test_again_overrides_a_later_wake_up() -> None:
    async def main(clock: Clock) -> None:
        rec = Recorder(clock)
        queue = DueQueue(rec, clock)
        queue.start()
        queue.schedule("k", clock.at(100))
        await settle(5)
        queue.again("k")
        await settle(200)
        assert close(rec.times("k"), [clock.at(5)])
        await queue.stop()

    run(main)


def test_a_failing_reconcile_is_retried_with_capped_exponential_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main(clock: Clock) -> None:
        rec = Recorder(clock)

        def hook(key: str, count: int) -> None:
            if count <= 11:
                raise RuntimeError("API server unavailable")

        rec.hook = hook
        queue = DueQueue(rec, clock)
        queue.start()
        queue.schedule("k", clock.at(10))
        await settle(2000)
        # 1, 2, 4, ... s after each failure, never more than 300 s: not a loop.
        gaps = [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
        expected = [10.0]
        for gap in gaps:
            expected.append(expected[-1] + gap)
        assert close(rec.times("k"), [clock.at(t) for t in expected])
        assert queue.armed() == 0  # succeeded: no more retries
        await queue.stop()

    run(main)
    assert "API server unavailable" in caplog.text


def test_a_success_resets_the_backoff() -> None:
    async def main(clock: Clock) -> None:
        rec = Recorder(clock)

        def hook(key: str, count: int) -> None:
            if count in (1, 2, 4):
                raise RuntimeError("flaky")

        rec.hook = hook
        queue = DueQueue(rec, clock)
        queue.start()
        queue.schedule("k", clock.at(10))
        await settle(20)
        queue.schedule("k", clock.at(50))  # succeeded at 13; fails again at 50
        await settle(60)
        assert close(rec.times("k"), [clock.at(t) for t in (10, 11, 13, 50, 51)])
        await queue.stop()

    run(main)


def test_a_failure_does_not_postpone_an_earlier_wake_up() -> None:
    async def main(clock: Clock) -> None:
        rec = Recorder(clock, duration=2)

        def hook(key: str, count: int) -> Awaitable[None] | None:
            if count == 1:
                queue.schedule(key, clock.at(3))  # asked for while it runs

                async def fail() -> None:
                    await asyncio.sleep(2)
                    raise RuntimeError("boom")

                return fail()
            return None

        rec.hook = hook
        queue = DueQueue(rec, clock)
        queue.start()
        queue.now("k")
        await settle(30)
        # Ran at 0, failed at 2 (+1 s would be 3); the wake-up at 3 is kept.
        times = rec.times("k")
        assert close(times[:2], [clock.at(0), clock.at(3)])
        assert rec.max_running_per_key == 1
        await queue.stop()

    run(main)


def test_a_failing_key_does_not_block_others() -> None:
    async def main(clock: Clock) -> None:
        rec = Recorder(clock)

        def hook(key: str, count: int) -> None:
            if key == "bad":
                raise ValueError("always")

        rec.hook = hook
        queue = DueQueue(rec, clock)
        queue.start()
        queue.now("bad")
        queue.schedule("good", clock.at(12))
        await settle(13)
        assert close(rec.times("good"), [clock.at(12)])
        assert close(rec.times("bad"), [clock.at(t) for t in (0, 1, 3, 7)])
        await queue.stop()

    run(main)


def test_many_reschedules_keep_one_armed_wake_up_per_key() -> None:
    async def main(clock: Clock) -> None:
        rec = Recorder(clock)
        depths: list[int] = []
        queue = DueQueue(rec, clock, on_depth=depths.append)
        queue.start()
        for i in range(1000, 0, -1):
            queue.schedule("k", clock.at(i))
        assert queue.armed() == 1
        await settle(2000)
        assert close(rec.times("k"), [clock.at(1)])
        assert queue.armed() == 0
        assert depths  # the depth is reported
        await queue.stop()

    run(main)


def test_stop_cancels_running_reconciles() -> None:
    async def main(clock: Clock) -> None:
        finished: list[str] = []

        async def slow(key: str) -> None:
            await asyncio.sleep(100)
            finished.append(key)

        queue = DueQueue(slow, clock)
        queue.start()
        queue.now("k")
        await settle(1)
        await queue.stop()
        await settle(200)
        assert finished == []

    run(main)
