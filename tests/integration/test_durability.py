"""Durability on the real stack: crashes and restarts of every part lose nothing, and
publish a task id twice only where the design says it may.

Three independent accounts are compared for every task id:
- the broker's: what redis-server received (`BrokerTap`, a MONITOR connection);
- the workers': every task body entered, and every delivery the run-once guard dropped,
  appended to a file per worker (it survives Redis restarts);
- the operator's: the status history (`StatusHistory`) says how many publishes the
  design allows — one, plus one per takeover of an unconfirmed claim, plus one per
  republish after the broker came back empty.

Each scenario runs without the guard (Celery runs every delivery: executions ==
deliveries, so exactly once wherever the operator published once); those where a task
id is published again (a takeover, a republish) also run with it (exactly one execution
per id, and the guard dropped exactly the extra deliveries).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from kubernetes import client

from celery_operator.api import GROUP, SCHEDULED_PLURAL, VERSION, TaskCall, format_time, parse_time
from celery_operator.devstack import CeleryWorker, ControlPlane, KubeEnv, RedisServer
from celery_operator.devstack.demo_app import Executions, read_executions
from celery_operator.dispatch.publisher import Publication, Publisher
from celery_operator.dispatch.revocations import RevokeMarks
from celery_operator.scheduling.task_lifecycle import task_id_for

from .broker_tap import BrokerTap
from .conftest import StartOperator, Tasks, wait_for_events
from .history import StatusHistory

pytestmark = [pytest.mark.integration, pytest.mark.serial]

StartWorker = Callable[..., CeleryWorker]


@pytest.fixture
def queue() -> str:
    """A queue only this test's workers listen on."""
    return f"q-{uuid.uuid4().hex[:8]}"


# Where nothing is republished (the ledger asserts it) the guard has nothing to do, and
# without it a duplicate would show as a second execution: those scenarios run without it.
NO_GUARD = pytest.mark.parametrize("guard", [False], ids=["no-guard"])


@pytest.fixture(params=[False, True], ids=["no-guard", "guard"])
def guard(request: pytest.FixtureRequest) -> bool:
    """Run the scenario with and without the worker-side run-once guard."""
    return bool(request.param)


@pytest.fixture
def execution_logs() -> list[Path]:
    """The execution log of every worker this test started."""
    return []


@pytest.fixture
def start_worker(
    broker_url: str, backend_url: str, tmp_path: Path, queue: str, guard: bool,
    execution_logs: list[Path],
) -> Iterator[StartWorker]:
    workers: list[CeleryWorker] = []
    numbers = itertools.count(1)

    def start(concurrency: int = 4) -> CeleryWorker:
        log = tmp_path / f"executions-{next(numbers)}.jsonl"
        execution_logs.append(log)
        worker = CeleryWorker(
            broker_url, backend_url, queues=(queue,), concurrency=concurrency,
            workdir=tmp_path, extra_env={"DEMO_RUN_ONCE": "1" if guard else "0"},
            execution_log=log,
        ).start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def ledger(
    broker_tap: BrokerTap, status_history: StatusHistory, execution_logs: list[Path],
    guard: bool,
) -> Ledger:
    return Ledger(broker_tap, status_history, execution_logs, guard)


