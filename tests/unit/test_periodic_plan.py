"""The PeriodicTask planner (`plan_periodic`), driven with explicit times.

A small simulator plays the API server and the controller: it keeps the status, applies
each step's merge patch, creates, revokes and deletes children as the step says, and
records events. After every step the planner is asked again over what it just wrote: a
restart over an up-to-date status must create, delete, revoke, announce and write nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from celery_operator.api import InvalidSpec, PeriodicTaskSpec, parse_periodic_task_spec
from celery_operator.scheduling.periodic_plan import (
    RUN_REQUEST_ANNOTATION,
    WAKE_SLACK,
    Child,
    ChildOrder,
    PeriodicConfig,
    PeriodicNotice,
    PeriodicObserved,
    PeriodicStep,
    child_name,
    plan_periodic,
    run_spec,
)

from .merge_patch import merge

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CFG = PeriodicConfig()
AHEAD = CFG.create_ahead
TASK = {"name": "reports.daily", "args": [1]}
EVERY_10M = {"interval": "10m"}


def m(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def run_name(at: datetime, parent: str = "report") -> str:
    return f"{parent}-{int(at.timestamp())}"


@dataclass
class Periodic:
    """One PeriodicTask and its child ScheduledTasks as the cluster holds them."""

    raw_spec: dict[str, Any]
    name: str = "report"
    created: datetime = T0
    generation: int = 1
    cfg: PeriodicConfig = CFG
    status: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    children: dict[str, Child] = field(default_factory=dict)
    writes: int = 0
    created_runs: list[ChildOrder] = field(default_factory=list)
    events: list[PeriodicNotice] = field(default_factory=list)

    def spec(self) -> PeriodicTaskSpec | InvalidSpec:
        try:
            return parse_periodic_task_spec(self.raw_spec)
        except InvalidSpec as exc:
            return exc

    def plan(self, now: datetime) -> PeriodicStep:
        obs = PeriodicObserved(
            name=self.name, generation=self.generation, created=self.created, spec=self.spec(),
            status=self.status, annotations=dict(self.annotations),
            children=list(self.children.values()), now=now,
        )
        return plan_periodic(obs, self.cfg)

    def step(self, now: datetime) -> PeriodicStep:
        """Plan and carry the step out as the controller does."""
        step = self.plan(now)
        for order in step.create:
            if order.name not in self.children:  # AlreadyExists: adopted, never twice
                self.created_runs.append(order)
                self.children[order.name] = Child(order.name, order.scheduled_time, None,
                                                   order.manual)
        for name in step.revoke:
            old = self.children[name]
            self.children[name] = Child(old.name, old.scheduled_time, old.phase, old.manual,
                                        revoke_requested=True)
        for name in step.delete:
            del self.children[name]
        if step.status is not None:
            self.status = merge(self.status, step.status)
            self.writes += 1
        self.events.extend(step.notices)
        return step

    def settle(self, now: datetime) -> PeriodicStep:
        """Step, then check that a restart right after changes nothing."""
        step = self.step(now)
        self.assert_quiet(now)
        return step

    def assert_quiet(self, now: datetime) -> None:
        again = self.plan(now)
        assert again.status is None, again.status
        assert again.create == ()
        assert again.revoke == ()
        assert again.delete == ()
        assert again.notices == ()

    def edit(self, **changes: Any) -> None:
        for key, value in changes.items():
            if value is None:
                self.raw_spec.pop(key, None)
            else:
                self.raw_spec[key] = value
        self.generation += 1

    def set_phase(self, name: str, phase: str | None) -> None:
        old = self.children[name]
        self.children[name] = Child(old.name, old.scheduled_time, phase, old.manual,
                                    old.revoke_requested)

    def add_child(self, at: datetime, phase: str | None, *, manual: bool = False) -> str:
        name = child_name(self.name, at, manual)
        self.children[name] = Child(name, at, phase, manual)
        return name

    def reasons(self) -> list[tuple[str, str]]:
        return [(e.type, e.reason) for e in self.events]


def new(schedule: dict[str, Any] | None = None, **spec: Any) -> Periodic:
    return Periodic(raw_spec={"schedule": dict(schedule or EVERY_10M), "task": TASK, **spec})


def condition(p: Periodic, type: str) -> dict[str, Any]:
    return next(c for c in p.status["conditions"] if c["type"] == type)


def reasons(step: PeriodicStep) -> list[tuple[str, str]]:
    return [(n.type, n.reason) for n in step.notices]


# ---- names and first sight ---------------------------------------------------------------


def test_child_names_are_the_unix_seconds_of_the_fire_time() -> None:
    assert child_name("report", m(10)) == "report-1767226200"
    assert child_name("report", m(10) + timedelta(milliseconds=999)) == "report-1767226200"
    assert child_name("report", m(10), manual=True) == "report-manual-1767226200"


def test_first_sight_shows_the_next_five_times_and_then_writes_nothing() -> None:
    p = new()
    step = p.step(m(1))
    assert step.create == ()
    st = p.status
    assert st["nextScheduleTimes"] == [iso(m(10 * k)) for k in range(1, 6)]
    assert st["active"] == [] and st["recentRuns"] == []
    assert "lastScheduleTime" not in st and "lastSuccessfulTime" not in st
    assert st["observedGeneration"] == 1
    assert condition(p, "Ready")["status"] == "True"
    assert condition(p, "Ready")["reason"] == "Scheduled"
    assert condition(p, "Stalled")["status"] == "False"
    assert step.wake_at == m(10) - AHEAD + WAKE_SLACK
    # A restart, now or a few minutes later, over this status writes nothing.
    p.assert_quiet(m(1))
    p.assert_quiet(m(5))
    assert p.writes == 1


def test_restart_over_an_up_to_date_status_writes_nothing() -> None:
    p = new()
    p.settle(m(1))
    p.settle(m(10) - AHEAD)
    p.set_phase(run_name(m(10)), "Succeeded")
    p.settle(m(11))
    p.settle(m(20) - AHEAD)
    writes = p.writes
    for now in (m(20) - AHEAD, m(20), m(21), m(29)):
        p.assert_quiet(now)
    assert p.writes == writes


# ---- creating runs -----------------------------------------------------------------------


def test_the_child_is_created_create_ahead_before_its_fire_time() -> None:
    p = new()
    p.step(m(1))
    assert p.step(m(10) - AHEAD - timedelta(microseconds=1)).create == ()
    step = p.settle(m(10) - AHEAD)
    assert step.create == (ChildOrder(run_name(m(10)), m(10)),)
    st = p.status
    assert st["lastScheduleTime"] == iso(m(10))
    assert st["totalRuns"] == 1
    assert st["active"] == [{"name": run_name(m(10)), "scheduledTime": iso(m(10))}]
    assert st["recentRuns"] == [
        {"name": run_name(m(10)), "scheduledTime": iso(m(10)), "phase": "Pending"}
    ]
    assert st["nextScheduleTimes"] == [iso(m(10 * k)) for k in range(2, 7)]
    assert step.wake_at == m(20) - AHEAD + WAKE_SLACK
    # The fire time itself passes: nothing new (the child exists), nothing written.
    p.assert_quiet(m(10))
    p.assert_quiet(m(10) + s(1))


def test_a_run_costs_the_parent_two_status_writes_not_one_per_child_step() -> None:
    p = new()
    p.step(m(1))
    p.step(m(10) - AHEAD)
    name = run_name(m(10))
    writes = p.writes
    for phase in ("Scheduled", "Dispatching", "Queued"):  # all "Pending" to the parent
        p.set_phase(name, phase)
        p.assert_quiet(m(10) - AHEAD + s(1))
    assert p.status["recentRuns"][-1]["phase"] == "Pending"
    p.set_phase(name, "Succeeded")
    p.settle(m(10) + s(1))
    assert p.writes == writes + 1
    assert p.status["recentRuns"][-1]["phase"] == "Succeeded"
    assert p.status["active"] == []


def test_create_ahead_is_configurable() -> None:
    p = new()
    p.cfg = PeriodicConfig(create_ahead=s(30))
    p.step(m(1))
    assert p.step(m(10) - s(31)).create == ()
    assert [o.name for o in p.step(m(10) - s(30)).create] == [run_name(m(10))]


def test_a_late_wake_up_still_runs_the_due_time_without_missing_it() -> None:
    p = new()
    p.step(m(1))
    step = p.settle(m(10) + s(30))
    assert step.create == (ChildOrder(run_name(m(10)), m(10)),)
    assert "missedRuns" not in p.status
    assert step.notices == ()


def test_the_child_phase_shows_in_recent_runs_and_last_successful_time() -> None:
    p = new()
    p.step(m(1))
    p.step(m(10) - AHEAD)
    name = run_name(m(10))
    p.set_phase(name, "Started")
    p.settle(m(10) + s(1))
    assert p.status["recentRuns"][-1]["phase"] == "Started"
    assert p.status["active"] == [{"name": name, "scheduledTime": iso(m(10))}]
    p.set_phase(name, "Succeeded")
    p.settle(m(11))
    assert p.status["recentRuns"][-1]["phase"] == "Succeeded"
    assert p.status["active"] == []
    assert p.status["lastSuccessfulTime"] == iso(m(10))


@pytest.mark.parametrize(
    "schedule",
    [EVERY_10M, {"cron": "*/10 * * * *"}, {"crontab": {"minute": "*/10"}}],
    ids=["interval", "cron", "crontab"],
)
@pytest.mark.parametrize("policy", ["Allow", "Forbid", "Replace"])
def test_two_hours_of_wake_ups_run_every_fire_time_exactly_once(
    schedule: dict[str, Any], policy: str
) -> None:
    """Wake exactly when asked, and when a run finishes (as the engine does: a child's
    phase change wakes its parent); runs take a minute. Every fire time runs once, on
    time, nothing is missed or skipped, and after every step a restart is silent."""
    p = new(schedule, concurrencyPolicy=policy)
    now = T0 + s(1)
    while now < m(120):
        for child in list(p.children.values()):
            if child.scheduled_time + s(60) <= now and child.phase != "Succeeded":
                p.set_phase(child.name, "Succeeded")
        step = p.settle(now)
        assert step.wake_at is not None and step.wake_at > now
        finishing = [c.scheduled_time + s(60) for c in p.children.values()
                     if c.phase != "Succeeded" and c.scheduled_time + s(60) > now]
        now = min([step.wake_at, *finishing])
    times = [o.scheduled_time for o in p.created_runs]
    assert times == [m(10 * k) for k in range(1, 13)]  # 120m is created 2 s ahead
    assert [o.name for o in p.created_runs] == [run_name(t) for t in times]
    assert p.status["totalRuns"] == 12
    assert "missedRuns" not in p.status and "skippedRuns" not in p.status
    assert p.reasons() == []
    # History: the default successfulRunsHistoryLimit keeps the newest three successes.
    succeeded = sorted(c.scheduled_time for c in p.children.values() if c.phase == "Succeeded")
    assert succeeded == [m(90), m(100), m(110)]
    assert p.status["lastSuccessfulTime"] == iso(m(110))


def test_cron_in_a_time_zone_names_children_by_their_utc_instant() -> None:
    p = new({"cron": "0 9 * * *", "timeZone": "Europe/Berlin"})
    p.step(T0)
    assert p.status["nextScheduleTimes"][:2] == ["2026-01-01T08:00:00Z", "2026-01-02T08:00:00Z"]
    nine_berlin = datetime(2026, 1, 1, 8, tzinfo=UTC)
    step = p.settle(nine_berlin - AHEAD)
    assert step.create == (ChildOrder(f"report-{int(nine_berlin.timestamp())}", nine_berlin),)
    # Summer time: 09:00 CEST is 07:00 UTC.
    summer = new({"cron": "0 9 * * *", "timeZone": "Europe/Berlin"})
    summer.created = datetime(2026, 7, 1, tzinfo=UTC)
    summer.step(summer.created)
    assert summer.status["nextScheduleTimes"][0] == "2026-07-01T07:00:00Z"


def test_interval_counts_from_start_time_when_set() -> None:
    # The anchor is startTime, not creation; the first run is one interval after it.
    p = new(startTime=iso(m(3)))
    p.step(m(1))
    assert p.status["nextScheduleTimes"][:2] == [iso(m(13)), iso(m(23))]
    step = p.settle(m(13) - AHEAD)
    assert [o.scheduled_time for o in step.create] == [m(13)]
    assert p.status["nextScheduleTimes"][0] == iso(m(23))


def test_interval_with_a_fraction_of_a_second_runs_each_fire_time_once() -> None:
    p = new({"interval": "1500ms"})
    p.cfg = PeriodicConfig(create_ahead=s(0.5))
    p.step(T0)
    step = p.step(T0 + s(1.5))
    assert [o.scheduled_time for o in step.create] == [T0 + s(1.5)]
    p.assert_quiet(T0 + s(1.5))  # actual: creates report-1767225601 again, totalRuns 2


def test_a_run_due_at_a_fraction_of_a_second_is_due_then_not_at_the_whole_second() -> None:
    # Its eta keeps the fraction (as do its annotation and its scheduledTime in
    # status.runs): a truncated eta started the run up to a second before its fire time.
    raw = {"schedule": {"interval": "1500ms"}, "task": TASK}
    spec = parse_periodic_task_spec(raw)
    assert isinstance(spec, PeriodicTaskSpec)
    order = ChildOrder(run_name(T0 + s(1.5)), T0 + s(1.5))
    assert run_spec(raw, spec, "report", order)["eta"] == "2026-01-01T00:00:01.5Z"


# ---- missed runs (CronJob's rule) --------------------------------------------------------


def ran_at_10m(**spec: Any) -> Periodic:
    """A PeriodicTask whose 10m run happened, then the operator went away."""
    p = new(**spec)
    p.step(m(1))
    p.step(m(10) - AHEAD)
    p.set_phase(run_name(m(10)), "Succeeded")
    p.events.clear()
    return p


def test_after_downtime_only_the_most_recent_missed_time_runs() -> None:
    p = ran_at_10m()
    step = p.settle(m(55))  # 20, 30, 40 and 50 were missed
    assert step.create == (ChildOrder(run_name(m(50)), m(50)),)
    assert p.status["lastScheduleTime"] == iso(m(50))
    assert p.status["missedRuns"] == 3
    assert p.status["totalRuns"] == 2
    assert reasons(step) == [("Warning", "MissedSchedule")]
    assert "missed 3 scheduled run(s)" in step.notices[0].message
    assert p.status["nextScheduleTimes"][0] == iso(m(60))


def test_back_just_before_a_fire_time_runs_the_latest_missed_and_the_next() -> None:
    p = ran_at_10m()
    step = p.settle(m(60) - s(1))
    assert [o.scheduled_time for o in step.create] == [m(50), m(60)]
    assert p.status["missedRuns"] == 3
    assert p.status["lastScheduleTime"] == iso(m(60))
    assert p.status["totalRuns"] == 3


def test_missed_runs_accumulate_over_separate_outages() -> None:
    p = ran_at_10m()
    p.settle(m(35))  # 20 missed, 30 runs
    assert p.status["missedRuns"] == 1
    p.set_phase(run_name(m(30)), "Succeeded")
    p.settle(m(75))  # 40, 50, 60 missed, 70 runs
    assert p.status["missedRuns"] == 4
    assert [o.scheduled_time for o in p.created_runs] == [m(10), m(30), m(70)]


def test_downtime_from_creation_applies_the_same_rule() -> None:
    p = new()
    step = p.settle(m(35))  # first seen 35 minutes after creation
    assert step.create == (ChildOrder(run_name(m(30)), m(30)),)
    assert p.status["missedRuns"] == 2


def test_latest_missed_time_older_than_the_starting_deadline_does_not_run() -> None:
    p = ran_at_10m(startingDeadlineSeconds=60)
    step = p.settle(m(55))
    assert step.create == ()
    assert p.status["missedRuns"] == 4  # 20, 30, 40 and 50 all never run
    assert p.status["lastScheduleTime"] == iso(m(50))  # judged once, not again
    assert reasons(step) == [("Warning", "MissedSchedule")]
    assert "startingDeadlineSeconds=60" in step.notices[0].message
    # The next fire time runs normally.
    step = p.settle(m(60) - AHEAD)
    assert step.create == (ChildOrder(run_name(m(60)), m(60)),)
    assert p.status["missedRuns"] == 4


def test_latest_missed_time_within_the_starting_deadline_runs() -> None:
    p = ran_at_10m(startingDeadlineSeconds=600)
    step = p.settle(m(55))
    assert step.create == (ChildOrder(run_name(m(50)), m(50)),)
    # Every fire time that will never run is counted, also those before the deadline.
    assert p.status["missedRuns"] == 3


def test_a_slightly_late_run_within_the_deadline_is_not_missed() -> None:
    p = ran_at_10m(startingDeadlineSeconds=30)
    step = p.settle(m(20) + s(20))
    assert step.create == (ChildOrder(run_name(m(20)), m(20)),)
    assert "missedRuns" not in p.status
    assert step.notices == ()


def test_too_many_missed_times_is_its_own_warning() -> None:
    p = new({"interval": "1m"})
    p.step(T0)
    p.step(m(1) - AHEAD)
    p.events.clear()
    step = p.settle(m(180) + s(30))  # 2..180 due: 180 runs, 178 missed
    assert [o.scheduled_time for o in step.create] == [m(180)]
    assert p.status["missedRuns"] == 178
    assert reasons(step) == [("Warning", "TooManyMissedTimes")]


# ---- concurrency policy ------------------------------------------------------------------


def running_10m(policy: str) -> Periodic:
    p = new(concurrencyPolicy=policy)
    p.step(m(1))
    p.step(m(10) - AHEAD)
    p.set_phase(run_name(m(10)), "Started")
    p.step(m(10) + s(5))
    p.events.clear()
    return p


def test_allow_runs_next_to_an_active_run() -> None:
    p = running_10m("Allow")
    step = p.settle(m(20) - AHEAD)
    assert [o.name for o in step.create] == [run_name(m(20))]
    assert step.revoke == ()
    assert [a["name"] for a in p.status["active"]] == [run_name(m(10)), run_name(m(20))]


def test_forbid_skips_while_a_run_is_active() -> None:
    p = running_10m("Forbid")
    # Not judged ahead of the fire time: the run may still finish before it.
    step = p.step(m(20) - AHEAD)
    assert step.create == () and "skippedRuns" not in p.status
    assert step.wake_at == m(20) + WAKE_SLACK
    step = p.settle(m(20))
    assert step.create == ()
    assert p.status["skippedRuns"] == 1
    assert p.status["lastScheduleTime"] == iso(m(20))  # the skipped time is done with
    assert p.status["totalRuns"] == 1
    assert reasons(step) == [("Normal", "SkippedRun")]
    assert "missedRuns" not in p.status
    # Once the run has finished the next fire time runs.
    p.set_phase(run_name(m(10)), "Succeeded")
    p.settle(m(25))
    step = p.settle(m(30) - AHEAD)
    assert [o.name for o in step.create] == [run_name(m(30))]
    assert p.status["skippedRuns"] == 1


def test_forbid_creates_ahead_once_the_active_run_has_finished() -> None:
    p = running_10m("Forbid")
    p.set_phase(run_name(m(10)), "Succeeded")
    step = p.settle(m(20) - AHEAD)
    assert [o.name for o in step.create] == [run_name(m(20))]
    assert "skippedRuns" not in p.status


def test_replace_revokes_the_active_run_and_starts_the_new_one() -> None:
    p = running_10m("Replace")
    # Not revoked ahead of the fire time: it may still finish on its own before it.
    step = p.step(m(20) - AHEAD)
    assert step.revoke == () and step.create == ()
    step = p.step(m(20))
    assert step.revoke == (run_name(m(10)),)
    assert [o.name for o in step.create] == [run_name(m(20))]
    assert p.status["active"] == [{"name": run_name(m(20)), "scheduledTime": iso(m(20))}]
    # The revoked child finishes as Revoked; it is not active and not revoked again.
    p.set_phase(run_name(m(10)), "Revoked")
    p.settle(m(20) + s(1))
    assert p.status["active"] == [{"name": run_name(m(20)), "scheduledTime": iso(m(20))}]


def test_replace_restart_before_the_revoked_run_finishes_writes_nothing() -> None:
    p = running_10m("Replace")
    p.step(m(20))
    p.assert_quiet(m(20))  # the old child has spec.revoke but is still Started


def test_a_child_being_revoked_does_not_count_as_active_for_forbid() -> None:
    p = running_10m("Forbid")
    p.children[run_name(m(10))] = Child(run_name(m(10)), m(10), "Started", revoke_requested=True)
    step = p.step(m(20) - AHEAD)
    assert [o.name for o in step.create] == [run_name(m(20))]


# ---- suspend -----------------------------------------------------------------------------


def test_suspended_creates_nothing_but_shows_next_times() -> None:
    p = new(suspend=True)
    now = m(1)
    while now < m(45):
        step = p.settle(now)
        assert step.create == ()
        assert step.wake_at is not None
        now = step.wake_at
    assert p.created_runs == []
    assert "lastScheduleTime" not in p.status
    assert "missedRuns" not in p.status
    assert p.status["nextScheduleTimes"][:2] == [iso(m(40)), iso(m(50))]
    assert condition(p, "Ready")["reason"] == "Suspended"
    assert p.reasons() == []


def test_resuming_applies_the_missed_run_rule_to_the_pause() -> None:
    p = ran_at_10m()
    p.edit(suspend=True)
    p.settle(m(12))
    for now in (m(20) - AHEAD, m(30) - AHEAD, m(40) - AHEAD):
        assert p.settle(now).create == ()
    assert p.status["lastScheduleTime"] == iso(m(10))
    p.edit(suspend=False)
    step = p.settle(m(45))  # 20 and 30 never run, 40 runs now
    assert step.create == (ChildOrder(run_name(m(40)), m(40)),)
    assert p.status["missedRuns"] == 2
    assert reasons(step) == [("Warning", "MissedSchedule")]
    assert condition(p, "Ready")["reason"] == "Scheduled"
    assert p.status["observedGeneration"] == 3


def test_resuming_after_the_starting_deadline_runs_nothing_until_the_next_time() -> None:
    p = ran_at_10m(startingDeadlineSeconds=60)
    p.edit(suspend=True)
    p.settle(m(12))
    p.edit(suspend=False)
    step = p.settle(m(45))
    assert step.create == ()
    assert p.status["missedRuns"] == 3
    assert [o.scheduled_time for o in p.settle(m(50) - AHEAD).create] == [m(50)]


# ---- run now -----------------------------------------------------------------------------


def test_run_request_creates_one_manual_child_once() -> None:
    p = new()
    p.step(m(1))
    request = iso(m(4))
    p.annotations[RUN_REQUEST_ANNOTATION] = request
    step = p.settle(m(4) + s(3))
    assert step.create == (ChildOrder(f"report-manual-{int(m(4).timestamp())}", m(4),
                                      manual=True),)
    assert p.status["lastHandledRunRequest"] == request
    assert reasons(step) == [("Normal", "RunRequested")]
    assert "lastScheduleTime" not in p.status  # the schedule is untouched
    assert p.status["active"] == [{"name": f"report-manual-{int(m(4).timestamp())}",
                                   "scheduledTime": iso(m(4))}]
    # Still there later: not repeated.
    p.settle(m(6))
    assert len(p.created_runs) == 1
    # The scheduled run still happens at its time.
    step = p.settle(m(10) - AHEAD)
    assert [o.name for o in step.create] == [run_name(m(10))]
    # A new request is a new run.
    p.annotations[RUN_REQUEST_ANNOTATION] = iso(m(12))
    step = p.settle(m(12))
    assert [o.name for o in step.create] == [f"report-manual-{int(m(12).timestamp())}"]
    assert p.status["lastHandledRunRequest"] == iso(m(12))


def test_run_request_works_while_suspended() -> None:
    p = new(suspend=True)
    p.annotations[RUN_REQUEST_ANNOTATION] = iso(m(4))
    step = p.settle(m(4))
    assert [o.manual for o in step.create] == [True]


def test_a_malformed_run_request_is_reported_once_and_not_run() -> None:
    p = new()
    p.step(m(1))
    p.annotations[RUN_REQUEST_ANNOTATION] = "now please"
    step = p.settle(m(2))
    assert step.create == ()
    assert reasons(step) == [("Warning", "InvalidRunRequest")]
    assert p.status["lastHandledRunRequest"] == "now please"


# ---- history limits ----------------------------------------------------------------------


def with_history(**spec: Any) -> Periodic:
    """Finished and active runs at 10, 20, ... 90 minutes; status up to date at 95m."""
    p = new(**spec)
    phases = ["Succeeded", "Failed", "Succeeded", "Expired", "Succeeded", "Succeeded",
              "Revoked", "Succeeded", "Started"]
    for k, phase in enumerate(phases, start=1):
        p.add_child(m(10 * k), phase)
    p.status = {"lastScheduleTime": iso(m(90)), "totalRuns": 9}
    return p


def test_history_limits_delete_the_oldest_finished_runs() -> None:
    p = with_history()  # defaults: 3 successful, 1 failed
    step = p.settle(m(95))
    assert set(step.delete) == {run_name(m(t)) for t in (10, 30, 20, 40)}
    assert sorted(c.scheduled_time for c in p.children.values()) == [
        m(50), m(60), m(70), m(80), m(90)
    ]
    assert [r["name"] for r in p.status["recentRuns"]] == [
        run_name(m(t)) for t in (50, 60, 70, 80, 90)
    ]
    assert p.status["active"] == [{"name": run_name(m(90)), "scheduledTime": iso(m(90))}]
    assert p.status["lastSuccessfulTime"] == iso(m(80))


def test_history_limits_are_configurable() -> None:
    p = with_history(successfulRunsHistoryLimit=1, failedRunsHistoryLimit=0)
    step = p.settle(m(95))
    assert len(step.delete) == 7
    assert sorted(p.children) == [run_name(m(80)), run_name(m(90))]


def test_active_runs_are_never_deleted_for_history() -> None:
    p = with_history(successfulRunsHistoryLimit=0, failedRunsHistoryLimit=0)
    step = p.settle(m(95))
    assert run_name(m(90)) not in step.delete
    assert list(p.children) == [run_name(m(90))]


def test_last_successful_time_is_recorded_even_with_no_success_history() -> None:
    p = new(successfulRunsHistoryLimit=0)
    p.step(m(1))
    p.step(m(10) - AHEAD)
    p.set_phase(run_name(m(10)), "Succeeded")
    step = p.step(m(11))
    assert step.delete == (run_name(m(10)),)
    assert p.status.get("lastSuccessfulTime") == iso(m(10))


def test_recent_runs_show_at_most_ten() -> None:
    p = new(successfulRunsHistoryLimit=20)
    for k in range(1, 15):
        p.add_child(m(10 * k), "Succeeded")
    p.status = {"lastScheduleTime": iso(m(140)), "totalRuns": 14}
    p.settle(m(145))
    assert [r["scheduledTime"] for r in p.status["recentRuns"]] == [
        iso(m(10 * k)) for k in range(5, 15)
    ]


# ---- bounds ------------------------------------------------------------------------------


def test_max_runs_stops_the_series() -> None:
    p = new(maxRuns=2)
    p.step(m(1))
    assert len(p.status["nextScheduleTimes"]) == 2
    p.step(m(10) - AHEAD)
    assert p.status["nextScheduleTimes"] == [iso(m(20))]
    step = p.settle(m(20) - AHEAD)
    assert [o.scheduled_time for o in step.create] == [m(20)]
    assert p.status["nextScheduleTimes"] == []
    assert step.wake_at is None
    assert condition(p, "Ready")["reason"] == "Finished"
    assert p.settle(m(300)).create == ()
    assert p.status["totalRuns"] == 2


def test_end_time_is_the_last_possible_run() -> None:
    p = new(endTime=iso(m(30)))
    p.step(m(1))
    assert p.status["nextScheduleTimes"] == [iso(m(10)), iso(m(20)), iso(m(30))]
    p.step(m(10) - AHEAD)
    p.step(m(20) - AHEAD)
    step = p.settle(m(30) - AHEAD)
    assert [o.scheduled_time for o in step.create] == [m(30)]
    assert step.wake_at is None
    assert p.settle(m(60)).create == ()


# ---- invalid specs -----------------------------------------------------------------------


def test_invalid_spec_is_stalled_once() -> None:
    p = new({"interval": "ten minutes"})
    step = p.step(m(1))
    assert step.create == () and step.delete == ()
    assert condition(p, "Stalled")["status"] == "True"
    assert condition(p, "Stalled")["reason"] == "InvalidSpec"
    assert "spec.schedule.interval" in condition(p, "Stalled")["message"]
    assert condition(p, "Ready")["status"] == "False"
    assert p.status["observedGeneration"] == 1
    assert reasons(step) == [("Warning", "InvalidSpec")]
    assert p.plan(m(2)) == PeriodicStep()  # unchanged: nothing written, no second Event
    # Edited but still invalid: said again for the new generation.
    p.edit(schedule={"cron": "61 * * * *"})
    step = p.step(m(3))
    assert p.status["observedGeneration"] == 2
    assert "spec.schedule.cron" in condition(p, "Stalled")["message"]
    assert p.plan(m(4)) == PeriodicStep()
    # Fixed: runs again, no longer stalled.
    p.edit(schedule={"interval": "10m"})
    step = p.settle(m(5))
    assert condition(p, "Stalled")["status"] == "False"
    assert condition(p, "Ready")["status"] == "True"
    assert p.status["observedGeneration"] == 3
    assert p.status["nextScheduleTimes"][0] == iso(m(10))


def test_invalid_spec_leaves_existing_children_alone() -> None:
    p = with_history()
    p.raw_spec["schedule"] = {"cron": "every day"}
    step = p.step(m(95))
    assert step.create == () and step.delete == () and step.revoke == ()


# ---- spec edits --------------------------------------------------------------------------


def test_an_edit_that_changes_nothing_shown_only_moves_observed_generation() -> None:
    p = new()
    p.step(m(1))
    p.edit(task={"name": "reports.weekly"})
    step = p.step(m(2))
    assert step.status is not None
    assert step.status["observedGeneration"] == 2
    assert "nextScheduleTimes" not in step.status
    p.assert_quiet(m(3))


def test_changing_the_interval_moves_the_next_times() -> None:
    p = new()
    p.step(m(1))
    p.edit(schedule={"interval": "15m"})
    p.settle(m(2))
    assert p.status["nextScheduleTimes"][:2] == [iso(m(15)), iso(m(30))]
