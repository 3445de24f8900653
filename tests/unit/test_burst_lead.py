"""Tasks due in the same second are claimed earlier, in proportion to their number."""

from datetime import UTC, datetime, timedelta

from celery_operator.controllers.bursts import BurstTracker
from celery_operator.controllers.taskengine import MAX_EXTRA_LEAD

DUE_SECOND = 1_798_761_600  # 2027-01-01T00:00:00Z
DUE = datetime.fromtimestamp(DUE_SECOND, UTC)


def _fill(bursts: BurstTracker, n: int) -> dict[str, datetime]:
    """Add n tasks due at DUE; the earliest time each was woken for."""
    woken: dict[str, datetime] = {}
    for i in range(n):
        for key, at in bursts.set(f"t{i}", DUE_SECOND):
            woken[key] = min(at, woken.get(key, at))
    return woken


def test_a_burst_of_10000_is_claimed_200_s_early_every_task_of_it() -> None:
    # 10,000 claims at 50/s take 200 s. Under the old 60 s cap the burst bench published
    # the last ones 9-14 s after the due time, and they started that late.
    bursts = BurstTracker(50.0, MAX_EXTRA_LEAD)
    woken = _fill(bursts, 10_000)
    assert bursts.extra_lead("t0") == bursts.extra_lead("t9999") == timedelta(seconds=200)
    assert len(woken) == 10_000
    assert set(woken.values()) == {DUE - timedelta(seconds=200)}


def test_the_lead_stops_growing_at_five_minutes() -> None:
    bursts = BurstTracker(50.0, MAX_EXTRA_LEAD)
    woken = _fill(bursts, 20_000)
    assert bursts.extra_lead("t0") == MAX_EXTRA_LEAD == timedelta(minutes=5)
    assert min(woken.values()) == DUE - MAX_EXTRA_LEAD


def test_a_burst_the_claim_rate_covers_in_a_second_is_not_claimed_early() -> None:
    bursts = BurstTracker(50.0, MAX_EXTRA_LEAD)
    assert _fill(bursts, 50) == {}
    assert bursts.extra_lead("t0") == timedelta(0)
