"""Prometheus metrics of the operator (served by `celery-operator run --metrics-port`)."""

from __future__ import annotations

import threading

from prometheus_client import Counter, Gauge, Histogram

# The `queue` label comes from spec.task.queue, free text any tenant writes. Every
# distinct value is a time series the process (and Prometheus) keeps forever, so a
# tenant could grow them without bound: the first QUEUE_LABELS_MAX queues this process
# sees keep their name, every later one is counted under OTHER_QUEUE.
QUEUE_LABELS_MAX = 50
OTHER_QUEUE = "other"
DEFAULT_QUEUE = "celery"  # Celery's task_default_queue: where a task without a queue goes


class QueueLabels:
    """Label values for queues: the first `limit` distinct names, then OTHER_QUEUE."""

    def __init__(self, limit: int = QUEUE_LABELS_MAX) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def label(self, name: str | None) -> str:
        queue = name or DEFAULT_QUEUE
        with self._lock:
            if queue in self._seen:
                return queue
            if len(self._seen) < self.limit:
                self._seen.add(queue)
                return queue
        return OTHER_QUEUE


_QUEUE_LABELS = QueueLabels()


def queue_label(name: str | None) -> str:
    """The value for a `queue` label: the queue's name (None: Celery's default queue)
    for the first QUEUE_LABELS_MAX distinct queues this process labels, "other" after."""
    return _QUEUE_LABELS.label(name)


DISPATCH_LATENESS = Histogram(
    "celery_operator_dispatch_lateness_seconds",
    "Publish time minus due time (negative: published ahead, within the dispatch lead).",
    buckets=(-2, -1, -0.5, -0.1, 0, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
DISPATCHED = Counter(
    "celery_operator_dispatched_total",
    "Task messages published (queue: see queue_label; app: <namespace>/<name> of the "
    "CeleryApp, cluster/<name> of a ClusterCeleryApp, default for the flags).",
    ["queue", "app"],
)
FINISHED = Counter(
    "celery_operator_finished_total", "ScheduledTasks that reached a final phase.",
    ["queue", "outcome", "app"],
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
DUE_QUEUE_ARMED = Gauge(
    "celery_operator_due_queue_armed",
    "ScheduledTasks with a wake-up in the due-time queue (each once: the depth also "
    "counts superseded entries until the queue compacts them).",
)
TASKS_PACKED = Gauge(
    "celery_operator_scheduled_tasks_packed",
    "ScheduledTasks held packed (compressed JSON, a sixth of their decoded memory) because they "
    "wait with nothing to do for a while: for their due time, a retry or their TTL.",
)
PERIODIC_PLANNED = Gauge(
    "celery_operator_periodic_tasks_planned",
    "PeriodicTasks planned since this process started (their next runs are armed); after "
    "a start it reaches the number of PeriodicTasks once their children are known.",
)
TRACKED_TASKS = Gauge(
    "celery_operator_tracked_tasks", "Dispatched tasks whose result the operator is waiting for."
)
RESULT_READ_FAILURES = Counter(
    "celery_operator_result_read_failures_total",
    "Batched result-backend reads that failed (unreachable, refused, no table): the app's "
    "tasks wait and are read again with backoff.",
    ["app"],
)
EVENTS_DROPPED = Counter(
    "celery_operator_events_dropped_total",
    "Normal Events not posted because of the rate limit (Warnings are never dropped).",
)
LEADER = Gauge(
    "celery_operator_leader",
    "1 while this process holds the leader Lease and acts, 0 while it stands by.",
)
LEADER_TRANSITIONS = Counter(
    "celery_operator_leader_transitions_total",
    "Times this process started or stopped leading.",
)

# Task names (spec.task.name) are free text too: capped the same way, in a set of their own.
TASK_LABELS_MAX = 100
_TASK_LABELS = QueueLabels(TASK_LABELS_MAX)


def task_label(name: str) -> str:
    """The value for a `task` label: the first TASK_LABELS_MAX task names, "other" after."""
    return _TASK_LABELS.label(name)


FINISHED_BY_TASK = Counter(
    "celery_operator_task_outcomes_total",
    "ScheduledTasks that reached a final phase, by task name (task: see task_label).",
    ["task", "outcome"],
)
RETRIES = Counter(
    "celery_operator_retries_total",
    "Retries recorded on ScheduledTasks (phase Retrying written), by queue.",
    ["queue"],
)
MISSED_RUNS = Counter(
    "celery_operator_missed_runs_total",
    "Fire times of PeriodicTasks that were missed or skipped (status.missedRuns grew).",
    ["namespace"],
)
NO_CONSUMER = Gauge(
    "celery_operator_no_consumer",
    "Tasks still Queued after a NoConsumer warning (no running worker consumed their "
    "queue), by app and queue; 0 once they moved on.",
    ["app", "queue"],
)
APP_UNREACHABLE = Gauge(
    "celery_operator_app_unreachable",
    "1 while the broker or the result backend of a CeleryApp/ClusterCeleryApp does not "
    "answer the operator's probe, 0 while both do.",
    ["app"],
)
BROKER_QUEUE_DEPTH = Gauge(
    "celery_operator_broker_queue_depth",
    "Messages waiting in a named queue of an app's broker, as its last probe read them "
    "(queue: see queue_label).",
    ["app", "queue"],
)
API_WRITE_FAILURES = Counter(
    "celery_operator_api_write_failures_total",
    "Status writes to the Kubernetes API that failed (not conflicts: those are retried), "
    "by verb and reason (the error's class).",
    ["verb", "reason"],
)
RECONCILE_ERRORS = Counter(
    "celery_operator_reconcile_errors_total",
    "Reconcile steps that failed unexpectedly (logged with a traceback, retried later).",
)


def forget_app(app: str) -> None:
    """Drop the per-app gauges of a deleted app: a stale 1 would alert forever."""
    for gauge in (APP_UNREACHABLE, BROKER_QUEUE_DEPTH):
        gauge.remove_by_labels({"app": app})
