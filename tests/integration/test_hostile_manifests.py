"""Hostile and careless manifests against the real API server, with the operator running.

One operator watches two namespaces. In `hostile`, every case of hostile_cases.CASES is
applied in one batch, next to a few attacks that need more than one step (a forged
status.taskId, a forged PeriodicTask child, an undecodable result record). In `bystander`,
tasks that have nothing to do with the attacks run. Then, for every case: refused at
apply with the field named, or accepted and reported within 10 s with nothing published
(counted on the broker itself), or — odd but legitimate input — run exactly once with a
status within the schema's limits. Over a 40 s window nothing retries faster than a
backoff, nothing is published that no object explains, and the bystanders (one of them in
the hostile namespace) run on time. A manifest nested deeper than Python's recursion limit
gets an operator of its own: if it brings the operator down, it hides no other result.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from celery_operator.api import (
    GROUP,
    PERIODIC_PLURAL,
    SCHEDULED_PLURAL,
    VERSION,
    format_time,
    parse_time,
)
from celery_operator.devstack import CeleryWorker, KubeEnv, RedisServer
from celery_operator.devstack.demo_app import STARTED_KEY
from celery_operator.devstack.operatorproc import OperatorProcess
from celery_operator.kube.client import api_message
from celery_operator.scheduling.task_lifecycle import task_id_for

from ..conftest import BROKER_DB
from .broker_tap import BrokerTap
from .conftest import StartOperator
from .hostile_cases import CASES, DEEP, FORGED_ID, PT, ST, Case, Outcome
from .hostile_watch import Row, WriteWatch, snapshot

pytestmark = [pytest.mark.integration, pytest.mark.serial]

REPORT_WITHIN = 10.0  # seconds from apply to Invalid / Stalled / Warning Event
RUN_WITHIN = 40.0  # seconds from apply to the final phase of a RUNS case
DUE_IN = 24  # bystanders' countdown: due after every attack has been made
GARBAGE_BY = 16.0  # seconds after the batch: the result record is made garbage by then
ON_TIME = 3.0  # seconds a bystander may start after its due time (2 busy cores)
WINDOW = (5.0, 45.0)  # seconds after the batch: the window retries are counted in
MAX_RETRIES = 4  # writes, Warning Events or failed reconciles of one object in WINDOW
MAX_RUN_WRITES = 6  # status writes of a task that runs once: claim, confirm, start, finish
ATTEMPTS = 3  # task ids counted per object: its first attempts
POLL = 0.5

PARENT = "parent-pt"  # a healthy PeriodicTask whose child label is forged
PERIODIC_LABEL = "celeryoperator.dev/periodic-task"
SCHEDULED_TIME = "celeryoperator.dev/scheduled-time"


@dataclass
class Seen:
    """What happened to one case."""

    case: Case
    refusal: str | None = None
    applied_at: float = 0.0
    reported_after: float | None = None
    finished_after: float | None = None
    row: Row | None = None
    published: int = 0
    children: int = 0
    events: list[tuple[str, str, str]] = field(default_factory=list)
    writes: int = 0
    window_retries: dict[str, int] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.refusal is None

    def describe(self) -> str:
        row = self.row
        return (
            f"{self.case.name[:60]} ({self.case.why}): phase {row.phase if row else None}, "
            f"published {self.published}, children {self.children}, writes {self.writes}, "
            f"events {[r for _, r, _ in self.events]}, status {json.dumps(row.status)[:600]}"
            if row else f"{self.case.name[:60]}: "
            + (f"refused: {self.refusal}" if self.refusal else "accepted, never read back")
        )


@dataclass
class Run:
    """The outcome of the whole batch, read by the tests below."""

    seen: dict[str, Seen]
    rows: dict[str, dict[tuple[str, str], Row]]  # namespace -> final snapshot
    scenario: dict[str, Any]
    published: Counter[str]
    explained: set[str]
    operator_alive: bool
    operator_log: str


# --- the batch ------------------------------------------------------------------------------


def _new_namespace(kube: KubeEnv, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", name)
    return name


def _apply(
    kube: KubeEnv, custom: client.CustomObjectsApi, namespace: str, case: Case
) -> str | None:
    """Apply one case the way a user would; the refusal message, or None if accepted."""
    plural = SCHEDULED_PLURAL if case.kind == ST else PERIODIC_PLURAL
    if case.raw is not None:
        # Sent byte for byte: `kubectl create --raw` does not decode the JSON.
        proc = kube.kubectl("create", "--raw", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}"
                            f"/{plural}", "-f", "-", input=case.raw, check=False)
        return proc.stderr.strip() or "refused" if proc.returncode else None
    if case.kind == PT:
        proc = kube.kubectl("apply", "-n", namespace, "-f", "-",
                            input=json.dumps(case.manifest()), check=False)
        return proc.stderr.strip() or "refused" if proc.returncode else None
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural,
                                               case.manifest())
    except ApiException as exc:
        return f"{exc.status}: {api_message(exc)}"
    return None


def _create(custom: client.CustomObjectsApi, namespace: str, name: str, spec: dict[str, Any],
            kind: str = ST, **metadata: Any) -> dict[str, Any]:
    plural = SCHEDULED_PLURAL if kind == ST else PERIODIC_PLURAL
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind,
            "metadata": {"name": name, **metadata}, "spec": spec}
    obj: dict[str, Any] = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, body)
    return obj


def _events(core: client.CoreV1Api, namespace: str) -> dict[str, list[tuple[str, str, str]]]:
    by_object: dict[str, list[tuple[str, str, str]]] = {}
    for e in core.list_namespaced_event(namespace).items:
        by_object.setdefault(e.involved_object.name, []).append(
            (e.type, e.reason, e.message or ""))
    return by_object


def _reported(row: Row, events: list[tuple[str, str, str]]) -> bool:
    return (row.phase == "Invalid" or row.condition("Stalled") == "True"
            or any(type_ == "Warning" for type_, _, _ in events))


def _task_ids(uid: str) -> set[str]:
    return {task_id_for(uid, attempt) for attempt in range(1, ATTEMPTS + 1)}


def _poll(until: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if until():
            return True
        time.sleep(POLL)
    return until()


def _failures_in_log(text: str, row: Row, namespace: str) -> int:
    """Warnings and errors the operator logged about this object (failed reconciles)."""
    marks = (row.uid, f"{namespace}/{row.name}")
    return sum(
        1 for line in text.splitlines()
        if re.search(r" (WARNING|ERROR) ", line) and any(m in line for m in marks)
    )


class Stack:
    """The operator over both namespaces, the broker tap and the write watches."""

    def __init__(self, kube: KubeEnv, redis_server: RedisServer, broker_url: str,
                 backend_url: str, workdir: Path) -> None:
        self.kube = kube
        self.hostile = _new_namespace(kube, "hostile")
        self.bystander = _new_namespace(kube, "bystander")
        self.tap = BrokerTap("127.0.0.1", redis_server.port, db=BROKER_DB).start()
        self.operator = OperatorProcess(
            kube.kubeconfig, broker_url, backend_url, workdir=workdir, name="hostile-operator",
            extra_args=["--namespace", self.hostile, "--namespace", self.bystander,
                        "--claim-lease", "5"],
        ).start()
        self.log_path = workdir / "hostile-operator.log"
        self.watches = [WriteWatch(kube, self.hostile, plural, workdir)
                        for plural in (SCHEDULED_PLURAL, PERIODIC_PLURAL)]

    def watch(self) -> None:
        """Start the write watches; they list first, so once each has listed an object
        that exists already, it is live."""
        for watch in self.watches:
            watch.start()
        assert _poll(lambda: all(w.live() for w in self.watches), 15), "watches did not start"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        for watch in self.watches:
            watch.stop()
        self.operator.stop()
        self.tap.stop()

    def modified(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for watch in self.watches:
            total.update(watch.modified())
        return total


@pytest.fixture(scope="module")
def run(kube: KubeEnv, redis_server: RedisServer, broker_url: str, backend_url: str,
        celery_worker: CeleryWorker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    workdir = tmp_path_factory.mktemp("hostile")
    stack = Stack(kube, redis_server, broker_url, backend_url, workdir)
    try:
        outcome = _batch(stack, backend_url)
        # One line per case, for whoever reads a failure: what the API server and the
        # operator did with it.
        (workdir / "cases.txt").write_text("\n".join(
            f"{s.describe()} | reported after {s.reported_after}, window {s.window_retries}"
            for s in outcome.seen.values()))
        yield outcome
    finally:
        stack.stop()


def _batch(stack: Stack, backend_url: str) -> Run:
    kube, h, b = stack.kube, stack.hostile, stack.bystander
    api = kube.api_client()
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    results = redis_lib.Redis.from_url(backend_url)
    scenario: dict[str, Any] = {}

    # Healthy objects first: the write watches list them, and are then live.
    on_time = {"task": {"name": "demo.add", "args": [20, 22]}, "countdown": DUE_IN}
    _create(custom, b, "bystander", on_time)
    _create(custom, h, "neighbour", on_time)
    _create(custom, h, PARENT, {
        "schedule": {"interval": "5s"}, "task": {"name": "demo.add", "args": [0, 0]},
        "concurrencyPolicy": "Replace", "successfulRunsHistoryLimit": 0,
        "failedRunsHistoryLimit": 0,
    }, kind=PT)
    stack.watch()

    # The batch: every case at once, as a careless CI pipeline would apply them.
    seen = {case.name: Seen(case) for case in CASES}

    def apply(case: Case) -> None:
        seen[case.name].refusal = _apply(kube, custom, h, case)
        seen[case.name].applied_at = time.monotonic()

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(apply, CASES))

    current: dict[tuple[str, str], Row] = {}
    events: dict[str, list[tuple[str, str, str]]] = {}

    def settle() -> bool:
        """Read everything once; note what each case shows; True when all are judged."""
        nonlocal current, events
        current, events = snapshot(kube, h), _events(core, h)
        now = time.monotonic()
        done = True
        for s in seen.values():
            row = current.get((s.case.kind, s.case.name))
            if not s.accepted or row is None:
                done &= not s.accepted
                continue
            s.row, s.events = row, events.get(row.name, [])
            if s.reported_after is None and _reported(row, s.events):
                s.reported_after = now - s.applied_at
            if Outcome.RUNS in s.case.expect:
                if s.finished_after is None and row.phase == s.case.phase:
                    s.finished_after = now - s.applied_at
                done &= s.finished_after is not None or now - s.applied_at > RUN_WITHIN
            else:
                done &= s.reported_after is not None or now - s.applied_at > REPORT_WITHIN
        planted = scenario.get("garbage_planted")
        if planted is not None and "garbage_reported" not in scenario and any(
                t == "Warning" and r != "NoConsumer" for t, r, _ in events.get("garbage", [])):
            scenario["garbage_reported"] = now - planted
        return done

    def wait(until: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `until`, judging the batch on every round (its clock is running). A step
        that does not come is noted, not fatal: the tests below say what it broke."""
        def judged_then(until: Callable[[], bool] = until) -> bool:
            settle()
            return until()

        if not _poll(judged_then, timeout):
            scenario.setdefault("missed", []).append(what)

    # Multi-step attacks. Victims run in the bystander namespace; the attacker writes
    # their task ids into its own status (tenants may patch `scheduledtasks/status`),
    # then cancels or deletes its own object. The victims are due later, so a revoke
    # sent for their ids would reach the worker first and make it drop them.
    victims = {v: _create(custom, b, v, {"task": {"name": "demo.sleep", "args": [1]},
                                         "countdown": 8})
               for v in ("victim-revoke", "victim-delete")}
    scenario["victim_ids"] = {v: task_id_for(o["metadata"]["uid"], 1)
                              for v, o in victims.items()}
    for victim in victims:
        _create(custom, h, f"forger-{victim}", {"task": {"name": "demo.add", "args": [0, 0]},
                                                "countdown": 3600})
    # A ScheduledTask dressed as PARENT's child: label and annotation, no ownerReference.
    _create(custom, h, "forged-child", {"task": {"name": "demo.sleep", "args": [2]}},
            labels={PERIODIC_LABEL: PARENT},
            annotations={SCHEDULED_TIME: format_time(parse_time("2026-01-01T00:00:00Z"))})
    # A task waiting in a queue nobody consumes, whose result record will be garbage.
    _create(custom, h, "garbage", {"task": {"name": "demo.add", "args": [1, 1],
                                            "queue": f"unconsumed-{h}"}})

    def phase(name: str) -> str | None:
        row = current.get((ST, name))
        return row.phase if row else None

    wait(lambda: all(phase(f"forger-{v}") == "Scheduled" for v in victims), 15,
         "the forgers were never Scheduled")
    for victim, task_id in scenario["victim_ids"].items():
        forger = f"forger-{victim}"
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, h, SCHEDULED_PLURAL, forger,
            {"status": {"phase": "Started", "taskId": task_id, "attempt": 1}})
        if victim == "victim-revoke":
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, h, SCHEDULED_PLURAL, forger,
                {"spec": {"revoke": {"terminate": True, "signal": "SIGKILL"}}})
        else:
            custom.delete_namespaced_custom_object(GROUP, VERSION, h, SCHEDULED_PLURAL, forger)

    wait(lambda: phase("garbage") == "Queued", 15, "the garbage task was never Queued")

    # The garbage record stops nothing else: it is planted once the other tasks have run
    # (their outcomes are judged on their own), and before the bystanders are due.
    def others_done() -> bool:
        runs = all(s.finished_after is not None for s in seen.values()
                   if s.accepted and Outcome.RUNS in s.case.expect)
        finished = {"Succeeded", "Failed", "Revoked", "Expired"}
        bystanders = snapshot(kube, b)
        return runs and phase("forged-child") in finished and all(
            bystanders[(ST, v)].phase in finished for v in victims)

    _poll(lambda: (settle() and False) or others_done(),
          max(0.0, started + GARBAGE_BY - time.monotonic()))
    garbage_row = current.get((ST, "garbage"))
    garbage_key = f"celery-task-meta-{task_id_for(garbage_row.uid if garbage_row else '', 1)}"
    results.set(garbage_key, b"\x80\x04\x95\x0b\x00garbage\x94.")  # a pickle, say
    scenario["garbage_planted"] = time.monotonic()

    # Then a window: what each object does once it has been judged.
    wait(lambda: time.monotonic() >= started + WINDOW[0], WINDOW[0] + 30, "window start")
    writes_before, events_before, log_before = stack.modified(), events, stack.log()
    wait(lambda: time.monotonic() >= started + WINDOW[1], WINDOW[1], "window end")
    writes_after, events_after, log_after = stack.modified(), events, stack.log()
    if time.monotonic() - started > WINDOW[1] + 10:
        pytest.fail(f"the batch took {time.monotonic() - started:.0f} s: the window is off")

    # The healthy parent fires every 5 s: its writes prove the watches saw the window.
    assert writes_after[PARENT] > writes_before[PARENT], "the write watches saw nothing"
    results.delete(garbage_key)
    final = {h: current, b: snapshot(kube, b)}
    stack.tap.sync()
    published = stack.tap.all_published()
    explained = {i for w in stack.watches for uid in w.uids() for i in _task_ids(uid)}
    for row in final[b].values():
        explained |= _task_ids(row.uid)

    def warnings(by_object: dict[str, list[tuple[str, str, str]]], name: str) -> int:
        return sum(1 for e in by_object.get(name, []) if e[0] == "Warning")

    window = {
        row.name: {
            "writes": writes_after[row.name] - writes_before[row.name],
            "warnings": warnings(events_after, row.name) - warnings(events_before, row.name),
            "failed reconciles": _failures_in_log(log_after, row, h)
            - _failures_in_log(log_before, row, h),
        }
        for row in final[h].values()
    }
    for s in seen.values():
        row = final[h].get((s.case.kind, s.case.name))
        if row is None:
            continue
        s.row, s.events, s.writes = row, events_after.get(row.name, []), writes_after[row.name]
        s.window_retries = window[row.name]
        ids = _task_ids(row.uid)
        if row.kind == PT:
            kids = [r for r in final[h].values()
                    if row.uid in r.owners or r.labels.get(PERIODIC_LABEL) == row.name]
            s.children = len(kids)
            for kid in kids:
                ids |= _task_ids(kid.uid)
        s.published = sum(published[i] for i in ids)
    scenario["window"] = window
    return Run(seen, final, scenario, published, explained, stack.operator.process.running(),
               stack.log())


