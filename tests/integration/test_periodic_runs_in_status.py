"""PeriodicTask runs kept in its status (spec.runObjects: Never): one API write per run."""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from kubernetes import watch

from celery_operator.api import GROUP, PERIODIC_PLURAL, VERSION, format_time, parse_time
from celery_operator.devstack import CeleryWorker
from celery_operator.devstack.demo_app import RUNS_KEY
from celery_operator.scheduling.task_lifecycle import task_id_for

from .broker_tap import BrokerTap
from .conftest import StartOperator, Tasks, wait_for
from .runs_in_status import EveryTwoSeconds
from .runs_in_status import phase_of as _phase
from .runs_in_status import runs_of as _runs
from .test_durability import StartWorker, execution_logs, guard, queue, start_worker

__all__ = ["execution_logs", "guard", "queue", "start_worker"]  # fixtures used here

pytestmark = [pytest.mark.integration, pytest.mark.serial]


def test_runs_live_in_the_parent_status_and_cost_one_write_each(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks, periodic: Tasks,
    results: redis_lib.Redis, custom: Any, namespace: str,
) -> None:
    operator = start_operator()
    created = periodic.create("instatus", {
        "schedule": {"interval": "3s"},
        "task": {"name": "demo.add", "args": [2, 2]},
        "runObjects": "Never",
        "successfulRunsHistoryLimit": 20,
    })
    uid = created["metadata"]["uid"]
    start = parse_time(created["metadata"]["creationTimestamp"])
    names = [f"instatus-{int((start + timedelta(seconds=3 * k)).timestamp())}"
             for k in range(1, 6)]
    wait_for(lambda: all(_phase(_runs(periodic, "instatus").get(n) or {}) == "Succeeded"
                         for n in names), 60, "the first five runs Succeeded in status.runs")
    runs = _runs(periodic, "instatus")
    for name in names:
        status = runs[name]["status"]
        assert status["result"] == 4
        assert status["worker"] == celery_worker.name
        task_id = task_id_for(f"{uid}/run/{name}", 1)
        assert status["taskId"] == task_id
        assert int(results.get(RUNS_KEY + task_id) or 0) == 1  # ran exactly once
    assert tasks.list() == []  # no ScheduledTask objects at all
    # Every status write after the first is one run's claim, with the news of the runs
    # before it folded in: a run costs one API write (and nothing else is written).
    versions = _versions(custom, namespace, "instatus", seconds=12)
    claims = [_claimed(after) - _claimed(before) for before, after in pairwise(versions)]
    assert len(claims) >= 3 and all(len(new) == 1 for new in claims), claims
    assert {k.split('"')[1] for k in _writes(operator.metrics())} == {"periodictasks/status"}
    status = periodic.get("instatus")["status"]
    assert parse_time(status["lastSuccessfulTime"]) >= parse_time(runs[names[-1]]["scheduledTime"])
    assert [r["phase"] for r in status["recentRuns"] if r["name"] in names] == ["Succeeded"] * 5



def test_an_outcome_with_no_claim_coming_is_written_at_once_with_the_parents_view(
    celery_worker: CeleryWorker, start_operator: StartOperator, periodic: Tasks,
    custom: Any, namespace: str,
) -> None:
    """Outcomes wait at most --run-outcome-wait (3 s here) for the next claim; runs 8 s
    apart have none coming, so each outcome is written at once — in the same write as the
    parent's view of it (lastSuccessfulTime, recentRuns): two writes a run, not three."""
    start_operator("--run-outcome-wait", "3")
    periodic.create("apart", {
        "schedule": {"interval": "8s"},
        "task": {"name": "demo.add", "args": [4, 4]},
        "runObjects": "Never",
    })
    wait_for(lambda: any(_phase(r) == "Succeeded" for r in _runs(periodic, "apart").values()),
             40, "a first run Succeeded")
    versions = _versions(custom, namespace, "apart", seconds=26)
    claims: list[str] = []
    outcomes: list[str] = []
    for before, after in pairwise(versions):
        ended = _succeeded(after) - _succeeded(before)
        claimed = _claimed(after) - _claimed(before)
        assert len(ended) + len(claimed) == 1, (before, after)  # one run's news a write
        if claimed:
            claims.extend(claimed)
            continue
        name = ended.pop()
        outcomes.append(name)
        # The parent's view of the run came in the same write, at once (not a minute on).
        assert int(parse_time(after["lastSuccessfulTime"]).timestamp()) == int(
            parse_time(after["runs"][name]["scheduledTime"]).timestamp())
        assert {"name": name, "phase": "Succeeded"}.items() <= next(
            r for r in after["recentRuns"] if r["name"] == name).items()
    assert len(claims) >= 3 and len(outcomes) >= 3, (claims, outcomes)
    # Every run claimed in the window whose outcome is in it too: one write each.
    assert set(claims) - set(outcomes) <= {claims[-1]}, (claims, outcomes)


