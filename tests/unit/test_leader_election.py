"""Leader election (controllers/leadership.py) with a fake clock and an in-memory Lease
that keeps the API server's resourceVersion rules (a stale replace is refused)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from celery_operator.controllers.leadership import ElectionTiming, Elector, Leadership
from celery_operator.kube.lease import LeaseRecord

TIMING = ElectionTiming(lease_duration=15.0, renew_deadline=10.0, retry_period=2.0)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=self.t)


class FakeLease:
    """The API server's side: one object, a resourceVersion bumped on every write."""

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.version = 0
        self.reachable = True

    def _check(self) -> None:
        if not self.reachable:
            raise ConnectionError("API server unreachable")

    def get(self) -> LeaseRecord | None:
        self._check()
        return self.record

    def create(self, record: LeaseRecord) -> LeaseRecord | None:
        self._check()
        if self.record is not None:
            return None
        return self._store(record)

    def replace(self, record: LeaseRecord) -> LeaseRecord | None:
        self._check()
        if self.record is None or record.resource_version != self.record.resource_version:
            return None
        return self._store(record)

    def _store(self, record: LeaseRecord) -> LeaseRecord:
        self.version += 1
        self.record = replace(record, resource_version=str(self.version))
        return self.record


def electors(n: int = 2) -> tuple[FakeLease, FakeClock, list[Elector]]:
    lease, clock = FakeLease(), FakeClock()
    return lease, clock, [
        Elector(lease, f"pod-{i}_uid-{i}", TIMING, monotonic=clock, wall=clock.wall)
        for i in range(n)
    ]


def test_the_first_candidate_creates_the_lease_and_leads_the_second_stands_by() -> None:
    lease, _, (a, b) = electors()
    assert a.try_acquire_or_renew() is True
    assert b.try_acquire_or_renew() is False
    assert (a.leading(), b.leading()) == (True, False)
    assert lease.record is not None and lease.record.holder == "pod-0_uid-0"
    assert lease.record.duration_seconds == 15 and lease.record.transitions == 0


def test_a_leader_that_cannot_renew_stops_before_a_standby_can_acquire() -> None:
    lease, clock, (a, b) = electors()
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()  # b saw a's record now
    lease.reachable = False  # a is cut off from the API server; b is not (its own view)
    stopped_at = None
    while clock.t < 1040:
        clock.t += 0.5
        if stopped_at is None and not a.leading():
            stopped_at = clock.t
        lease.reachable = True
        acquired = b.try_acquire_or_renew()
        lease.reachable = False
        if acquired:
            break
    assert stopped_at == 1010.0  # renew deadline after a's last renew was sent
    assert clock.t == 1015.0  # lease duration after b last saw the record change
    assert stopped_at < clock.t
    assert b.leading() and not a.leading()
    assert lease.record is not None and lease.record.transitions == 1


def test_a_renewing_leader_keeps_the_lease_and_the_standby_never_takes_it() -> None:
    _, clock, (a, b) = electors()
    for _ in range(30):  # a minute of renewals every retry period
        assert a.try_acquire_or_renew() is True
        assert b.try_acquire_or_renew() is False
        clock.t += TIMING.retry_period
    assert a.leading() and not b.leading()


def test_a_frozen_leader_thawed_after_a_takeover_does_not_act_and_cannot_renew() -> None:
    lease, clock, (a, b) = electors()
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    clock.t += 15.0  # a is SIGSTOPped; b waits out the lease and takes it
    assert b.try_acquire_or_renew() is True
    for _ in range(8):  # b leads, renewing, while a stays frozen
        clock.t += TIMING.retry_period
        assert b.try_acquire_or_renew() is True
    # a thaws
    assert not a.leading()  # before any request: its own deadline passed
    assert a.try_acquire_or_renew() is False
    assert not a.leading() and b.leading()
    assert lease.record is not None and lease.record.holder == "pod-1_uid-1"


def test_a_released_lease_is_taken_at_the_next_retry_not_after_the_lease_duration() -> None:
    _, clock, (a, b) = electors()
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    assert a.release() is True
    assert not a.leading()
    clock.t += TIMING.retry_period
    assert b.try_acquire_or_renew() is True


def test_two_candidates_racing_for_an_expired_lease_one_wins() -> None:
    lease, clock, (a, b, c) = electors(3)
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    c.try_acquire_or_renew()
    clock.t += 16.0

    class Racing(FakeLease):
        """c's read returns the expired record, then b takes the Lease before c writes."""

        def get(self) -> LeaseRecord | None:
            seen = lease.get()
            assert b.try_acquire_or_renew() is True
            return seen

        def create(self, record: LeaseRecord) -> LeaseRecord | None:
            return lease.create(record)

        def replace(self, record: LeaseRecord) -> LeaseRecord | None:
            return lease.replace(record)

    c.store = Racing()
    assert c.try_acquire_or_renew() is False  # its replace carried a stale resourceVersion
    assert b.leading() and not c.leading()
    assert lease.record is not None and lease.record.holder == "pod-1_uid-1"


def test_peers_are_every_holder_this_lease_has_had() -> None:
    _, _, (a, b) = electors()
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    assert b.peers == {"pod-0_uid-0", "pod-1_uid-1"}


@pytest.mark.parametrize(("timing", "flag"), [
    (ElectionTiming(15, 15, 2), "--leader-lease-duration (15) must be greater than "
                                "--leader-renew-deadline (15)"),
    (ElectionTiming(15, 2, 2), "--leader-renew-deadline (2) must be greater than "
                               "--leader-retry-period (2)"),
    (ElectionTiming(15, 10, 0), "--leader-retry-period must be > 0"),
])
def test_durations_that_cannot_fence_a_leader_are_refused_naming_the_flags(
    timing: ElectionTiming, flag: str
) -> None:
    problem = timing.problem()
    assert problem is not None and problem.startswith(flag)


def test_the_defaults_are_kube_controller_managers() -> None:
    assert ElectionTiming() == ElectionTiming(15.0, 10.0, 2.0)
    assert ElectionTiming().problem() is None


def test_a_standby_knows_when_the_lease_it_watches_may_be_taken() -> None:
    _, clock, (a, b) = electors()
    a.try_acquire_or_renew()
    assert a.expires_in() is None  # its own
    b.try_acquire_or_renew()
    clock.t += 4.0
    assert b.expires_in() == 11.0


def test_claims_by_a_holder_that_never_held_the_lease_are_warned_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, clock, (a, b) = electors()
    leadership = Leadership(b, lease_name="ops/celery-operator")
    a.try_acquire_or_renew()
    leadership.note_claim("pod-0_uid-0")  # the leader's own claims: before b saw it lead
    leadership.note_claim("rogue_1")  # another operator, its own Lease
    b.try_acquire_or_renew()
    clock.t += 2 * TIMING.retry_period + 0.5
    for _ in range(3):
        leadership._judge_strangers()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert warnings[0].startswith("claims by rogue_1, which never held this operator's "
                                  "Lease ops/celery-operator")