# --- the table --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.name[:40] for c in CASES])
def test_hostile_manifest(run: Run, case: Case) -> None:
    s = run.seen[case.name]
    if not s.accepted:
        assert Outcome.REFUSED in case.expect, (
            f"refused, but it should be {sorted(o.value for o in case.expect)}: {s.refusal}")
        assert case.field in (s.refusal or ""), f"refusal does not name {case.field}: {s.refusal}"
        return
    assert s.row is not None, f"{case.name} was accepted but cannot be read back"
    if Outcome.RUNS in case.expect:
        assert s.finished_after is not None, f"never reached {case.phase}: {s.describe()}"
        assert s.published == 1, f"published {s.published} times: {s.describe()}"
        assert case.check is not None
        case.check(s.row.status)
        assert s.writes <= MAX_RUN_WRITES, f"{s.writes} status writes: {s.describe()}"
        return
    assert Outcome.REPORTED in case.expect, (
        f"accepted, but it should have been refused naming {case.field}: {s.describe()}")
    assert s.reported_after is not None and s.reported_after <= REPORT_WITHIN, (
        f"not reported within {REPORT_WITHIN} s: {s.describe()}")
    assert s.published == 0 and s.children == 0, f"something was published: {s.describe()}"
    assert max(s.window_retries.values()) <= MAX_RETRIES, (
        f"retries faster than a backoff in {WINDOW[1] - WINDOW[0]:.0f} s: "
        f"{s.window_retries}: {s.describe()}")


