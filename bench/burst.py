"""Scenario 1 — burst precision: N tasks due at the same instant T.

Operator side: N ScheduledTasks with `eta: T`, created well before T; we wait until the
operator holds all of them (its due-time queue depth is N) before T arrives. Measured:
publish lateness (publish time from the operator's "published ..." log line minus T) and
worker start lateness (the demo app's start timestamp minus T).
Baseline: the same N sent with `send_task(eta=T)` straight to the same worker.
"""

from __future__ import annotations

import time
from typing import Any

from . import measure, workload
from .settings import Sizes
from .stack import Scope, Stack, log, profile_summary, scope

QUEUE = "burst"
LEAD = 2.0  # the operator's default --dispatch-lead
AT_DUE = 0.5  # the "at T" CPU window runs from T - 0.5 s until every task started


def run(stack: Stack, sizes: Sizes) -> dict[str, Any]:
    stack.flush_redis()
    out: dict[str, Any] = {"worker": sizes.worker_desc, "sizes": {}}
    with scope(stack, "burst") as sc:
        sc.worker(QUEUE, concurrency=sizes.worker_concurrency, pool=sizes.worker_pool)
        for n in sizes.burst_sizes:
            repeats = sizes.burst_repeats(n)
            native_runs, operator_runs, extra = [], [], []
            for r in range(repeats):
                native, native_cpu = _native(stack, sc, n)
                op_run, info = _operator(stack, sc, n, r)
                native_runs.append(workload.lateness_summary(native))
                info["native_cpu_at_due"] = native_cpu
                operator_runs.append(workload.lateness_summary(op_run))
                extra.append(info)
                _print(n, r, native_runs[-1], operator_runs[-1], info)
            out["sizes"][str(n)] = {
                "repeats": repeats,
                "native": {"start": measure.median_summary([x["start"] for x in native_runs])},
                "operator": {
                    "publish": measure.median_summary([x["publish"] for x in operator_runs
                                                       if "publish" in x]),
                    "start": measure.median_summary([x["start"] for x in operator_runs]),
                },
                "runs": [{"native": _slim(a), "operator": _slim(b), **c}
                         for a, b, c in zip(native_runs, operator_runs, extra, strict=True)],
            }
    return out


def _native(stack: Stack, sc: Scope, n: int) -> tuple[workload.Run, dict[str, Any]]:
    due = time.time() + 4.0 + n * 0.001
    run = workload.send_native(stack, QUEUE, [due] * n)
    time.sleep(max(due - AT_DUE - time.time(), 0.0))
    cpu = sc.cpu_window()
    workload.wait_started(stack, run, timeout=due - time.time() + 60 + n * 0.02)
    return run, cpu.stop()


def _operator(
    stack: Stack, sc: Scope, n: int, repeat: int, operator_args: tuple[str, ...] = ()
) -> tuple[workload.Run, dict[str, Any]]:
    ns = stack.namespace(f"burst-{n}-r{repeat}")
    op = sc.operator([ns], *operator_args, name=f"operator-{n}-r{repeat}{''.join(operator_args)}")
    try:
        # Creates run at ~150/s while the operator absorbs them (one Scheduled write
        # each, ~130/s on 2 cores): give both ample time before T - lead. ("Settled" =
        # one status write per object: with burst-aware claiming, claims may be among them.)
        # 15 ms an object: on a machine twice as slow (as it was at times), 10,000 creates
        # took 130 s; at 10 ms a 1,000 burst settled only 0.1 s before T, and was late.
        due = time.time() + 5.0 + n * 0.015
        patches = workload.status_patches(stack)
        # CPU from the first create until all started: a burst may be claimed long before T.
        cpu = sc.cpu_window()
        run = workload.create_scheduled(stack, ns, QUEUE, [due] * n)
        workload.wait_settled(stack, run, patches, timeout=max(due - LEAD - time.time(), 1.0))
        # Around T: who uses the CPU while the worker should be starting the tasks.
        time.sleep(max(due - AT_DUE - time.time(), 0.0))
        cpu_at_due = sc.cpu_window()
        profile = sc.profiler(op.process.pid or 0, f"burst-{n}-at-due") if (
            n >= 1000 and repeat == 0) else None
        workload.wait_started(stack, run, timeout=due - time.time() + 60 + n * 0.02)
        cpu_at_due.stop()
        profiled = profile_summary(profile)
        cpu.stop()
        # The burst's final status writes come later (the operator paces them); they are
        # not what this scenario measures (see throughput and write cost), so stop here.
        metrics_text = op.metrics()
    finally:
        op.stop()
    workload.collect_published(run, [op.process.log_path])
    info = {
        "create_seconds": run.created[1] - run.created[0],
        "settled_before_due": (due - run.settled_at) if run.settled_at else None,
        "all_started_after_due": (max(run.started.values()) - due) if run.started else None,
        "lateness_histogram": measure.histogram_buckets(
            metrics_text, "celery_operator_dispatch_lateness_seconds"),
        "cpu": cpu.result,
        "cpu_at_due": cpu_at_due.result,
        "profile": profiled,
    }
    stack.delete_all(ns)
    return run, info


def _slim(summary: dict[str, Any]) -> dict[str, Any]:
    """A repeat's figures without the quantile curves (the median curve is kept)."""
    return {k: ({kk: vv for kk, vv in v.items() if kk != "curve"} if isinstance(v, dict) else v)
            for k, v in summary.items()}


def _ms(summary: dict[str, Any], key: str) -> str:
    value = summary.get(key)
    return f"{value * 1000:8.1f}" if isinstance(value, float) else "       -"


def _print(n: int, r: int, native: dict[str, Any], operator: dict[str, Any],
           info: dict[str, Any]) -> None:
    log(f"burst N={n} repeat {r + 1}: (ms)            p50      p95      p99      max")
    log(f"  native   start lateness        {_row(native['start'])}")
    log(f"  operator start lateness        {_row(operator['start'])}")
    if "publish" in operator:
        log(f"  operator publish lateness      {_row(operator['publish'])}")
    log(f"  creates {info['create_seconds']:.1f} s; settled {info['settled_before_due']} s "
        f"before T; all started {info['all_started_after_due']} s after T")
    log(f"  CPU s from the first create until all started: {info['cpu']['cpu_seconds']}")
    log(f"  CPU s from T-0.5 s until all started: native {info['native_cpu_at_due']['cpu_seconds']}"
        f" / operator {info['cpu_at_due']['cpu_seconds']}")


def _row(summary: dict[str, Any]) -> str:
    return " ".join(_ms(summary, k) for k in ("p50", "p95", "p99", "max"))