class Ledger:
    """Compares, per task id, what the broker received, what the status history allows
    and what the workers executed."""

    def __init__(
        self, tap: BrokerTap, history: StatusHistory, logs: list[Path], guard: bool
    ) -> None:
        self.tap = tap
        self.history = history
        self.logs = logs
        self.guard = guard

    def executions(self, expected_runs: int, timeout: float = 30.0) -> Executions:
        """The workers' logs once `expected_runs` bodies ran (a task is Succeeded in
        status only after its body ran, so they usually already have)."""
        deadline = time.monotonic() + timeout
        seen = read_executions(*self.logs)
        while sum(seen.runs.values()) < expected_runs and time.monotonic() < deadline:
            time.sleep(0.2)
            seen = read_executions(*self.logs)
        return seen

    def check(
        self,
        items: list[dict[str, Any]],
        *,
        lost: Mapping[str, int] | None = None,
        takeovers: int | None = None,
        republishes: int | None = None,
    ) -> Executions:
        """Assert for every task id of `items` (all finished):

        1 ≤ published ≤ the publishes its status history allows; deliveries = published
        minus `lost` (messages a broker restart wiped before any worker took them);
        without the guard executions == deliveries, with it executions == 1 and the
        guard dropped deliveries - 1. `takeovers`/`republishes`, when given, are the
        exact numbers the scenario's design promises for every id.
        """
        lost = lost or {}
        ids = [str(i["status"]["taskId"]) for i in items]
        self.tap.sync()
        self.history.wait_caught_up(items)
        published = self.tap.published_of(ids)
        allowed = self.history.allowances(ids)
        delivered = {i: published[i] - lost.get(i, 0) for i in ids}
        seen = self.executions(sum(1 if self.guard else max(d, 0) for d in delivered.values()))
        wrong: dict[str, str] = {}
        for task_id in ids:
            allowance = allowed[task_id]
            runs, dropped = seen.runs[task_id], seen.dropped[task_id]
            expected_runs = 1 if self.guard else delivered[task_id]
            expected_dropped = delivered[task_id] - 1 if self.guard else 0
            account = (
                f"published {published[task_id]} (allowed {allowance.publishes}: "
                f"{allowance.takeovers} takeovers, {allowance.republishes} republishes), "
                f"lost {lost.get(task_id, 0)}, ran {runs}, guard dropped {dropped}"
            )
            honest = (
                1 <= published[task_id] <= allowance.publishes
                and (runs, dropped) == (expected_runs, expected_dropped)
                and takeovers in (None, allowance.takeovers)
                and republishes in (None, allowance.republishes)
            )
            if not honest:
                wrong[task_id] = account
        extra = sum(published.values()) - len(ids)
        print(  # shown with the failure, or with -s: what this run exercised
            f"ledger: {len(ids)} ids, {extra} extra publishes, "
            f"{sum(a.takeovers for a in allowed.values())} takeovers, "
            f"{sum(a.republishes for a in allowed.values())} republishes, "
            f"{sum(seen.dropped.values())} dropped by the guard, "
            f"{self.history.gaps} gaps in the status history"
        )
        assert not wrong, f"{len(wrong)} of {len(ids)} task ids: {dict(list(wrong.items())[:10])}"
        # Nothing ran that was not one of ours.
        assert set(seen.runs) <= set(ids)
        return seen


def _create_many(tasks: Tasks, count: int, queue: str, countdown_of: Callable[[int], int]) -> None:
    for i in range(count):
        tasks.create(f"t{i:03d}", {"task": {"name": "demo.add", "args": [i, 1], "queue": queue},
                                   "countdown": countdown_of(i)})