# --- the attacks that take more than one step -------------------------------------------------


def test_the_attacks_could_be_made(run: Run) -> None:
    assert not run.scenario.get("missed"), run.scenario["missed"]


@pytest.mark.parametrize("then", ["revoke", "delete"])
def test_a_forged_status_task_id_cannot_cancel_another_tenants_task(run: Run, then: str) -> None:
    """The forger writes the victim's task id into its own status, then cancels (spec.revoke
    with terminate) or deletes its own object: the victim must run all the same."""
    victims = run.rows[next(ns for ns in run.rows if ns.startswith("bystander"))]
    victim = f"victim-{then}"
    row = victims[(ST, victim)]
    assert row.phase == "Succeeded", f"{victim}: {row.status}"
    assert row.status.get("result") == 1
    task_id = run.scenario["victim_ids"][victim]
    assert run.published[task_id] == 1, (victim, run.published[task_id])
    forger = run.scenario["window"].get(f"forger-{victim}")  # None: deleted by the attack
    assert forger is None or max(forger.values()) <= MAX_RETRIES, forger


def test_a_scheduledtask_with_a_periodic_child_label_is_not_adopted(run: Run) -> None:
    hostile = run.rows[next(ns for ns in run.rows if ns.startswith("hostile"))]
    forged = hostile.get((ST, "forged-child"))
    assert forged is not None, "the forged child was deleted (pruned as a run of the parent)"
    assert forged.phase == "Succeeded", f"forged child: {forged.status}"
    assert run.published[task_id_for(forged.uid, 1)] == 1
    parent = hostile[(PT, PARENT)]
    listed = {r.get("name") for key in ("active", "recentRuns")
              for r in parent.status.get(key) or []}
    assert "forged-child" not in listed, parent.status
    retries = run.scenario["window"]["forged-child"]
    assert max(retries.values()) <= MAX_RETRIES, retries
    # The parent itself kept working: its own children were created and ran.
    assert parent.status.get("totalRuns", 0) >= 5, parent.status


