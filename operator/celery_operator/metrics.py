"""Prometheus metrics of the operator (served by `celery-operator run --metrics-port`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DISPATCH_LATENESS = Histogram(
    "celery_operator_dispatch_lateness_seconds",
    "Publish time minus due time (negative: published ahead, within the dispatch lead).",
    buckets=(-2, -1, -0.5, -0.1, 0, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
DISPATCHED = Counter(
    "celery_operator_dispatched_total", "Task messages published.", ["queue"]
)
FINISHED = Counter(
    "celery_operator_finished_total", "ScheduledTasks that reached a final phase.",
    ["queue", "outcome"],
)
API_WRITES = Counter(
    "celery_operator_api_writes_total", "Writes to the Kubernetes API.", ["verb", "resource"]
)
WRITE_CONFLICTS = Counter(
    "celery_operator_write_conflicts_total", "Conditional status writes lost to a newer version."
)
DUE_QUEUE_DEPTH = Gauge(
    "celery_operator_due_queue_depth", "Entries in the in-memory due-time queue."
)
TRACKED_TASKS = Gauge(
    "celery_operator_tracked_tasks", "Dispatched tasks whose result the operator is waiting for."
)
EVENTS_DROPPED = Counter(
    "celery_operator_events_dropped_total",
    "Normal Events not posted because of the rate limit (Warnings are never dropped).",
)
