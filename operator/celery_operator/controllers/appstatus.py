"""The status of every CeleryApp and ClusterCeleryApp: is it usable, who works for it.

Each app is probed about every 10 s (with backoff while it fails): Ready when its broker
(run id) and result backend answer through its own backend; the workers seen on its
broker with the queues they consume; the depth of its named queues; its tasks by phase
(a callback of the engine). The status is patched only when it changed, and a change of
Ready posts an Event. An app that cannot be used at all gets Ready=False with the
problem, its field named. Every text passes through redact_urls_in: no password leaves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from celery_operator import metrics
from celery_operator.api.apps import CELERY_DEFAULT_QUEUE, CeleryAppSpec
from celery_operator.api.conditions import READY, get_condition, set_condition
from celery_operator.api.names import CELERYAPP_PLURAL, CLUSTER_CELERYAPP_PLURAL
from celery_operator.config import redact_urls_in
from celery_operator.controllers.appresolve import app_label
from celery_operator.controllers.apps import AppDirectory, AppView
from celery_operator.controllers.kubeio import resource_version
from celery_operator.dispatch.backend import CeleryBackend
from celery_operator.kube.client import Gone, Rejected
from celery_operator.scheduling.backoff import Backoff

logger = logging.getLogger(__name__)

STATUS_INTERVAL_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 120.0
INSPECT_TIMEOUT_SECONDS = 1.0
ERROR_MAX_LENGTH = 1024
# The CRD's limits on status lists and names.
WORKERS_MAX = 256
LIST_MAX = 64
NAME_MAX = 255

PhaseCounts = Callable[[str], Mapping[str, int]]
NO_RESULTS = ("broker answers; results are not available from this result backend "
              "(rpc://): task states come from worker events (run workers with -E)")


class StatusKube(Protocol):
    def patch_app_status(
        self, plural: str, namespace: str | None, name: str, status: Mapping[str, Any],
        *, uid: str | None = None,
    ) -> dict[str, Any]: ...

    def post_event(
        self, obj: Mapping[str, Any], *, type_: str, reason: str, message: str
    ) -> None: ...


@dataclass(frozen=True)
class Probe:
    """What one look at an app's broker and backend found."""

    error: str | None  # redacted; None: broker and result backend both answered
    reason: str = "Reachable"
    workers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    queues: tuple[tuple[str, int], ...] = ()
    # False: the result backend keeps nothing the operator reads (rpc://): events only
    results: bool = True


def probe_queues(spec: CeleryAppSpec | None) -> list[str]:
    """The app's queues with a name (globs have no depth): its default, its allowed."""
    if spec is None:
        return []
    names = {spec.defaults.queue or CELERY_DEFAULT_QUEUE}
    for glob in spec.policy.allowed_queues or ():
        if "*" not in glob and "?" not in glob:
            names.add(glob)
    return sorted(names)


def probe(backend: CeleryBackend, queues: list[str]) -> Probe:
    """Ask the broker and the result backend (blocking; run in a thread)."""
    try:
        backend.broker_run_id()
    except Exception as exc:
        return Probe(error=_error("broker unreachable", exc), reason="BrokerUnreachable")
    try:
        backend.check_result_backend()
    except Exception as exc:
        return Probe(error=_error("result backend unreachable", exc), reason="BackendUnreachable")
    try:
        try:
            workers = backend.worker_queues(INSPECT_TIMEOUT_SECONDS)
        except Exception:
            # A pooled connection from before a broker restart fails once; a fresh one
            # is taken on the second try.
            workers = backend.worker_queues(INSPECT_TIMEOUT_SECONDS)
        depths = tuple((q, backend.queue_length(q)) for q in queues)
    except Exception as exc:
        return Probe(error=_error("broker failed", exc), reason="BrokerUnreachable")
    return Probe(
        error=None,
        workers=tuple(sorted((h, tuple(qs)) for h, qs in workers.items())),
        queues=depths,
        results=backend.results_available,
    )