def _wait_phase_counts(tasks: Tasks, phases: set[str], count: int, timeout: float) -> None:
    """Wait until at least `count` objects are in one of `phases` (a bounded poll)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum((i.get("status") or {}).get("phase") in phases for i in tasks.list()) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} tasks reached {sorted(phases)} in {timeout} s")


def test_operator_sigkilled_while_200_tasks_are_due_loses_and_doubles_nothing(
    start_operator: StartOperator, tasks: Tasks, start_worker: StartWorker, queue: str,
    ledger: Ledger,
) -> None:
    start_worker(concurrency=8)
    operator = start_operator()
    _create_many(tasks, 200, queue, lambda i: 5 + (i % 30))  # due over ~30 s
    # Kill it in the middle of the stream: some ran, some are being dispatched, most
    # are still ahead.
    _wait_phase_counts(tasks, {"Succeeded"}, 40, timeout=60)
    operator.kill()
    time.sleep(6)  # due times pass while nobody is watching (the outage itself)
    start_operator()
    items = tasks.wait_all("Succeeded", 200, timeout=120)
    seen = ledger.check(items)
    for item in items:
        # Countdowns count from creation: nothing was pushed back by the restart.
        due = parse_time(item["status"]["dueTime"])
        created = parse_time(item["metadata"]["creationTimestamp"])
        assert due == created + timedelta(seconds=item["spec"]["countdown"])
        started = seen.first_start[item["status"]["taskId"]]
        assert started >= due.timestamp() - 0.05
        assert started <= due.timestamp() + 30  # late only by the outage, never by a restart


def _claimed_and_published(
    tasks: Tasks, custom: client.CustomObjectsApi, namespace: str, broker_url: str, queue: str
) -> tuple[str, str]:
    """A ScheduledTask "crashed" whose operator claimed it and published its message (both
    written here exactly as the operator writes them), then died: (task id, the broker's
    run id at the publish)."""
    created = tasks.create("crashed", {"task": {"name": "demo.add", "args": [1, 1],
                                                "queue": queue}})
    uid = created["metadata"]["uid"]
    task_id = task_id_for(uid, 1)
    now = parse_time(created["metadata"]["creationTimestamp"])
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, SCHEDULED_PLURAL, "crashed",
        {"status": {"phase": "Dispatching", "dueTime": format_time(now), "taskId": task_id,
                    "attempt": 1, "claim": {"holder": "celery-operator",
                                            "time": format_time(now)}}},
    )
    publisher = Publisher(broker_url)
    run_id = publisher.broker_run_id()
    publisher.publish(Publication(
        call=TaskCall(name="demo.add", args=(1, 1), queue=queue), task_id=task_id, eta=now,
        headers={"celeryoperator_uid": uid, "celeryoperator_namespace": namespace,
                 "celeryoperator_name": "crashed", "celeryoperator_attempt": "1"},
    ))
    publisher.close()
    return task_id, run_id


def test_a_claim_published_but_never_confirmed_is_taken_over_and_published_once_more(
    start_operator: StartOperator, tasks: Tasks, start_worker: StartWorker, queue: str,
    custom: client.CustomObjectsApi, namespace: str, broker_url: str,
    broker_tap: BrokerTap, status_history: StatusHistory, ledger: Ledger,
) -> None:
    """The documented takeover, made to happen: an operator claimed the task, published
    it and died before confirming (its claim and its message are written here exactly as
    it writes them). The next operator waits out the claim lease, reads the backend (no
    record: no worker yet), takes the claim over and publishes the same id again."""
    task_id, _ = _claimed_and_published(tasks, custom, namespace, broker_url, queue)
    start_operator()
    deadline = time.monotonic() + 30
    while status_history.allowance(task_id).takeovers < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status_history.allowance(task_id).takeovers == 1
    start_worker()
    done = tasks.wait_phase("crashed", "Succeeded", timeout=30)
    assert done["status"]["result"] == 2
    ledger.check([done], takeovers=1, republishes=0)
    assert broker_tap.published(task_id) == 2  # the crashed one's and the takeover's


@NO_GUARD
def test_a_claim_published_and_marked_sent_is_confirmed_not_published_again(
    start_operator: StartOperator, tasks: Tasks, start_worker: StartWorker, queue: str,
    custom: client.CustomObjectsApi, namespace: str, broker_url: str, backend_url: str,
    broker_tap: BrokerTap, status_history: StatusHistory, ledger: Ledger,
) -> None:
    """As above, but the operator died after its sent mark (the confirm it keeps in the
    result store, right after the broker's accept) and before any status write. The
    next operator waits out the claim lease, finds the mark for the broker's current
    lifetime and writes Queued: one publish, one execution, without the guard."""
    task_id, run_id = _claimed_and_published(tasks, custom, namespace, broker_url, queue)
    marks = RevokeMarks(backend_url)
    marks.mark_sent(task_id, run_id)
    marks.close()
    start_operator()
    queued = tasks.wait_phase("crashed", "Queued", timeout=30)
    assert queued["status"]["brokerRunId"] == run_id
    assert "sent mark" in queued["status"]["conditions"][0]["message"]
    start_worker()
    done = tasks.wait_phase("crashed", "Succeeded", timeout=30)
    assert done["status"]["result"] == 2
    ledger.check([done], takeovers=0, republishes=0)
    assert broker_tap.published(task_id) == 1


@NO_GUARD
def test_api_server_restart_loses_and_doubles_nothing(
    kube: KubeEnv, start_operator: StartOperator, tasks: Tasks, start_worker: StartWorker,
    queue: str, ledger: Ledger,
) -> None:
    if not isinstance(kube, ControlPlane):
        pytest.skip("restarting the API server needs the embedded control plane")
    start_worker()
    start_operator()
    _create_many(tasks, 20, queue, lambda i: 4 + i % 8)
    tasks.wait_all(("Scheduled", "Dispatching", "Queued", "Started", "Succeeded"), 20,
                   timeout=20)
    kube.restart_apiserver(down_seconds=5)
    items = tasks.wait_all("Succeeded", 20, timeout=90)
    # One operator that never died confirms its own claims: no takeover, one publish.
    ledger.check(items, takeovers=0, republishes=0)


def test_redis_restarted_empty_before_workers_took_the_tasks_republishes_them_once(
    redis_server: RedisServer, start_operator: StartOperator, tasks: Tasks,
    start_worker: StartWorker, queue: str, core: client.CoreV1Api, namespace: str,
    broker_tap: BrokerTap, ledger: Ledger,
) -> None:
    start_operator()
    _create_many(tasks, 10, queue, lambda i: 0)
    queued = tasks.wait_all("Queued", 10, timeout=30)  # no worker on this queue yet
    ids = [str(i["status"]["taskId"]) for i in queued]
    broker_tap.sync()
    assert broker_tap.published_of(ids) == dict.fromkeys(ids, 1)
    sessions = broker_tap.connections
    redis_server.restart_empty()
    broker_tap.wait_attached(after=sessions)
    start_worker()
    items = tasks.wait_all("Succeeded", 10, timeout=60)
    # The first message of each went down with the old server: exactly one more, to the
    # new server, and it ran exactly once (guard or not).
    assert {i: broker_tap.sessions_of(i) for i in ids} == {
        i: [sessions, sessions + 1] for i in ids
    }
    ledger.check(items, lost=dict.fromkeys(ids, 1), takeovers=0, republishes=1)
    events = wait_for_events(core, namespace, "t000",
                             lambda es: "Republished" in [r for _, r, _ in es])
    assert [r for _, r, _ in events].count("Republished") == 1


@NO_GUARD
def test_tasks_wait_for_a_worker_and_status_catches_up(
    start_operator: StartOperator, tasks: Tasks, start_worker: StartWorker, queue: str,
    core: client.CoreV1Api, namespace: str, ledger: Ledger,
) -> None:
    start_operator()
    _create_many(tasks, 5, queue, lambda i: 0)
    tasks.wait_all("Queued", 5, timeout=20)
    # The user is told why: a Warning that no worker consumes the queue (after 20 s).
    events = wait_for_events(core, namespace, "t000",
                             lambda es: ("Warning", "NoConsumer") in [(t, r) for t, r, _ in es],
                             timeout=45)
    assert ("Warning", "NoConsumer") in [(t, r) for t, r, _ in events]
    assert [i["status"]["phase"] for i in tasks.list()] == ["Queued"] * 5
    start_worker()
    items = tasks.wait_all("Succeeded", 5, timeout=30)
    ledger.check(items, takeovers=0, republishes=0)


@NO_GUARD
def test_results_produced_while_the_operator_was_down_are_harvested(
    start_operator: StartOperator, tasks: Tasks, start_worker: StartWorker, queue: str,
    results: redis_lib.Redis, ledger: Ledger,
) -> None:
    operator = start_operator()
    for i in range(5):
        tasks.create(f"slow{i}", {"task": {"name": "demo.sleep", "args": [2], "queue": queue}})
    tasks.wait_all("Queued", 5, timeout=20)
    operator.kill()
    start_worker()
    ids = [i["status"]["taskId"] for i in tasks.list()]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and results.exists(
        *[f"celery-task-meta-{i}" for i in ids]
    ) < 5:
        time.sleep(0.3)
    assert results.exists(*[f"celery-task-meta-{i}" for i in ids]) == 5
    start_operator()
    items = tasks.wait_all("Succeeded", 5, timeout=30)
    assert [i["status"]["result"] for i in items] == [2] * 5
    # Confirmed before the crash: the restarted operator only reads, never republishes.
    ledger.check(items, takeovers=0, republishes=0)


@NO_GUARD
def test_two_operators_at_once_never_dispatch_an_attempt_twice(
    start_operator: StartOperator, tasks: Tasks, start_worker: StartWorker, queue: str,
    ledger: Ledger,
) -> None:
    # Only the conditional claim stands between two operators and a double dispatch.
    start_worker()
    start_operator()
    start_operator()
    _create_many(tasks, 60, queue, lambda i: 3 + i % 5)
    items = tasks.wait_all("Succeeded", 60, timeout=90)
    ledger.check(items)