def test_an_undecodable_result_record_is_reported_and_blocks_nothing(run: Run) -> None:
    reported = run.scenario.get("garbage_reported")
    hostile = run.rows[next(ns for ns in run.rows if ns.startswith("hostile"))]
    assert reported is not None and reported <= REPORT_WITHIN, (
        f"no Warning within {REPORT_WITHIN} s of an undecodable record for the task: "
        f"{hostile[(ST, 'garbage')].status}")
    retries = run.scenario["window"]["garbage"]
    assert max(retries.values()) <= MAX_RETRIES, retries


# --- everyone else ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["bystander", "hostile"])
def test_other_objects_run_on_time(run: Run, results: redis_lib.Redis, where: str) -> None:
    namespace = next(ns for ns in run.rows if ns.startswith(where))
    name = "bystander" if where == "bystander" else "neighbour"
    row = run.rows[namespace][(ST, name)]
    assert row.phase == "Succeeded" and row.status.get("result") == 42, row.status
    due = parse_time(str(row.status["dueTime"])).timestamp()
    started = float(results.get(STARTED_KEY + str(row.status["taskId"])) or 0)
    assert due - 0.05 <= started <= due + ON_TIME, f"started {started - due:+.2f} s from due"
    assert run.published[task_id_for(row.uid, 1)] == 1