def _error(what: str, exc: Exception) -> str:
    return redact_urls_in(f"{what}: {type(exc).__name__}: {exc}")[:ERROR_MAX_LENGTH]


def desired_status(
    view: AppView, found: Probe | None, counts: Mapping[str, int], now: datetime
) -> dict[str, Any]:
    """The status the app should have. `found` is None for an app that cannot be used."""
    current = view.body.get("status") or {}
    generation = (view.body.get("metadata") or {}).get("generation")
    problem = view.state.problem
    last_error = current.get("lastError")
    if found is None:
        reason = problem.reason if problem else "AppNotReady"
        message = redact_urls_in(problem.message if problem else "not read yet")
        ready, last_error = "False", message
    elif found.error is not None:
        reason, message, ready, last_error = found.reason, found.error, "False", found.error
    elif not found.results:
        reason, message, ready = "Reachable", NO_RESULTS, "True"
    else:
        reason, message, ready = "Reachable", "broker and result backend answer", "True"
    status: dict[str, Any] = {
        "conditions": set_condition(
            current.get("conditions"), type=READY, status=ready, reason=reason,
            message=message, generation=generation, now=now,
        ),
        "workers": [
            {"hostname": h[:NAME_MAX], "queues": [q[:NAME_MAX] for q in qs[:LIST_MAX]]}
            for h, qs in (found.workers if found is not None else ())[:WORKERS_MAX]
        ],
        "workerCount": len(found.workers) if found is not None else 0,
        "queues": [
            {"name": q[:NAME_MAX], "depth": d}
            for q, d in (found.queues if found is not None else ())[:LIST_MAX]
        ],
        "tasks": {phase: n for phase, n in sorted(counts.items()) if n},
    }
    if isinstance(generation, int):
        status["observedGeneration"] = generation
    if last_error:
        status["lastError"] = str(last_error)[:ERROR_MAX_LENGTH]
    return status


def status_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any] | None:
    """The merge patch from `current` to `desired` (None: nothing changed). A phase
    count that dropped to zero is removed with null: a merge patch merges maps."""
    if all(current.get(k) == v for k, v in desired.items()):
        return None
    patch = dict(desired)
    tasks = dict(desired.get("tasks") or {})
    for phase in current.get("tasks") or {}:
        tasks.setdefault(phase, None)
    patch["tasks"] = tasks
    return patch


def ready_changed(
    current: Mapping[str, Any], desired: Mapping[str, Any]
) -> tuple[str, str, str] | None:
    """(Event type, reason, message) when Ready changed status, else None."""
    before = get_condition(current.get("conditions"), READY)
    after = get_condition(desired.get("conditions"), READY)
    if after is None or (before is not None and before.get("status") == after.get("status")):
        return None
    if after.get("status") == "True":
        return "Normal", "AppReady", str(after.get("message"))
    return "Warning", "AppNotReady", str(after.get("message"))


@dataclass
class _Schedule:
    due: dict[str, float] = field(default_factory=dict)
    running: set[str] = field(default_factory=set)
    # The object as our last write returned it (newer than the watch may have brought).
    written: dict[str, dict[str, Any]] = field(default_factory=dict)


