"""kopf wiring: settings, start/stop of the engines, and the watch handlers.

Only low-level `on.event` handlers are used: they receive every watch event and write
nothing to the objects (no progress or diff-base annotations, no finalizers), so a
restart over 10,000 objects that need nothing costs no writes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from celery_operator.api import (
    CELERYAPP_KIND,
    CELERYAPP_PLURAL,
    CLUSTER_CELERYAPP_KIND,
    CLUSTER_CELERYAPP_PLURAL,
    GROUP,
    PERIODIC_PLURAL,
    SCHEDULED_PLURAL,
    VERSION,
)
from celery_operator.config import OperatorConfig, redact_url
from celery_operator.controllers.apps import AppDirectory
from celery_operator.controllers.appstatus import AppStatusWriter
from celery_operator.controllers.periodicengine import PeriodicEngine
from celery_operator.controllers.taskengine import TaskEngine
from celery_operator.dispatch.registry import BackendRegistry, ConnectionSet
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
    registry = BackendRegistry()
    flags = (
        ConnectionSet.of(config.broker_url, config.result_backend_url)
        if config.broker_url and config.result_backend_url else None
    )
    directory = AppDirectory(kube, registry, operator_namespace=config.operator_namespace,
                             flags=flags)
    memo.registry, memo.directory = registry, directory
    # Every app is known before the first task is planned: a restart never reports a
    # task's app as missing (and writes nothing) just because it was not loaded yet.
    await asyncio.to_thread(directory.load, config.namespaces)
    directory.start()
    lifecycle = LifecycleConfig(
        dispatch_lead=_seconds(config.dispatch_lead_seconds),
        claim_lease=_seconds(config.claim_lease_seconds),
        holder=config.identity,
    )
    engine = TaskEngine(
        kube, directory, lifecycle, poll_interval=config.poll_interval_seconds,
        claim_rate=config.claim_rate,
    )
    await engine.start()
    periodic = PeriodicEngine(kube, PeriodicConfig(create_ahead=lifecycle.dispatch_lead))
    periodic.start()
    memo.periodic = periodic
    if config.listen_events:
        registry.on_every_backend(lambda backend: backend.listen(engine.on_celery_event))
    memo.engine = engine
    memo.app_status = AppStatusWriter(directory, kube, phase_counts=engine.phase_counts).start()
    logger.info(
        "celery-operator started as %s: default broker %s, results %s, namespaces %s",
        config.identity,
        redact_url(config.broker_url) if config.broker_url else "none (apps only)",
        redact_url(config.result_backend_url) if config.result_backend_url else "none",
        ", ".join(config.namespaces) or "all",
    )


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    for name in ("engine", "periodic"):
        part = getattr(memo, name, None)
        if part is not None:
            await part.stop()
    for name in ("app_status", "directory"):
        part = getattr(memo, name, None)
        if part is not None:
            part.stop()
    registry: BackendRegistry | None = getattr(memo, "registry", None)
    if registry is not None:
        registry.close_all()


@kopf.on.event(GROUP, VERSION, CELERYAPP_PLURAL)
async def celery_app_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    await _observe_app(memo, CELERYAPP_KIND, type, body)


@kopf.on.event(GROUP, VERSION, CLUSTER_CELERYAPP_PLURAL)
async def cluster_celery_app_event(
    type: str | None, body: kopf.Body, memo: Any, **_: Any
) -> None:
    await _observe_app(memo, CLUSTER_CELERYAPP_KIND, type, body)


async def _observe_app(memo: Any, kind: str, type: str | None, body: kopf.Body) -> None:
    directory: AppDirectory | None = getattr(memo, "directory", None)
    if directory is not None:
        # It may read the app's Secrets (a GET each): not on the event loop.
        await asyncio.to_thread(directory.observe, kind, type, _raw(body))


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
