"""Scenario 10 — finished objects do not pile up: immediate ScheduledTasks created at a
steady rate (50 a second in the full run, for 10 minutes) with ttlSecondsAfterFinished,
while the operator runs them.

Measured every few seconds: the ScheduledTasks in etcd (a LIST with limit=1: one object
plus `remainingItemCount`), etcd's database size (its own /metrics: total, and in use),
and how many the operator has finished. Budget (issue 17): the count stays bounded —
at most what the rate keeps alive (rate x (ttl + the time a task takes to finish)) — and
its last minute is no higher than its first full one after the TTL starts deleting.
"""

from __future__ import annotations

import time
import urllib.request
from typing import Any, cast

from celery_operator.api import GROUP, SCHEDULED_PLURAL, VERSION

from . import measure, workload
from .settings import Sizes
from .stack import Stack, log, scope

QUEUE = "retention"
SAMPLE_EVERY = 5.0


def run(stack: Stack, sizes: Sizes) -> dict[str, Any]:
    stack.flush_redis()
    rate, seconds, ttl = sizes.retention_rate, sizes.retention_seconds, sizes.retention_ttl
    out: dict[str, Any] = {"rate": rate, "seconds": seconds, "ttl_seconds": ttl}
    with scope(stack, "retention") as sc:
        sc.worker(QUEUE, concurrency=sizes.worker_concurrency, pool=sizes.worker_pool)
        ns = stack.namespace("retention")
        op = sc.operator([ns], name="operator-retention")
        out["etcd_before"] = _etcd_size(stack)
        samples: list[dict[str, float]] = []
        began = time.time()
        created = 0
        next_sample = began
        while (now := time.time()) < began + seconds:
            # Creates owed by now, at most a second's worth at a time: where the API server
            # takes them slower than the rate, the run says so (its achieved rate), and
            # the samples stay 5 s apart instead of waiting on a backlog's creates.
            due = min(int((now - began) * rate) + 1 - created, max(1, int(rate)))
            if due > 0:
                bodies = [_task(ns, created + i, ttl) for i in range(due)]
                stack.create_many(ns, SCHEDULED_PLURAL, bodies, threads=4)
                created += due
            if now >= next_sample:
                samples.append(_sample(stack, ns, op, now - began, created))
                next_sample += SAMPLE_EVERY
            time.sleep(max(0.0, began + (created / rate) - time.time()))
        out["created"] = created
        out["create_seconds"] = time.time() - began
        out["achieved_rate"] = created / out["create_seconds"]
        # Let the last ones finish and expire: the count must come down, not only stop.
        settle_until = time.time() + ttl + 60
        while time.time() < settle_until:
            sample = _sample(stack, ns, op, time.time() - began, created)
            samples.append(sample)
            if sample["objects"] == 0:
                break
            time.sleep(SAMPLE_EVERY)
        out["etcd_after"] = _etcd_size(stack)
        stack.delete_all(ns)
    out["samples"] = samples
    out.update(_verdict(samples, min(rate, out["achieved_rate"]), ttl, seconds))
    log(f"retention: {created} tasks at {out['achieved_rate']:.1f}/s (asked {rate:.0f}/s) for "
        f"{seconds:.0f} s, ttl {ttl} s: objects "
        f"max {out['max_objects']}, last minute of creates max {out['last_minute_max']} "
        f"(bound {out['bound']}), after {out['final_objects']}; etcd db "
        f"{out['etcd_before']['total_mb']:.1f} → {out['etcd_after']['total_mb']:.1f} MB "
        f"(in use {out['etcd_before']['in_use_mb']:.1f} → {out['etcd_after']['in_use_mb']:.1f})")
    return out


def _task(ns: str, i: int, ttl: int) -> dict[str, Any]:
    body = workload.scheduled_task(ns, f"r{i:06d}", QUEUE, None, (i, 1))
    body["spec"]["ttlSecondsAfterFinished"] = ttl
    return body


def _count(stack: Stack, ns: str) -> int:
    resp = stack.custom.list_namespaced_custom_object(
        GROUP, VERSION, ns, SCHEDULED_PLURAL, limit=1, _preload_content=False,
        _request_timeout=60,
    )
    body = measure.json_loads(cast(Any, resp).data)
    return len(body["items"]) + int(body["metadata"].get("remainingItemCount") or 0)


def _sample(stack: Stack, ns: str, op: Any, at: float, created: int) -> dict[str, float]:
    finished = sum(v for _, v in measure.samples(op.metrics(), "celery_operator_finished_total"))
    return {"t": round(at, 1), "created": created, "objects": _count(stack, ns),
            "finished": finished, **_etcd_size(stack)}


def _etcd_size(stack: Stack) -> dict[str, float]:
    url = f"http://127.0.0.1:{stack.kube.etcd_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    mb = 1024 * 1024
    return {
        "total_mb": measure.metric_value(text, "etcd_mvcc_db_total_size_in_bytes") / mb,
        "in_use_mb": measure.metric_value(text, "etcd_mvcc_db_total_size_in_use_in_bytes") / mb,
    }


def _verdict(samples: list[dict[str, float]], rate: float, ttl: int,
             seconds: float) -> dict[str, Any]:
    """The bound: what the rate keeps alive for the TTL plus a minute of finishing (the
    operator's lag behind the creates is part of what is judged, so it is not added). The
    rate is the one achieved, where creates went slower than asked."""
    bound = int(rate * (ttl + 60))
    during = [s for s in samples if s["t"] <= seconds]
    last_minute = [s["objects"] for s in during if s["t"] >= seconds - 60]
    return {
        "bound": bound,
        "max_objects": int(max((s["objects"] for s in samples), default=0)),
        "last_minute_max": int(max(last_minute, default=0)),
        "final_objects": int(samples[-1]["objects"]) if samples else None,
        "bounded": bool(last_minute) and max(last_minute) <= bound,
    }
