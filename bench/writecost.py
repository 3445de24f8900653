"""Scenario 13 — what one API write of each kind costs the API server and etcd (issue 17).

Every periodic run today is several writes (a child created, its claim and final status,
the parent's status once or twice, the oldest run deleted); Proposal A in design.md would
make it one write of the parent's status. Whether that can meet the periodic budget (4x
celery beat's CPU) depends on what that one write costs, and a PeriodicTask's status is a
larger object, checked by more CEL rules, than a ScheduledTask's. This scenario measures
each kind alone, with no operator running: N writes of one kind from a thread pool,
the API server's and etcd's CPU over them, divided by N. One watch per kind stays open
in the namespace, as the operator's would (each write is also sent to a watcher).

Bodies are shaped as the operator writes them: a run child with its labels, annotation
and ownerReference; a claim; a final status with a result; a parent's status recording a
run (its ten recent runs, next five times, the active run).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from celery_operator.api import (
    API_VERSION,
    GROUP,
    PERIODIC_KIND,
    PERIODIC_PLURAL,
    SCHEDULED_PLURAL,
    VERSION,
    format_time,
)
from celery_operator.api.names import PARENT_LABEL, SCHEDULED_TIME_ANNOTATION

from . import measure
from .settings import Sizes
from .stack import Scope, Stack, log, scope
from .watch import AddedWatch

QUEUE = "writecost"
THREADS = 8
RECENT = 10  # runs a parent's status lists (periodic_plan.RECENT_RUNS_KEPT)
NEXT = 5  # next fire times it shows (periodic_plan.NEXT_TIMES_SHOWN)
IDLE_SECONDS = 10.0

# The kinds, in the order measured (each needs the objects the one before made).
KINDS = ("parent status PATCH", "child create", "child claim PATCH", "child final PATCH",
         "child delete")


def run(stack: Stack, sizes: Sizes) -> dict[str, Any]:
    n = sizes.writecost_writes
    ns = stack.namespace("writecost")
    out: dict[str, Any] = {"writes_per_kind": n, "threads": THREADS}
    with scope(stack, "writecost") as sc, \
            AddedWatch(stack.api, ns, PERIODIC_PLURAL), AddedWatch(stack.api, ns):
        parents = [f"p{i:05d}" for i in range(n)]
        _, _, uids = stack.create_many(ns, PERIODIC_PLURAL, [_parent(ns, p) for p in parents])
        children = [f"{p}-1" for p in parents]
        now = datetime.now(UTC)
        kinds: dict[str, Callable[[str, int], object]] = {
            "parent status PATCH": lambda name, i: _patch_status(
                stack, ns, PERIODIC_PLURAL, name, _run_recorded(name, now)),
            "child create": lambda name, i: _create(
                stack, ns, _child(ns, name, parents[i], uids[i], now)),
            "child claim PATCH": lambda name, i: _patch_status(
                stack, ns, SCHEDULED_PLURAL, name, _claim(name, now)),
            "child final PATCH": lambda name, i: _patch_status(
                stack, ns, SCHEDULED_PLURAL, name, _final(now)),
            "child delete": lambda name, i: stack.custom.delete_namespaced_custom_object(
                GROUP, VERSION, ns, SCHEDULED_PLURAL, name, _preload_content=False),
        }
        out["idle"] = _idle(sc)
        for kind in KINDS:
            names = parents if kind.startswith("parent") else children
            out[kind] = _measure(sc, kind, names, kinds[kind], out["idle"])
            r = out[kind]
            log(f"writecost: {kind}: API server {r['apiserver_ms']:.2f} ms + etcd "
                f"{r['etcd_ms']:.2f} ms per write ({r['rate']:.0f}/s)")
    stack.delete_all(ns)
    return out


def _idle(sc: Scope) -> dict[str, float]:
    """The API server's and etcd's CPU per second with nothing written: subtracted."""
    cpu = sc.cpu_window()
    time.sleep(IDLE_SECONDS)
    used = cpu.stop()
    wall = used["wall_seconds"] or IDLE_SECONDS
    return {role: used["cpu_seconds"].get(role, 0.0) / wall for role in ("kube-apiserver", "etcd")}


def _measure(sc: Scope, kind: str, names: Sequence[str], write: Callable[[str, int], object],
             idle: dict[str, float]) -> dict[str, Any]:
    before = measure.apiserver_requests(sc.stack.apiserver_metrics_fast())
    cpu = sc.cpu_window()
    with ThreadPoolExecutor(THREADS, thread_name_prefix="writecost") as pool:
        list(pool.map(write, names, range(len(names))))
    used = cpu.stop()
    after = measure.apiserver_requests(sc.stack.apiserver_metrics_fast())
    wall = float(used["wall_seconds"])
    n = len(names)

    def per_write_ms(role: str) -> float:
        spent = float(used["cpu_seconds"].get(role, 0.0)) - idle.get(role, 0.0) * wall
        return max(spent, 0.0) / n * 1000.0

    return {
        "writes": n,
        "wall_seconds": wall,
        "rate": n / wall if wall else 0.0,
        "apiserver_ms": per_write_ms("kube-apiserver"),
        "etcd_ms": per_write_ms("etcd"),
        "cpu": used,
        "requests": measure.writes_only(measure.request_delta(before, after)),
    }


def _create(stack: Stack, ns: str, body: dict[str, Any]) -> None:
    stack.custom.create_namespaced_custom_object(GROUP, VERSION, ns, SCHEDULED_PLURAL, body,
                                                 _preload_content=False)


def _patch_status(stack: Stack, ns: str, plural: str, name: str, status: dict[str, Any]) -> None:
    stack.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, plural, name, {"status": status}, _preload_content=False)


def _task(i: int = 1) -> dict[str, Any]:
    return {"name": "demo.add", "args": [i, 1], "queue": QUEUE}


def _parent(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION, "kind": PERIODIC_KIND,
        "metadata": {"name": name, "namespace": ns},
        "spec": {"schedule": {"cron": "* * * * *"}, "task": _task()},
    }


def _ready(reason: str, message: str, now: datetime, status: str = "True") -> list[dict[str, Any]]:
    return [{"type": "Ready", "status": status, "reason": reason, "message": message,
             "lastTransitionTime": format_time(now), "observedGeneration": 1}]


def _run_recorded(name: str, now: datetime) -> dict[str, Any]:
    """The status write of a run created: what periodic_plan writes for `* * * * *`."""
    minute = now.replace(second=0, microsecond=0)
    runs = [minute - timedelta(minutes=k) for k in range(RECENT - 1, -1, -1)]
    upcoming = [minute + timedelta(minutes=k) for k in range(1, NEXT + 1)]
    return {
        "schedule": "every minute",
        "lastScheduleTime": format_time(minute, fraction=True),
        "lastSuccessfulTime": format_time(runs[-2]),
        "totalRuns": 1000,
        "nextScheduleTimes": [format_time(t) for t in upcoming],
        "active": [{"name": f"{name}-{int(minute.timestamp())}",
                    "scheduledTime": format_time(minute)}],
        "recentRuns": [{"name": f"{name}-{int(t.timestamp())}", "scheduledTime": format_time(t),
                        "phase": "Pending" if t == minute else "Succeeded"} for t in runs],
        "conditions": _ready("Scheduled", f"next run at {format_time(upcoming[0])}", now),
        "observedGeneration": 1,
    }


def _child(ns: str, name: str, parent: str, uid: str, now: datetime) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION, "kind": "ScheduledTask",
        "metadata": {
            "name": name, "namespace": ns,
            "labels": {PARENT_LABEL: parent},
            "annotations": {SCHEDULED_TIME_ANNOTATION: format_time(now)},
            "ownerReferences": [{"apiVersion": API_VERSION, "kind": PERIODIC_KIND,
                                 "name": parent, "uid": uid, "controller": True}],
        },
        "spec": {"task": _task(), "eta": format_time(now + timedelta(hours=1))},
    }


def _claim(name: str, now: datetime) -> dict[str, Any]:
    return {
        "phase": "Dispatching", "taskId": str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
        "attempt": 1,
        "claim": {"holder": "writecost-bench", "time": format_time(now, fraction=True)},
        "conditions": _ready("Dispatching", "claimed attempt 1", now, status="False"),
        "observedGeneration": 1,
    }


def _final(now: datetime) -> dict[str, Any]:
    return {
        "phase": "Succeeded", "claim": None, "result": "2",
        "startTime": format_time(now, fraction=True),
        "completionTime": format_time(now, fraction=True), "worker": "celery@writecost",
        "conditions": _ready("Succeeded", "task succeeded", now),
    }
