"""kopf wiring: settings, start/stop of the engines, and the watch handlers.

Only low-level `on.event` handlers are used: they receive every watch event and write
nothing to the objects (no progress or diff-base annotations, no finalizers), so a
restart over 10,000 objects that need nothing costs no writes.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
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
from celery_operator.controllers import heap, listing
from celery_operator.controllers.apps import AppDirectory
from celery_operator.controllers.appstatus import AppStatusWriter
from celery_operator.controllers.leadership import ElectionTiming, Elector, Leadership
from celery_operator.controllers.periodicengine import PeriodicEngine
from celery_operator.controllers.taskengine import TaskEngine
from celery_operator.dispatch.registry import BackendRegistry, ConnectionSet
from celery_operator.kube.client import KubeClient, load_api_client
from celery_operator.kube.lease import LeaseStore
from celery_operator.scheduling.periodic_plan import PeriodicConfig
from celery_operator.scheduling.task_lifecycle import LifecycleConfig

logger = logging.getLogger(__name__)

PREFIX = "celeryoperator.dev"
LIST_CHUNK = 500
# A leader shutting down confirms what it sent before it releases the Lease (bounded:
# what is left is taken over by the next leader after the claim lease).
DRAIN_SECONDS = 5.0
# Then it writes the run outcomes kept in memory for a coming claim (bounded the same way:
# what is left the next leader reads back from the result store).
FLUSH_SECONDS = 5.0
# Fault tests only (tests/integration/test_ha.py): this process's wall clock runs this many
# seconds ahead, as on a host with a skewed clock. Unset in every real deployment.
CLOCK_SKEW_ENV = "CELERY_OPERATOR_TEST_CLOCK_SKEW_SECONDS"


def _wall_clock() -> Callable[[], datetime]:
    skew = timedelta(seconds=float(os.environ.get(CLOCK_SKEW_ENV) or 0))
    if not skew:
        return lambda: datetime.now(UTC)
    logger.warning("%s is set: this process's clock runs %s ahead", CLOCK_SKEW_ENV, skew)
    return lambda: datetime.now(UTC) + skew


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
    leadership = _leadership(config, kube, memo) if config.leader_election else None
    leading = leadership.leading if leadership is not None else (lambda: True)
    engine = TaskEngine(
        kube, directory, lifecycle, poll_interval=config.poll_interval_seconds,
        claim_rate=config.claim_rate, finish_rate=config.finish_rate, leading=leading,
        clock=_wall_clock(),
        routine_events=config.routine_task_events,
        on_claim=leadership.note_claim if leadership is not None else (lambda holder: None),
    )
    await engine.start()
    periodic = PeriodicEngine(
        kube, PeriodicConfig(create_ahead=lifecycle.dispatch_lead), leading=leading,
        children_known=lambda ns: listing.LEDGER.complete(SCHEDULED_PLURAL, ns),
        children_arriving=lambda: listing.LEDGER.arriving(SCHEDULED_PLURAL, within=10.0),
        tasks=engine, outcome_wait=timedelta(seconds=config.run_outcome_wait_seconds),
    )
    listing.LEDGER.on_complete(SCHEDULED_PLURAL, periodic.children_ready)
    # A (re)start's listed tasks skip kopf's per-object workers: the calls of their
    # kopf handlers (below), made as each page of the list is decoded.
    listing.take_in_directly(GROUP, SCHEDULED_PLURAL,
                             lambda raw: _take_in_scheduled(memo, None, raw))
    listing.take_in_directly(GROUP, PERIODIC_PLURAL,
                             lambda raw: _take_in_periodic(memo, None, raw))
    periodic.start()
    memo.periodic = periodic
    memo.heap_trim = asyncio.create_task(heap.trim_forever(), name="heap-trim")
    memo.listen_events = config.listen_events
    _listen(memo, engine, standby=not leading())
    memo.engine = engine
    if leadership is None:
        memo.app_status = AppStatusWriter(directory, kube,
                                          phase_counts=engine.phase_counts).start()
    else:
        memo.leadership = leadership
        leadership.start()
    logger.info(
        "celery-operator started as %s: default broker %s, results %s, namespaces %s",
        config.identity,
        redact_url(config.broker_url) if config.broker_url else "none (apps only)",
        redact_url(config.result_backend_url) if config.result_backend_url else "none",
        ", ".join(config.namespaces) or "all",
    )


def _listen(memo: kopf.Memo, engine: TaskEngine, *, standby: bool) -> None:
    """Celery events of every app's broker, now and for apps opened later (a standby
    listens only where the events are the task states, see CeleryBackend.listen)."""
    if memo.listen_events:
        memo.registry.on_every_backend(
            lambda backend: backend.listen(engine.on_celery_event, standby=standby))


def _leadership(config: OperatorConfig, kube: KubeClient, memo: kopf.Memo) -> Leadership:
    """The Lease campaign. Leading: the engines do what they parked, the app statuses
    are written, Celery events are heard; standing by: the engines plan what changed
    and park what would act, nothing is written, Celery events are not read (but
    where they are the task states)."""
    timing = ElectionTiming(config.lease_duration_seconds, config.renew_deadline_seconds,
                            config.retry_period_seconds)
    store = LeaseStore(kube.api_client, config.operator_namespace, config.lease_name,
                       timeout=max(1.0, timing.retry_period))
    elector = Elector(store, config.identity, timing)

    def started() -> None:
        _listen(memo, memo.engine, standby=False)
        memo.engine.resume()
        memo.periodic.resume()
        memo.app_status = AppStatusWriter(memo.directory, kube,
                                          phase_counts=memo.engine.phase_counts).start()

    def stopped() -> None:
        _listen(memo, memo.engine, standby=True)
        writer: AppStatusWriter | None = getattr(memo, "app_status", None)
        memo.app_status = None
        if writer is not None:
            asyncio.get_running_loop().run_in_executor(None, writer.stop)

    logger.info("leader election on Lease %s/%s as %s", config.operator_namespace,
                config.lease_name, config.identity)
    return Leadership(elector, on_started=started, on_stopped=stopped,
                      lease_name=f"{config.operator_namespace}/{config.lease_name}",
                      watch_released=store.watch_released)


async def _hand_over(memo: kopf.Memo) -> None:
    """SIGTERM: stop claiming, confirm what was sent, write the run outcomes that wait
    for a coming claim, then release the Lease, so the next leader takes over at its next
    retry instead of after the lease duration."""
    leadership: Leadership | None = getattr(memo, "leadership", None)
    engine: TaskEngine | None = getattr(memo, "engine", None)
    periodic: PeriodicEngine | None = getattr(memo, "periodic", None)
    loop = asyncio.get_running_loop()
    if engine is not None and leadership is not None and leadership.leading():
        engine.draining = True
        deadline = loop.time() + DRAIN_SECONDS
        while engine.unconfirmed_here() and loop.time() < deadline:
            await asyncio.sleep(0.02)
        if left := engine.unconfirmed_here():
            logger.warning("stopping with %d dispatches unconfirmed: the next leader takes "
                           "them over after the claim lease", left)
    if periodic is not None:
        written = await periodic.flush(FLUSH_SECONDS)
        if written:
            logger.info("stopping: wrote the waiting run outcomes of %d PeriodicTasks",
                        written)
    if leadership is not None:
        await leadership.stop(release=True)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await _hand_over(memo)
    trim: asyncio.Task[None] | None = getattr(memo, "heap_trim", None)
    if trim is not None:
        trim.cancel()
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
    _take_in_scheduled(memo, type, _raw(body))


def _take_in_scheduled(memo: Any, type: str | None, raw: dict[str, Any]) -> None:
    try:
        engine: TaskEngine | None = getattr(memo, "engine", None)
        if engine is not None:
            engine.observe(type, raw)
        periodic: PeriodicEngine | None = getattr(memo, "periodic", None)
        if periodic is not None:
            periodic.observe_child(type, raw)
    finally:
        if type is None:  # one listed object more was taken in (or failed to be, logged)
            listing.LEDGER.handled(SCHEDULED_PLURAL,
                                   str((raw.get("metadata") or {}).get("namespace")))


@kopf.on.event(GROUP, VERSION, PERIODIC_PLURAL)
async def periodic_task_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    _take_in_periodic(memo, type, _raw(body))


def _take_in_periodic(memo: Any, type: str | None, raw: dict[str, Any]) -> None:
    periodic: PeriodicEngine | None = getattr(memo, "periodic", None)
    if periodic is not None:
        periodic.observe(type, raw)


def _raw(body: kopf.Body) -> dict[str, Any]:
    return {key: body[key] for key in body}


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
