"""Scenario 2 — spread precision: tasks due evenly over a window (2,000 over 60 s).

Same measurements and the same native baseline (`send_task(eta=...)`) as the burst.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery_operator.devstack.operatorproc import OperatorProcess

from . import workload
from .settings import Sizes
from .stack import Scope, Stack, log, scope

QUEUE = "spread"
LEAD = 2.0


def due_times(start: float, n: int, window: float) -> list[float]:
    return [start + window * i / max(n - 1, 1) for i in range(n)]


def run(stack: Stack, sizes: Sizes) -> dict[str, Any]:
    stack.flush_redis()
    n, window = sizes.spread_tasks, sizes.spread_window
    with scope(stack, "spread") as sc:
        sc.worker(QUEUE, concurrency=sizes.worker_concurrency, pool=sizes.worker_pool)
        native = _native(stack, n, window)
        op_run, info = operator_side(stack, sc, n, window, label="spread")
        stack.delete_all(info["namespace"])
    result = {
        "tasks": n,
        "window_seconds": window,
        "worker": sizes.worker_desc,
        "native": workload.lateness_summary(native),
        "operator": workload.lateness_summary(op_run),
        **{k: v for k, v in info.items() if k not in ("logs", "namespace", "faults")},
    }
    _print(result)
    return result


def _native(stack: Stack, n: int, window: float) -> workload.Run:
    start = time.time() + 4.0 + n * 0.001
    run = workload.send_native(stack, QUEUE, due_times(start, n, window))
    workload.wait_started(stack, run, timeout=start + window - time.time() + 60)
    return run


class Operators:
    """The operator of one run, across kills and restarts."""

    def __init__(self, sc: Scope, namespace: str, label: str) -> None:
        self.sc = sc
        self.namespace = namespace
        self.label = label
        self.started: list[OperatorProcess] = []

    def start(self) -> OperatorProcess:
        op = self.sc.operator([self.namespace], name=f"operator-{self.label}-{len(self.started)}")
        self.started.append(op)
        return op

    @property
    def current(self) -> OperatorProcess:
        return self.started[-1]

    @property
    def logs(self) -> list[Path]:
        return [op.process.log_path for op in self.started]


def operator_side(
    stack: Stack, sc: Scope, n: int, window: float, *, label: str, queue: str = QUEUE,
    faults: Callable[[Operators, float], Any] | None = None, recorder: bool = False,
) -> tuple[workload.Run, dict[str, Any]]:
    """Create the spread as ScheduledTasks and measure it; `faults(operators, start)`
    runs (blocking) while the tasks come due: the churn scenario's kills and restarts."""
    ns = stack.namespace(label)
    ops = Operators(sc, ns, label)
    ops.start()
    start = time.time() + 8.0 + n * 0.015
    patches = workload.status_patches(stack)
    run = workload.create_scheduled(stack, ns, queue, due_times(start, n, window))
    workload.wait_settled(stack, run, patches, timeout=max(start - LEAD - time.time(), 1.0))
    cpu = sc.cpu_window()
    fault_log = faults(ops, start) if faults is not None else None
    workload.wait_started(stack, run, timeout=start + window - time.time() + 90,
                          recorder=recorder)
    if faults is None:
        workload.wait_finished(ops.current, run, timeout=90 + n * 0.02)
    else:
        # Tasks left unfinished by the faults never finish: do not wait long for them.
        workload.wait_final(stack, ns, run, timeout=20 + n * 0.015)
    cpu.stop()
    for op in ops.started:
        op.stop()
    workload.collect_published(run, ops.logs)
    info = {
        "namespace": ns,
        "create_seconds": run.created[1] - run.created[0],
        "settled_before_first_due": (start - run.settled_at) if run.settled_at else None,
        "all_finished_after_last_due": (run.finished_at - start - window)
        if run.finished_at else None,
        "cpu": cpu.result if faults is None else None,  # processes were replaced
        "faults": fault_log,
        "logs": [str(p) for p in ops.logs],
    }
    return run, info


def _print(result: dict[str, Any]) -> None:
    log(f"spread {result['tasks']} over {result['window_seconds']:.0f} s (ms)  "
        "   p50      p95      p99      max")
    log(f"  native   start lateness      {_row(result['native']['start'])}")
    log(f"  operator start lateness      {_row(result['operator']['start'])}")
    log(f"  operator publish lateness    {_row(result['operator'].get('publish', {}))}")


def _row(summary: dict[str, Any]) -> str:
    return " ".join(
        f"{summary[k] * 1000:8.1f}" if isinstance(summary.get(k), float) else "       -"
        for k in ("p50", "p95", "p99", "max")
    )
