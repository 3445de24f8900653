"""Scenario 5 — scale and restart: 10,000 ScheduledTasks (half due in two hours, half
finished) and 1,000 PeriodicTasks (half hourly, half daily in several time zones);
`scale-100k` (on request: `--only scale-100k`, ~18 minutes) is issue 17's size, 100,000
pending ScheduledTasks and 10,000 PeriodicTasks.

Measured: operator RSS (VmRSS) empty, with the finished objects, with everything, and
after a restart; operator CPU at steady state; time from a restart (process start) to
"all due times armed"; API writes a restart makes (kube-apiserver's own counters;
target 0: nothing needs anything).

"All due times armed", observably: ScheduledTasks — the operator's
`celery_operator_due_queue_armed` gauge (keys with a wake-up in the due-time queue)
equals the number of future tasks and stays there (the queue's depth also counts
superseded entries: a restart taking in a whole list at once leaves some until the
queue compacts); PeriodicTasks — its `celery_operator_periodic_tasks_planned` gauge equals
the number of PeriodicTasks (each one planned once its children are known from the
ScheduledTask watch). The later of the two. The API server's count of `LIST
scheduledtasks` requests during the restart is reported beside it (it was one per
PeriodicTask before the children came from the watch).

The finished ScheduledTasks are not run: the bench copies the status the operator
wrote for one real task that succeeded (same fields and size) onto each of them.
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from celery_operator.api import API_VERSION, PERIODIC_KIND, PERIODIC_PLURAL, SCHEDULED_PLURAL
from celery_operator.devstack.operatorproc import OperatorProcess
from celery_operator.scheduling.task_lifecycle import task_id_for

from . import measure, workload
from .settings import Sizes
from .stack import Scope, Stack, log, scope

QUEUE = "scale"
MB = 1024 * 1024


class Large:
    """Issue 17's size. Not in the default full run: its first start alone takes ~13
    minutes here (787 s measured), the whole run is held to 45."""

    @staticmethod
    def run(stack: Stack, sizes: Sizes) -> dict[str, Any]:
        return run(stack, replace(sizes, scale_future=100_000, scale_finished=0,
                                  scale_periodic=10_000))


def run(stack: Stack, sizes: Sizes) -> dict[str, Any]:
    stack.flush_redis()
    out: dict[str, Any] = {
        "future": sizes.scale_future, "finished": sizes.scale_finished,
        "periodic": sizes.scale_periodic,
    }
    with scope(stack, "scale") as sc:
        sc.worker(QUEUE, concurrency=2)
        ns = stack.namespace("scale")
        out["rss_empty_mb"], template = _empty_and_template(stack, sc, ns)
        t = time.time()
        _finished(stack, ns, template, sizes.scale_finished)
        out["prepare_finished_seconds"] = time.time() - t
        first = _first_start(stack, sc, ns, sizes)
        out["first_start"] = first
        out["restart"] = _restart(stack, sc, ns, sizes)
        stack.delete_all(ns)
    r = out["restart"]
    log(f"scale: RSS empty {out['rss_empty_mb']:.0f} MB, with {sizes.scale_finished} finished "
        f"{first['rss_finished_mb']:.0f} MB, with all {first['rss_all_mb']:.0f} MB, after "
        f"restart {r['rss_mb']:.0f} MB; steady CPU {first['steady_cpu_percent']:.1f}% / "
        f"{r['steady_cpu_percent']:.1f}%; restart armed after {r['armed_seconds']} s; "
        f"restart writes {r['apiserver_writes']} (own counter {r['own_counter']})")
    return out


def _empty_and_template(stack: Stack, sc: Scope, ns: str) -> tuple[float, dict[str, Any]]:
    """RSS of an operator with nothing to do, and one real Succeeded status to copy."""
    op = sc.operator([ns], name="operator-scale-0")
    time.sleep(3.0)
    rss = measure.rss_bytes(op.process.pid or 0) / MB
    run = workload.create_scheduled(stack, ns, QUEUE, [None])
    workload.wait_finished(op, run, timeout=60)
    op.stop()
    items = stack.list_objects(ns)
    return rss, copy.deepcopy(items[0].get("status") or {})


def _finished(stack: Stack, ns: str, template: dict[str, Any], n: int) -> None:
    past = time.time() - 3600
    bodies = [workload.scheduled_task(ns, f"done{i:05d}", QUEUE, past, (i, 1)) for i in range(n)]
    _, _, uids = stack.create_many(ns, SCHEDULED_PLURAL, bodies)
    patches = []
    for body, uid in zip(bodies, uids, strict=True):
        status = copy.deepcopy(template)
        task_id = task_id_for(uid, 1)
        status["taskId"] = task_id
        for attempt in status.get("attempts") or []:
            attempt["taskId"] = task_id
        status["dueTime"] = body["spec"]["eta"]
        patches.append((body["metadata"]["name"], status))
    stack.patch_status_many(ns, SCHEDULED_PLURAL, patches)


# Daily entries' time zones: the same local hour lands on different UTC hours.
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney",
         "America/Los_Angeles", "Asia/Kolkata")


def _periodic(ns: str, i: int, minute: int) -> dict[str, Any]:
    """Every other one hourly at `minute`; the rest daily at 03:`minute` local time in one
    of ZONES. `minute` is ~30 minutes ahead, so no entry fires during the scenario."""
    hourly = i % 2 == 0
    schedule: dict[str, Any] = {"cron": f"{minute} * * * *"} if hourly else {
        "cron": f"{minute} 3 * * *", "timeZone": ZONES[i // 2 % len(ZONES)]}
    return {
        "apiVersion": API_VERSION,
        "kind": PERIODIC_KIND,
        "metadata": {"name": f"{'hourly' if hourly else 'daily'}{i:05d}", "namespace": ns},
        "spec": {"schedule": schedule,
                 "task": {"name": "demo.add", "args": [i, 1], "queue": QUEUE}},
    }


def _patch_counts(stack: Stack) -> tuple[float, float]:
    counts = measure.apiserver_requests(stack.apiserver_metrics_fast())
    return (counts[("PATCH", "scheduledtasks", "status")],
            counts[("PATCH", "periodictasks", "status")])


def _rss_sampler(op: OperatorProcess) -> measure.Sampler:
    pid = op.process.pid or 0
    return measure.Sampler(lambda: measure.rss_bytes(pid) / MB, 1.0)


def _steady(sc: Scope, op: OperatorProcess, seconds: float) -> tuple[float, float]:
    """Operator CPU (% of one core) and RSS (MB) over a quiet window."""
    cpu = sc.cpu_window()
    time.sleep(seconds)
    result = cpu.stop()
    used = result["cpu_seconds"].get("operator", 0.0)
    return 100.0 * used / result["wall_seconds"], measure.rss_bytes(op.process.pid or 0) / MB


def _first_start(stack: Stack, sc: Scope, ns: str, sizes: Sizes) -> dict[str, Any]:
    op = sc.operator([ns], name="operator-scale-1")
    out: dict[str, Any] = {}
    with _rss_sampler(op) as rss:
        time.sleep(3.0)
        out["rss_finished_mb"] = measure.rss_bytes(op.process.pid or 0) / MB
        st_before, pt_before = _patch_counts(stack)
        minute = (datetime.now(UTC).minute + 30) % 60  # next fire time ~30 min away
        t = time.time()
        stack.create_many(ns, PERIODIC_PLURAL, [_periodic(ns, i, minute)
                                                for i in range(sizes.scale_periodic)])
        due = time.time() + 7200
        future = [workload.scheduled_task(ns, f"later{i:05d}", QUEUE, due + i, (i, 1))
                  for i in range(sizes.scale_future)]
        stack.create_many(ns, SCHEDULED_PLURAL, future)
        out["create_seconds"] = time.time() - t

        def absorbed() -> bool:
            st, pt = _patch_counts(stack)
            return st - st_before >= sizes.scale_future and pt - pt_before >= sizes.scale_periodic

        ok = measure.wait_for(absorbed, 120 + sizes.scale_future * 0.05, 0.5)
        out["absorb_seconds"] = time.time() - t
        out["notes"] = [] if ok else ["the first start did not write every first status"]
        out["steady_cpu_percent"], out["rss_all_mb"] = _steady(sc, op, sizes.scale_steady_seconds)
    out["rss_series"] = _series(rss.values(), t)
    op.stop()
    return out


def _restart(stack: Stack, sc: Scope, ns: str, sizes: Sizes) -> dict[str, Any]:
    before = measure.apiserver_requests(stack.apiserver_metrics())
    lists_before = before[("LIST", "scheduledtasks", "")]
    started = time.time()
    op = sc.operator([ns], name="operator-scale-2")
    pid = op.process.pid or 0

    # Only the operator's own gauges while it restarts: one scrape of the API server's
    # /metrics costs it ~31 ms of CPU (1.5 MB of text; ~15% of a core at this rate) and
    # the bench its parse, taken from the restart it measures. The LIST count is read
    # once, after.
    def sample() -> tuple[float, float, float]:
        text = op.metrics()
        depth = measure.metric_value(text, "celery_operator_due_queue_armed")
        planned = measure.metric_value(text, "celery_operator_periodic_tasks_planned")
        return depth, measure.rss_bytes(pid) / MB, planned

    with measure.Sampler(sample, 0.2) as sampler:
        def settled() -> bool:
            values = [v for t, v in sampler.values() if t > time.time() - 3.0]
            return len(values) >= 5 and all(
                v[0] == sizes.scale_future and v[2] == sizes.scale_periodic for v in values)

        ok = measure.wait_for(settled, 120 + sizes.scale_future * 0.02, 0.5)
    samples = sampler.values()
    armed_st = _stable_since(samples, lambda v: v[0] == sizes.scale_future)
    armed_pt = _stable_since(samples, lambda v: v[2] == sizes.scale_periodic)
    out: dict[str, Any] = {
        "armed_seconds": (max(armed_st, armed_pt) - started) if armed_st and armed_pt else None,
        "scheduledtasks_armed_seconds": (armed_st - started) if armed_st else None,
        "periodictasks_armed_seconds": (armed_pt - started) if armed_pt else None,
        "notes": [] if ok else ["the restart did not settle within the timeout"],
    }
    out["steady_cpu_percent"], out["rss_mb"] = _steady(sc, op, sizes.scale_steady_seconds)
    after = measure.apiserver_requests(stack.apiserver_metrics())
    out["own_counter"] = measure.operator_writes(op.metrics())
    op.stop()
    delta = measure.request_delta(before, after)
    out["children_lists"] = after[("LIST", "scheduledtasks", "")] - lists_before
    out["apiserver_requests"] = delta
    out["apiserver_writes"] = measure.writes_only(delta)
    out["other_writes"] = measure.writes_only(delta, ours=False)  # the API server's lease
    out["rss_series"] = _series([(t, v[1]) for t, v in samples], started)
    return out


def _stable_since(samples: list[tuple[float, Any]], ok: Any) -> float | None:
    """The time of the first sample from which `ok` holds for every later sample."""
    since = None
    for t, value in samples:
        if not ok(value):
            since = None
        elif since is None:
            since = t
    return since


def _series(samples: list[tuple[float, Any]], t0: float, points: int = 120) -> list[list[float]]:
    step = max(len(samples) // points, 1)
    return [[round(t - t0, 2), round(float(v), 1)] for t, v in samples[::step]]