def test_nothing_is_published_that_no_object_explains(run: Run) -> None:
    rogue = {i: n for i, n in run.published.items() if i not in run.explained}
    assert not rogue, f"published under ids no object owns (e.g. {FORGED_ID}): {rogue}"


def test_the_operator_survives_the_batch(run: Run) -> None:
    assert run.operator_alive, run.operator_log[-4000:]
    tracebacks = run.operator_log.count("Traceback (most recent call last)")
    assert tracebacks == 0, run.operator_log[-6000:]


# --- a manifest that could bring the whole operator down ------------------------------------


def test_a_manifest_nested_deeper_than_pythons_recursion_limit_stalls_nothing(
    kube: KubeEnv, namespace: str, start_operator: StartOperator, broker_tap: BrokerTap,
    celery_worker: CeleryWorker, custom: client.CustomObjectsApi, core: client.CoreV1Api,
) -> None:
    operator = start_operator()
    refusal = _apply(kube, custom, namespace, DEEP)
    if refusal is not None:
        assert DEEP.field in refusal, refusal
    _create(custom, namespace, "after-deep", {"task": {"name": "demo.add", "args": [2, 2]}})
    rows: dict[tuple[str, str], Row] = {}

    def settled() -> bool:
        nonlocal rows
        if not operator.process.running():
            return True
        rows = snapshot(kube, namespace)
        deep = rows.get((ST, DEEP.name))
        reported = deep is None or _reported(deep, _events(core, namespace).get(DEEP.name, []))
        return reported and rows[(ST, "after-deep")].phase == "Succeeded"

    _poll(settled, 20)
    assert operator.process.running(), f"the operator died: {operator.log_tail(30)}"
    assert rows[(ST, "after-deep")].phase == "Succeeded", rows[(ST, "after-deep")].status
    deep = rows.get((ST, DEEP.name))
    if deep is not None:
        assert _reported(deep, _events(core, namespace).get(DEEP.name, [])), deep.status
        broker_tap.sync()
        assert sum(broker_tap.published_of(_task_ids(deep.uid)).values()) == 0