def _succeeded(status: dict[str, Any]) -> set[str]:
    return {name for name, run in (status.get("runs") or {}).items()
            if (run.get("status") or {}).get("phase") == "Succeeded"}

def _claimed(status: dict[str, Any]) -> set[str]:
    return {name for name, run in (status.get("runs") or {}).items()
            if (run.get("status") or {}).get("claim")}


def _versions(custom: Any, namespace: str, name: str, seconds: float) -> list[dict[str, Any]]:
    """The parent's status at each write for `seconds` (a watch: every version seen)."""
    seen: list[dict[str, Any]] = []
    stream = watch.Watch().stream(
        custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PERIODIC_PLURAL,
        field_selector=f"metadata.name={name}", timeout_seconds=int(seconds))
    for event in stream:
        seen.append(event["object"].get("status") or {})
    return seen


def _writes(metrics: str) -> list[str]:
    return [line.split("{", 1)[1].split("}", 1)[0] for line in metrics.splitlines()
            if line.startswith("celery_operator_api_writes_total{")
            and float(line.rsplit(" ", 1)[1]) > 0]


def test_operator_sigkilled_between_runs_loses_and_doubles_no_run(
    start_operator: StartOperator, periodic: Tasks, start_worker: StartWorker, queue: str,
    broker_tap: BrokerTap, execution_logs: list[Path], guard: bool,
) -> None:
    """The outcomes folded into the next write die with the operator: the next one finds
    them in the result store (each run Succeeded in status), publishes nothing again, and
    every run's task id was published and executed exactly once — without the guard too."""
    start_worker()
    operator = start_operator()
    schedule = EveryTwoSeconds(periodic, "durable", queue)
    wait_for(lambda: len(schedule.succeeded()) >= 4, 30, "four runs Succeeded")
    operator.kill()
    # Runs the dead operator claimed and whose outcome it had folded, unwritten.
    in_flight = schedule.unfinished()
    assert in_flight  # (the newest claim's outcome is always still to be written)
    time.sleep(4)  # two fire times pass with nobody leading (one runs late, one is missed)
    start_operator()
    before = set(schedule.runs())
    wait_for(lambda: len(schedule.succeeded() - before) >= 3, 40,
             "three runs after the restart")
    wait_for(lambda: in_flight <= schedule.succeeded(), 40,
             f"the runs in flight at the kill: {in_flight}")
    phases = {_phase(r) for r in schedule.runs().values()}
    assert phases <= {"Succeeded", "Dispatching", "Started", None}, phases  # none failed
    schedule.assert_each_ran_once(schedule.succeeded(), broker_tap, execution_logs)


def test_a_graceful_stop_writes_the_outcome_that_waits_for_the_next_claim(
    celery_worker: CeleryWorker, start_operator: StartOperator, periodic: Tasks,
) -> None:
    """A run's outcome waits in memory for the next run's claim (20 s away): SIGTERM
    writes it before the operator exits, so status shows it while no operator runs."""
    operator = start_operator()
    created = periodic.create("graceful", {
        "schedule": {"interval": "20s"},
        "task": {"name": "demo.add", "args": [3, 3]},
        "runObjects": "Never",
    })
    start = parse_time(created["metadata"]["creationTimestamp"])
    first = f"graceful-{int((start + timedelta(seconds=20)).timestamp())}"
    wait_for(lambda: _succeeded_total(operator.metrics()) >= 1, 40,
             "the operator taking in the first run's outcome")
    # Taken in, not written: it waits for the claim of the run due in ~20 s.
    assert _phase(_runs(periodic, "graceful")[first]) != "Succeeded"
    operator.signal(signal.SIGTERM)
    wait_for(lambda: not operator.process.running(), 30, "the operator exiting")
    operator.stop()
    status = _runs(periodic, "graceful")[first]["status"]
    assert (status["phase"], status["result"]) == ("Succeeded", 6)
    assert "wrote the waiting run outcomes of 1 PeriodicTasks" in (
        operator.process.log_path.read_text())


def _succeeded_total(metrics: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("celery_operator_finished_total{")
               and 'outcome="Succeeded"' in line)


