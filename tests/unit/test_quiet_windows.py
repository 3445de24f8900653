"""Quiet windows for bursts never cover more than half of the time."""

from datetime import UTC, datetime, timedelta

from celery_operator.controllers.bursts import QuietWindows

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def test_a_window_is_admitted_and_known_while_it_lasts() -> None:
    q = QuietWindows()
    assert q.admit(100, T0, T0 + s(10), now=T0 - s(20))
    assert q.end_at(T0 - s(1)) is None
    assert q.end_at(T0 + s(3)) == T0 + s(10)
    assert q.end_at(T0 + s(10)) is None
    assert not q.admit(100, T0, T0 + s(10), now=T0)  # the same burst asks again


def test_a_steady_stream_of_small_bursts_gets_at_most_half_of_the_time_quiet() -> None:
    # A burst every second, each asking for 2.5 s: without a cool-down they would
    # overlap into one endless window and the result reads would never run.
    q = QuietWindows()
    for second in range(60):
        due = T0 + s(second)
        q.admit(second, due - s(0.5), due + s(2), now=due - s(20))
    step = s(0.1)
    ticks = [T0 + step * i for i in range(600)]
    quiet = sum(1 for t in ticks if q.end_at(t) is not None)
    assert 0 < quiet <= len(ticks) // 2


def test_windows_far_apart_are_all_admitted() -> None:
    q = QuietWindows()
    assert q.admit(1, T0, T0 + s(10), now=T0 - s(30))
    assert q.admit(2, T0 + s(20), T0 + s(30), now=T0 - s(30))
    assert not q.admit(3, T0 + s(25), T0 + s(26), now=T0 - s(30))
