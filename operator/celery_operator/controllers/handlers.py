"""kopf wiring: settings, start/stop of the engines, and the watch handlers.

Only low-level `on.event` handlers are used: they receive every watch event and write
nothing to the objects (no progress or diff-base annotations, no finalizers), so a
restart over 10,000 objects that need nothing costs no writes.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from celery_operator.api import GROUP, PERIODIC_PLURAL, SCHEDULED_PLURAL, VERSION
from celery_operator.config import OperatorConfig, redact_url
from celery_operator.controllers.periodicengine import PeriodicEngine
from celery_operator.controllers.taskengine import TaskEngine
from celery_operator.dispatch.backend import CeleryBackend
from celery_operator.kube.client import KubeClient, load_api_client
from celery_operator.scheduling.periodic_plan import PeriodicConfig
from celery_operator.scheduling.task_lifecycle import LifecycleConfig

logger = logging.getLogger(__name__)

PREFIX = "celeryoperator.dev"
LIST_CHUNK = 500


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf builds a diff base (a deepcopy of the whole body) for every watch event, for
    on.create/update handlers to diff against. We register only on.event handlers, so it
    is never read: skip the copy (kopf's per-event processing, this copy included, took
    about a fifth of the operator's CPU in the periodic benchmark)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.posting.enabled = False  # we post our own Events, one per state change
    settings.peering.standalone = True  # correctness comes from conditional writes
    # List in chunks: one LIST of 10,000 objects is ~150 MB decoded at once, and what is
    # kept of it pins much of that memory afterwards (measured: bench/scale, restart RSS).
    settings.watching.chunk_size = LIST_CHUNK
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.batching.error_delays = [1, 2, 5, 10]
    # kopf keeps a worker task per object for this long after its last event. A LIST of
    # 10,000 objects held thousands at once at the default 5 s: memory that stayed taken
    # after they exited (bench scale). Our handlers only hand the body to an engine.
    settings.queueing.idle_timeout = 0.1


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure_kopf(settings)
    config: OperatorConfig = memo.config
    kube = KubeClient(load_api_client(config.kubeconfig))
    backend = CeleryBackend(config.broker_url, config.result_backend_url)
    lifecycle = LifecycleConfig(
        dispatch_lead=_seconds(config.dispatch_lead_seconds),
        claim_lease=_seconds(config.claim_lease_seconds),
        holder=config.identity,
    )
    engine = TaskEngine(
        kube, backend, lifecycle, poll_interval=config.poll_interval_seconds,
        claim_rate=config.claim_rate,
    )
    await engine.start()
    periodic = PeriodicEngine(kube, PeriodicConfig(create_ahead=lifecycle.dispatch_lead))
    periodic.start()
    memo.periodic = periodic
    if config.listen_events:
        backend.listen(engine.on_celery_event)
    memo.engine = engine
    memo.backend = backend
    logger.info(
        "celery-operator started as %s: broker %s, results %s, namespaces %s",
        config.identity,
        redact_url(config.broker_url),
        redact_url(config.result_backend_url),
        ", ".join(config.namespaces) or "all",
    )


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    for name in ("engine", "periodic"):
        part = getattr(memo, name, None)
        if part is not None:
            await part.stop()
    backend: CeleryBackend | None = getattr(memo, "backend", None)
    if backend is not None:
        backend.close()


@kopf.on.event(GROUP, VERSION, SCHEDULED_PLURAL)
async def scheduled_task_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    raw = _raw(body)
    engine: TaskEngine | None = getattr(memo, "engine", None)
    if engine is not None:
        engine.observe(type, raw)
    periodic: PeriodicEngine | None = getattr(memo, "periodic", None)
    if periodic is not None:
        periodic.observe_child(type, raw)


@kopf.on.event(GROUP, VERSION, PERIODIC_PLURAL)
async def periodic_task_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    periodic: PeriodicEngine | None = getattr(memo, "periodic", None)
    if periodic is not None:
        periodic.observe(type, _raw(body))


def _raw(body: kopf.Body) -> dict[str, Any]:
    return {key: body[key] for key in body}


def _seconds(value: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=value)
