"""Scenario 3 — throughput: N immediate ScheduledTasks created as fast as the API
server takes them (a thread pool of kubernetes clients); time until all are Queued
and all Succeeded.

Baselines: the bare create rate of the same objects with no operator running (the
API server's limit on this machine, through the same client), and raw `send_task` of
N tasks to the same worker (Celery's limit).
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery_operator.api import SCHEDULED_PLURAL, parse_time

from . import measure, workload
from .settings import Sizes
from .stack import CREATE_THREADS, Stack, log, profile_summary, scope

QUEUE = "throughput"


def run(stack: Stack, sizes: Sizes) -> dict[str, Any]:
    stack.flush_redis()
    n = sizes.throughput_tasks
    out: dict[str, Any] = {"tasks": n, "create_threads": CREATE_THREADS,
                           "worker": sizes.worker_desc}
    out["bare_create"] = _bare_create(stack, n)
    log(f"throughput: bare creates {out['bare_create']['per_second']:.0f}/s (no operator)")
    with scope(stack, "throughput") as sc:
        sc.worker(QUEUE, concurrency=sizes.worker_concurrency, pool=sizes.worker_pool)
        out["native"] = _native(stack, n)
        log(f"throughput: raw send_task {out['native']['sent_per_second']:.0f}/s sent, "
            f"all {n} started after {out['native']['all_started_seconds']:.1f} s "
            f"({out['native']['per_second']:.0f}/s)")
        out["operator"] = _operator(stack, sc, n)
    op = out["operator"]
    log(f"throughput: operator creates {op['create_per_second']:.0f}/s, all Queued after "
        f"{op['all_queued_seconds']:.1f} s, all started {op['all_started_seconds']:.1f} s, "
        f"all Succeeded {op['all_succeeded_seconds']:.1f} s ({op['per_second']:.0f} tasks/s)")
    return out


def _bare_create(stack: Stack, n: int) -> dict[str, Any]:
    """The API server's own limit: its CPU (and etcd's) per create is the physical cost
    of one request here, against which the operator's requests per task are judged."""
    ns = stack.namespace("bare-create")
    bodies = [workload.scheduled_task(ns, f"t{i:05d}", QUEUE, None, (i, 1)) for i in range(n)]
    cpu = measure.CpuWindow(dict(stack.pids())).start()
    start, end, _ = stack.create_many(ns, SCHEDULED_PLURAL, bodies)
    cpu.stop()
    stack.delete_all(ns)
    spent = cpu.result["cpu_seconds"]
    return {
        "seconds": end - start, "per_second": n / (end - start), "cpu": cpu.result,
        "apiserver_cpu_ms_per_create": 1000 * spent.get("kube-apiserver", 0) / n,
        "etcd_cpu_ms_per_create": 1000 * spent.get("etcd", 0) / n,
    }


def _native(stack: Stack, n: int) -> dict[str, Any]:
    start = time.time()
    run = workload.send_native(stack, QUEUE, [None] * n)
    sent = time.time()
    workload.wait_started(stack, run, timeout=60 + n * 0.05)
    last = max(run.started.values()) if run.started else float("nan")
    return {
        "sent_seconds": sent - start,
        "sent_per_second": n / (sent - start),
        "all_started_seconds": last - start,
        "per_second": n / (last - start),
        "missing": run.missing,
    }


def _operator(stack: Stack, sc: Any, n: int) -> dict[str, Any]:
    ns = stack.namespace("throughput")
    op = sc.operator([ns], name="operator-throughput")
    profile = sc.profiler(op.process.pid, "throughput")
    cpu = sc.cpu_window()
    run = workload.create_scheduled(stack, ns, QUEUE, [None] * n)
    workload.wait_started(stack, run, timeout=120 + n * 0.1)
    workload.wait_finished(op, run, timeout=120 + n * 0.05)
    cpu.stop()
    op.stop()
    start = run.created[0]
    items = stack.list_objects(ns)
    queued = [parse_time(s["queuedTime"]).timestamp() for s in
              ((i.get("status") or {}) for i in items) if s.get("queuedTime")]
    phases: dict[str, int] = {}
    for item in items:
        phase = str((item.get("status") or {}).get("phase"))
        phases[phase] = phases.get(phase, 0) + 1
    stack.delete_all(ns)
    succeeded_after = (run.finished_at or float("nan")) - start
    return {
        "create_seconds": run.created[1] - start,
        "create_per_second": n / (run.created[1] - start),
        "all_queued_seconds": max(queued) - start if queued else None,
        "all_started_seconds": max(run.started.values()) - start if run.started else None,
        "all_succeeded_seconds": succeeded_after,
        "per_second": n / succeeded_after,
        "phases": phases,
        "cpu": cpu.result,
        "operator_cpu_ms_per_task": 1000 * cpu.result["cpu_seconds"].get("operator", 0) / n,
        "apiserver_cpu_ms_per_task": 1000 * cpu.result["cpu_seconds"].get("kube-apiserver", 0)
        / n,
        "profile": profile_summary(profile),
        "notes": run.notes,
        "cores": os.cpu_count(),  # the bound on this machine: what the rest costs per task
    }


