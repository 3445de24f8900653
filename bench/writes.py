"""Scenario 4 — write cost: API writes per task lifecycle, from the kube-apiserver's
own /metrics (`apiserver_request_total` by verb and resource, fetched with
`kubectl get --raw /metrics`), next to the operator's own counter
(`celery_operator_api_writes_total`). Budget: ≤ 3 status writes per immediate task
that succeeds.
"""

from __future__ import annotations

import time
from typing import Any

from . import measure, workload
from .settings import Sizes
from .stack import Stack, log, scope

QUEUE = "writes"


def run(stack: Stack, sizes: Sizes) -> dict[str, Any]:
    stack.flush_redis()
    n = sizes.writes_tasks
    out: dict[str, Any] = {"tasks": n}
    with scope(stack, "writes") as sc:
        sc.worker(QUEUE, concurrency=sizes.worker_concurrency, pool=sizes.worker_pool)
        variants = (("immediate", None),
                    (f"countdown {sizes.writes_countdown:.0f} s", sizes.writes_countdown))
        for label, delay in variants:
            out[label] = _variant(stack, sc, n, label, delay)
            r = out[label]
            log(f"writes ({label}): {r['status_writes_per_task']:.2f} status writes/task, "
                f"{r['events_per_task']:.2f} Events/task, all writes by the operator "
                f"{r['operator_writes_per_task']:.2f}/task (apiserver), own counter "
                f"{r['own_counter']}")
    return out


def _variant(stack: Stack, sc: Any, n: int, label: str, delay: float | None) -> dict[str, Any]:
    ns = stack.namespace("writes")
    op = sc.operator([ns], name=f"operator-writes-{label.split()[0]}")
    before = measure.apiserver_requests(stack.apiserver_metrics())
    due = time.time() + delay if delay is not None else None
    run = workload.create_scheduled(stack, ns, QUEUE, [due] * n)
    workload.wait_finished(op, run, timeout=60 + (delay or 0) + n * 0.2)
    time.sleep(3.0)  # Events are posted fire-and-forget: let the last ones land
    after = measure.apiserver_requests(stack.apiserver_metrics())
    own = measure.operator_writes(op.metrics())
    op.stop()
    delta = measure.request_delta(before, after)
    writes = measure.writes_only(delta)
    ours = dict(writes)
    ours["POST scheduledtasks"] = ours.get("POST scheduledtasks", 0) - n  # the bench's creates
    ours = {k: v for k, v in ours.items() if v}
    phases: dict[str, int] = {}
    for item in stack.list_objects(ns):
        phase = str((item.get("status") or {}).get("phase"))
        phases[phase] = phases.get(phase, 0) + 1
    stack.delete_all(ns)
    return {
        "apiserver_requests": delta,
        "operator_writes": ours,
        "own_counter": own,
        "status_writes_per_task": ours.get("PATCH scheduledtasks/status", 0) / n,
        "events_per_task": ours.get("POST events", 0) / n,
        "operator_writes_per_task": sum(ours.values()) / n,
        "phases": phases,
        "notes": run.notes,
    }