def test_history_limit_drops_runs_from_status(
    celery_worker: CeleryWorker, start_operator: StartOperator, periodic: Tasks,
) -> None:
    start_operator()
    created = periodic.create("trimmed", {
        "schedule": {"interval": "1s"},
        "task": {"name": "demo.add", "args": [1, 1]},
        "runObjects": "Never",
        "successfulRunsHistoryLimit": 2,
    })
    start = parse_time(created["metadata"]["creationTimestamp"])
    first = f"trimmed-{int((start + timedelta(seconds=1)).timestamp())}"

    def kept_two() -> bool:
        runs = _runs(periodic, "trimmed")
        done = sorted(n for n, r in runs.items() if _phase(r) == "Succeeded")
        if not done:
            return False
        newest = max(parse_time(r["scheduledTime"]) for r in runs.values())
        return len(done) == 2 and first not in runs and all(
            parse_time(runs[n]["scheduledTime"]) >= newest - timedelta(seconds=3)
            for n in done)
    wait_for(kept_two, 20, "exactly the two newest successful runs kept in status.runs")
    assert periodic.get("trimmed")["status"]["totalRuns"] >= 4


def test_run_now_adds_one_manual_run_in_status(
    celery_worker: CeleryWorker, start_operator: StartOperator, periodic: Tasks, custom: Any,
    namespace: str,
) -> None:
    start_operator()
    periodic.create("manual", {
        "schedule": {"cron": "0 0 1 1 *"},  # once a year: only the manual run happens now
        "task": {"name": "demo.add", "args": [5, 5]},
        "runObjects": "Never",
    })
    now = datetime.now(UTC).replace(microsecond=0)
    stamp = format_time(now)
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PERIODIC_PLURAL, "manual",
        {"metadata": {"annotations": {"celeryoperator.dev/run-requested-at": stamp}}})
    name = f"manual-manual-{int(now.timestamp())}"
    wait_for(lambda: _phase(_runs(periodic, "manual").get(name) or {}) == "Succeeded", 20,
             "the requested run Succeeded")
    run = _runs(periodic, "manual")[name]
    assert (run["manual"], run["status"]["result"]) == (True, 10)
    assert list(_runs(periodic, "manual")) == [name]
    assert periodic.get("manual")["status"]["lastHandledRunRequest"] == stamp


def test_replace_revokes_the_running_run_through_status(
    celery_worker: CeleryWorker, start_operator: StartOperator, periodic: Tasks,
    results: redis_lib.Redis,
) -> None:
    start_operator()
    periodic.create("replace", {
        "schedule": {"interval": "3s"},
        "task": {"name": "demo.sleep", "args": [30]},
        "concurrencyPolicy": "Replace",
        "runObjects": "Never",
        "successfulRunsHistoryLimit": 50,
        "failedRunsHistoryLimit": 50,
    })
    wait_for(lambda: len(_runs(periodic, "replace")) >= 2, 15, "a second run")
    first = min(_runs(periodic, "replace"))
    wait_for(lambda: _phase(_runs(periodic, "replace")[first]) == "Revoked", 20,
             f"{first} Revoked")
    revoked = _runs(periodic, "replace")[first]
    assert revoked["revoke"] == {"terminate": True, "signal": "SIGTERM"}
    meta = json.loads(results.get(f"celery-task-meta-{revoked['status']['taskId']}"))
    assert meta["status"] == "REVOKED", meta
    # Each fire time replaces the run before: one run is active at a time.
    wait_for(lambda: [a["name"] for a in periodic.get("replace")["status"]["active"]] == [
        max(_runs(periodic, "replace"))], 10, "exactly one active run, the newest")


def test_deleting_the_parent_revokes_its_run_in_flight(
    celery_worker: CeleryWorker, start_operator: StartOperator, periodic: Tasks,
    results: redis_lib.Redis,
) -> None:
    start_operator()
    created = periodic.create("doomed", {
        "schedule": {"interval": "2s"},
        "task": {"name": "demo.sleep", "args": [30]},
        "concurrencyPolicy": "Forbid",
        "runObjects": "Never",
    })
    uid = created["metadata"]["uid"]
    # The first run's body is running on the worker (its Started may wait in memory for
    # the next write: the next fire time is 2 s away).
    first = wait_for(lambda: next(iter(_runs(periodic, "doomed")), None), 10, "a run")
    task_id = task_id_for(f"{uid}/run/{first}", 1)
    wait_for(lambda: results.get(RUNS_KEY + task_id) == b"1", 20, f"run {first} running")
    periodic.delete("doomed")

    def ended() -> Any:
        raw = results.get(f"celery-task-meta-{task_id}")
        meta = json.loads(raw) if raw else {}
        return meta.get("status") in ("REVOKED", "FAILURE") and meta
    assert wait_for(ended, 15, "the running run revoked")["status"] in ("REVOKED", "FAILURE")
