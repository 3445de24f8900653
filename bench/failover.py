"""Scenario 8 — failover: the spread workload under two operators sharing one Lease.

Three runs of the same workload (tasks due every `window / n` seconds): no fault, the
leader SIGKILLed in the middle of the window, the leader stopped with SIGTERM in the
middle (graceful handover). Reported: start lateness (p50/p99/max) of the tasks due
within ±30 s of the fault, the failover time (fault → the standby's
`celery_operator_leader` gauge at 1, polled every 50 ms), and the CPU of the standby
next to the leader's in the run without a fault.

Budgets (read from the report, not enforced): SIGKILL failover ≤ lease duration + 2 s;
graceful handover ≤ 2 s; a standby's CPU ≤ 25% of the leader's.
"""

from __future__ import annotations

import signal
import time
from typing import Any

from celery_operator.devstack.operatorproc import OperatorProcess

from . import measure, workload
from .settings import Sizes
from .spread import due_times
from .stack import Scope, Stack, log, profile_summary, scope

QUEUE = "failover"
AROUND = 30.0  # seconds either side of the fault whose tasks are measured
LEASE = 15.0


def run(stack: Stack, sizes: Sizes) -> dict[str, Any]:
    n, window = sizes.spread_tasks, sizes.spread_window
    out: dict[str, Any] = {"tasks": n, "window_seconds": window, "lease_seconds": LEASE}
    for fault in ("none", "sigkill", "sigterm"):
        stack.flush_redis()
        with scope(stack, f"failover-{fault}") as sc:
            sc.worker(QUEUE, concurrency=sizes.worker_concurrency, pool=sizes.worker_pool)
            out[fault] = _one(stack, sc, n, window, fault)
            stack.delete_all(out[fault].pop("namespace"))
    _print(out)
    return out


def _operator(sc: Scope, namespace: str, name: str, lease: str) -> OperatorProcess:
    proc = OperatorProcess(
        sc.stack.kube.kubeconfig, sc.stack.broker_url, sc.stack.backend_url, workdir=sc.dir,
        extra_args=["--namespace", namespace], name=name, lease=lease,
        extra_env={"POD_NAME": name, "POD_UID": "bench"},
    )
    sc.defer(proc.stop)
    sc.procs[name] = proc.process
    return proc.start(timeout=90)


def _one(stack: Stack, sc: Scope, n: int, window: float, fault: str) -> dict[str, Any]:
    ns = stack.namespace(f"failover-{fault}")
    first, second = (_operator(sc, ns, f"op-{x}", lease=ns) for x in "ab")
    if not measure.wait_for(lambda: first.leader() or second.leader(), 30, 0.1):
        raise RuntimeError("no operator took the Lease within 30 s")
    leader, standby = (first, second) if first.leader() else (second, first)
    start = time.time() + 8.0 + n * 0.015
    run = workload.create_scheduled(stack, ns, QUEUE, due_times(start, n, window))
    time.sleep(max(start - 2.0 - time.time(), 0.0))
    cpu = sc.cpu_window()
    # BENCH_PROFILE=1: where each one's CPU goes, in the run without a fault.
    profiles = {role: sc.profiler(op.process.pid or 0, f"failover-{role}")
                for role, op in (("leader", leader), ("standby", standby))} if (
        fault == "none") else {}
    fault_at = start + window / 2
    time.sleep(max(fault_at - time.time(), 0.0))
    failover = None
    if fault != "none":
        began = time.monotonic()
        if fault == "sigkill":
            leader.kill()
        else:
            leader.signal(signal.SIGTERM)
        if measure.wait_for(standby.leader, LEASE + 15, 0.05):
            failover = time.monotonic() - began
    workload.wait_started(stack, run, timeout=start + window - time.time() + 90)
    cpu.stop()
    profiled = {role: profile_summary(p) for role, p in profiles.items() if p is not None}
    near = {t: d for t, d in run.due.items() if abs(d - fault_at) <= AROUND}
    lateness = [run.started[t] - d for t, d in near.items() if t in run.started]
    used = cpu.result.get("cpu_seconds", {})
    result: dict[str, Any] = {
        "namespace": ns,
        "start": measure.summary(lateness),
        "missing": sum(1 for t in near if t not in run.started),
        "failover_seconds": failover,
        "notes": run.notes,
    }
    if fault == "none":
        result["cpu_seconds"] = {"leader": used.get(leader.name),
                                 "standby": used.get(standby.name)}
        result["cpu_standby_share"] = measure.ratio(used.get(standby.name),
                                                    used.get(leader.name))
        if profiled:
            result["profiles"] = profiled
    return result


def _print(out: dict[str, Any]) -> None:
    log(f"failover: {out['tasks']} tasks over {out['window_seconds']:.0f} s, fault in the "
        "middle; start lateness of tasks due ±30 s around it (ms)   p50      p99      max")
    for fault in ("none", "sigkill", "sigterm"):
        r = out[fault]
        row = " ".join(f"{r['start'][k] * 1000:8.1f}" if k in r["start"] else "       -"
                       for k in ("p50", "p99", "max"))
        took = f"{r['failover_seconds']:.2f} s" if r["failover_seconds"] is not None else "-"
        log(f"  {fault:8s} {row}   missing {r['missing']}, leader moved in {took}")
    cpu = out["none"].get("cpu_seconds") or {}
    log(f"  CPU seconds without a fault: leader {cpu.get('leader')}, standby "
        f"{cpu.get('standby')}")