class AppStatusWriter:
    def __init__(
        self,
        directory: AppDirectory,
        kube: StatusKube,
        phase_counts: PhaseCounts | None = None,
        *,
        interval: float = STATUS_INTERVAL_SECONDS,
        max_backoff: float = MAX_BACKOFF_SECONDS,
        threads: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.kube = kube
        self.phase_counts = phase_counts or (lambda key: {})
        self.interval = interval
        self.backoff = Backoff(initial=interval, factor=2.0, maximum=max(interval, max_backoff))
        self.clock = clock
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="app-status")
        self._lock = threading.Lock()
        self._schedule = _Schedule()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        directory.subscribe(self.soon)

    def start(self) -> AppStatusWriter:
        self._thread = threading.Thread(target=self._run, name="app-status", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def soon(self, key: str) -> None:
        """Write this app's status at the next tick (its state changed)."""
        with self._lock:
            self._schedule.due[key] = 0.0

    def _run(self) -> None:
        while not self._stop.wait(min(1.0, self.interval / 2)):
            now = self.clock()
            keys = {view.key for view in self.directory.views()}
            with self._lock:
                for gone in set(self._schedule.due) - keys:
                    self._schedule.due.pop(gone, None)
                    self._schedule.written.pop(gone, None)
                    metrics.forget_app(_label_of_key(gone))
                due = [k for k in keys if self._schedule.due.get(k, 0.0) <= now
                       and k not in self._schedule.running]
                self._schedule.running.update(due)
            for key in due:
                self._pool.submit(self._tick, key)

    def _tick(self, key: str) -> None:
        delay = self.interval
        try:
            if not self.update(key):
                delay = self.backoff.failed(key).total_seconds()
            else:
                self.backoff.succeeded(key)
        except Exception:
            logger.exception("status of %s", key)
            delay = self.backoff.failed(key).total_seconds()
        finally:
            with self._lock:
                self._schedule.running.discard(key)
                if self._schedule.due.get(key) != 0.0:  # not asked for sooner meanwhile
                    self._schedule.due[key] = self.clock() + delay
                else:
                    self._schedule.due[key] = self.clock() + min(delay, 0.5)

    def update(self, key: str) -> bool:
        """Probe one app and write its status if it changed; False when the app is not
        healthy or the write failed (the next try then backs off)."""
        view = self.directory.view(key)
        if view is None:
            return True
        with self._lock:
            written = self._schedule.written.get(key)
        body = view.body
        if written is not None and resource_version(written) > resource_version(body):
            body = written
        resolved = view.state.resolved
        found = probe(resolved.backend, probe_queues(view.spec)) if resolved else None
        counts = self.phase_counts(key)
        current = body.get("status") or {}
        target = AppView(view.key, view.kind, view.namespace, view.name, body, view.spec,
                         view.state)
        desired = desired_status(target, found, counts, datetime.now(UTC))
        healthy = found is not None and found.error is None
        unreachable = found is not None and not healthy  # None: not resolvable, not probed
        metrics.APP_UNREACHABLE.labels(app=app_label(view.namespace, view.name)).set(unreachable)
        for queue, depth in found.queues if found is not None else ():
            metrics.BROKER_QUEUE_DEPTH.labels(app=app_label(view.namespace, view.name),
                                              queue=metrics.queue_label(queue)).set(depth)
        patch = status_patch(current, desired)
        if patch is None:
            return healthy
        plural = CELERYAPP_PLURAL if view.namespace else CLUSTER_CELERYAPP_PLURAL
        meta = body.get("metadata") or {}
        try:
            new = self.kube.patch_app_status(
                plural, view.namespace, view.name, patch, uid=meta.get("uid")
            )
        except Gone:
            return True  # deleted: the watch will tell the directory
        except Rejected as exc:
            metrics.API_WRITE_FAILURES.labels(verb="patch", reason="Rejected").inc()
            logger.warning("status of %s refused: %s", key, redact_urls_in(exc.message))
            return False
        with self._lock:
            self._schedule.written[key] = new
        change = ready_changed(current, desired)
        if change is not None:
            type_, reason, message = change
            # A ClusterCeleryApp's Events go to namespace "default" (the API server
            # accepts an Event about a cluster-scoped object nowhere else).
            self.kube.post_event(body, type_=type_, reason=reason, message=message)
        return healthy


def _label_of_key(key: str) -> str:
    """The metrics label of an app from its directory key (appresolve.app_key)."""
    parts = key.split("/")
    return app_label(parts[1] if len(parts) == 3 else None, parts[-1])
