"""The ScheduledTask engine: one due-time queue, one backend tracker, many objects.

Watch events (fed by kopf's low-level `on.event` handler, which writes nothing) keep
an in-memory registry of every ScheduledTask. A single heap orders their wake-up
times; a single tracker reads the result backend for every dispatched task in batches.
Each wake-up runs `plan_step` (pure) and carries the step out: the status write first
(conditional on the resourceVersion we saw), then the publish/revoke/delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from celery_operator import metrics
from celery_operator.api import (
    FINISHED_PHASES,
    InvalidSpec,
    Phase,
    ScheduledTaskSpec,
    parse_scheduled_task_spec,
    parse_time,
)
from celery_operator.api.apps import app_ref_of, describe_key, effective_queue, policy_violation
from celery_operator.api.celery_state import TaskState
from celery_operator.api.scheduled import with_app_defaults
from celery_operator.dispatch.errors import PublishFailed, public_error
from celery_operator.dispatch.events import TaskEvent
from celery_operator.dispatch.publisher import Publication
from celery_operator.kube.client import Rejected
from celery_operator.scheduling.backoff import Backoff
from celery_operator.scheduling.duetime import resolve_due_time
from celery_operator.scheduling.task_lifecycle import (
    IN_FLIGHT,
    LifecycleConfig,
    Observed,
    PublishFailure,
    Step,
    current_task_id,
    plan_step,
)
from celery_operator.scheduling.task_model import ROUTINE_EVENTS

from .appresolve import AppProblem, ResolvedApp
from .bursts import BurstTracker, QuietWindows
from .duequeue import DueQueue
from .kubeio import KubeIO, WriteOutcome, resource_version, stalled_conditions
from .ports import Apps, Backend, Kube
from .taskstore import TaskObjects, TaskStore
from .watched import Watched, slim

logger = logging.getLogger(__name__)

TERMINAL_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
# A deleted task with a message out there is revoked (terminated if it runs): these
# phases may have one, Retrying too (Celery's own retry holds an ETA message).
REVOKE_ON_DELETE = frozenset({p.value for p in IN_FLIGHT} | {Phase.RETRYING.value})
# A burst's quiet window (no event hints, no result reads): from just before its due
# time, for as long as it was claimed early, at most QUIET_MAX.
QUIET_BEFORE = timedelta(seconds=0.5)
QUIET_MAX = timedelta(seconds=10)
QUIET_MIN_EXTRA = timedelta(seconds=5)  # 250 tasks in three seconds at 50 claims/s
# A burst is claimed up to MAX_EXTRA_LEAD early: 10,000 tasks due at one second need
# ~100 s of claims on two cores, and a claim after the due time starts its task late.
# Its final writes wait until the burst has run, as long after as it was claimed early,
# but at most SETTLE_MAX: a burst's workers are done with the machine well before.
MAX_EXTRA_LEAD = timedelta(minutes=5)
SETTLE_MAX = timedelta(seconds=60)
RUN_ID_FRESH = 1.0  # seconds a broker run id is trusted for a publish without a re-read
# A standby keeps the revokes of deleted tasks this long for the next leader (only memory
# is bounded by it: by then a live leader has sent them, and a new one took over).
PARKED_REVOKE_TTL = timedelta(minutes=10)
# A standby plans a changed task this long after the change: the leader's writes to one
# task (claim, confirm, start, finish) mostly come within it and cost one plan together,
# also from a leader seconds behind on a busy machine. (A new leader plans what changed
# within it at once: at 33 tasks/s, some 300 plans of a fraction of a millisecond.)
STANDBY_PLAN_DELAY = timedelta(seconds=10)
T = TypeVar("T")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


Entry = Watched[ScheduledTaskSpec]

# A waiting task with no wake-up within this long is held packed (Watched.pack).
PACK_IDLE = timedelta(seconds=60)
PACKED_PHASES = frozenset({Phase.SCHEDULED.value, Phase.RETRYING.value, Phase.INVALID.value}
                          | {phase.value for phase in FINISHED_PHASES})


class NotLeading(Exception):
    """A publish not sent: this process stopped leading after it was planned."""


@dataclass(frozen=True)
class Published:
    """A publish by this process, until its attempt ends: the confirm needs the id and
    the broker's run id just before it; queuedTime is its time."""

    task_id: str
    run_id: str | None
    at: datetime
    # Marked sent in the result store: Queued is written only if it still waits then.
    confirm_after: datetime | None = None


@dataclass
class Hints:
    """Low-latency signs from Celery events: task starts by id, workers by host name."""

    started: dict[str, datetime] = field(default_factory=dict)
    worker_seen: dict[str, datetime] = field(default_factory=dict)  # last event of a worker
    worker_offline: set[str] = field(default_factory=set)
    dead_reported: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class ParkedRevoke:
    """The revoke of a task deleted while this process stood by."""

    backend: Backend
    name: str
    terminate: bool
    signal: str
    at: datetime


class TaskEngine:
    def __init__(
        self,
        kube: Kube,
        apps: Apps,
        config: LifecycleConfig,
        *,
        clock: Clock = utcnow,
        poll_interval: float = 1.0,
        worker_timeout: float = 10.0,
        consumer_check_interval: float = 10.0,
        consumer_grace: float = 20.0,
        claim_rate: float = 50.0,
        finish_rate: float = 100.0,
        max_extra_lead: timedelta = MAX_EXTRA_LEAD,
        broker_check_interval: float = 2.0,
        kube_threads: int = 32,
        publish_threads: int = 4,
        leading: Callable[[], bool] = lambda: True,
        on_claim: Callable[[str], None] = lambda holder: None,
        routine_events: bool = False,
    ) -> None:
        self.kube = kube
        # Post the routine Normal Events (ROUTINE_EVENTS) too: one API write each, and
        # what they say is the task's status message and the operator's metrics.
        self.routine_events = routine_events
        self.on_claim = on_claim  # the holder of every claim seen (peer check)
        # Leader election: checked before every act (a standby plans, parks, never acts).
        self.leading = leading
        self.draining = False  # shutting down: confirm what was sent, claim nothing new
        self._sending: set[str] = set()  # uids whose claim/publish step is under way
        # Another holder's claim: uid -> (its claim time as written, when we first saw it
        # by our clock). Its lease runs from the later of the two (see _fresh_claim).
        self._claim_seen: dict[str, tuple[str, datetime]] = {}
        self.apps = apps
        self.config = config
        self.clock = clock
        self.poll_interval = poll_interval
        self.worker_timeout = timedelta(seconds=worker_timeout)
        self.consumer_check_interval = consumer_check_interval
        self.consumer_grace = timedelta(seconds=consumer_grace)
        self.bursts = BurstTracker(claim_rate, max_extra_lead)
        self.finish_spacing = timedelta(seconds=1 / finish_rate)
        self._finish_next = clock()
        self.broker_check_interval = broker_check_interval
        self.entries: dict[str, Entry] = {}
        self.queue = DueQueue(
            self.reconcile, clock, concurrency=kube_threads, name="scheduledtask-due-queue",
            on_depth=metrics.DUE_QUEUE_DEPTH.set, holding=self._standing_by,
        )
        metrics.DUE_QUEUE_ARMED.set_function(self.queue.armed)
        metrics.TASKS_PACKED.set_function(
            lambda: sum(isinstance(e.held, bytes) for e in list(self.entries.values())))
        self._poll_now = asyncio.Event()
        # Task ids whose event said they ended or retried: the next poll reads these
        # alone, and every tracked one only once a poll interval (a sweep), so a burst's
        # thousands of events do not each cost a read of every task it tracks.
        self._hinted: dict[str, None] = {}
        self._sweep_at = 0.0  # loop time of the next read of every tracked task
        self._published: dict[str, Published] = {}  # uid -> what this process published
        self._states: dict[str, TaskState | None] = {}  # task id -> last backend record
        # Claims to take over: task id -> (the broker run id it is marked sent to, or
        # None: no mark; when read).
        self._sent_marks: dict[str, tuple[str | None, datetime]] = {}
        self._mark_failing: set[str] = set()  # apps whose sent marks fail (logged once)
        # Final records held back until their paced time: task id -> (record, time).
        self._deferred: dict[str, tuple[TaskState, datetime]] = {}
        self._tracked: dict[str, str] = {}  # uid -> task id to follow in the backend
        self._uid_of: dict[str, str] = {}  # task id -> uid, for events (O(1) per event)
        self._hints = Hints()
        # This process's publish failures (uid -> the last one) and their backoff.
        self._publish_failures: dict[str, PublishFailure] = {}
        self._publish_backoff = Backoff(initial=1.0, maximum=300.0)
        # Revokes this process broadcast: uid -> (when last, how many times). A worker
        # that (re)joins resets "when", so the revoke is sent again for it to hear.
        self._revoke_sent: dict[str, tuple[datetime | None, int]] = {}
        # Tasks deleted while this process stood by: task id -> the revoke to send if it
        # leads next and the durable mark shows nobody sent it (see _send_parked_revokes).
        self._parked_revokes: dict[str, ParkedRevoke] = {}
        # Status writes the API server refused: retried with backoff, reported once.
        self._rejected_backoff = Backoff(initial=5.0, maximum=600.0)
        self._rejected_message: dict[str, str] = {}
        self._read_backoff = Backoff(initial=1.0, maximum=60.0)
        self._read_next: dict[str, datetime] = {}
        self._run_id_checked: dict[str, float] = {}  # app key -> monotonic time of the read
        self._quiet = QuietWindows()  # keyed by the burst's due second
        # Per app (ResolvedApp.key): the broker's run id, and how each app's broker checks
        # fail (backoff). uid -> the key of the app a task uses, from its last plan.
        self._run_ids: dict[str, str] = {}
        self._broker_backoff = Backoff(initial=2.0, maximum=60.0)
        self._broker_next: dict[str, datetime] = {}
        self._app_of: dict[str, str] = {}
        self._app_labels: dict[str, str] = {"flags": "default"}
        self._no_consumer: dict[str, tuple[str, str]] = {}  # warned uid: (app, queue) labels
        # Tasks held back by their app (missing, not allowed, policy): uid -> message.
        self._app_blocked: dict[str, str] = {}
        self._app_backoff = Backoff(initial=5.0, maximum=600.0)
        self.io = KubeIO(kube, kube_threads)
        self.objects = TaskObjects(self.io, kube)
        # Tasks whose status is kept elsewhere than in an object of their own: uid ->
        # their store (the rest are ScheduledTask objects: self.objects).
        self._stores: dict[str, TaskStore] = {}
        self._publish_pool = ThreadPoolExecutor(publish_threads, thread_name_prefix="publish")
        self._broker_pool = ThreadPoolExecutor(1, thread_name_prefix="broker-watch")
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.apps.subscribe(self._app_changed)
        # Nothing is confirmed before the broker's run id is known (see _confirm).
        await self._check_brokers()
        self.queue.start()
        self._tasks = [
            asyncio.create_task(self._track_loop(), name="result-tracker"),
            asyncio.create_task(self._broker_loop(), name="broker-watch"),
            asyncio.create_task(self._consumer_loop(), name="queue-consumers"),
        ]

    def resume(self) -> None:
        """This process started leading: do what was parked, read results now."""
        parked = self.queue.unpark_all()
        self._sweep_at = 0.0
        self._poll_now.set()
        self._send_parked_revokes()
        logger.info("leading: %d ScheduledTasks came due or changed while standing by",
                    parked)

    def _standing_by(self) -> bool:
        return not self.leading()

    def unconfirmed_here(self) -> int:
        """Claims under way here, and tasks this process published that are neither
        confirmed (Queued) nor known to the result backend: the ones the next leader
        would take over and publish again. (One that already ran waits only for its
        paced final write; the next leader finds its record and publishes nothing.)"""
        return len(self._sending) + sum(
            1 for uid, published in list(self._published.items())
            if (entry := self.entries.get(uid)) is not None
            and entry.status.get("phase") == Phase.DISPATCHING.value
            and published.confirm_after is None  # a marked one is not sent again
            and self._states.get(published.task_id) is None
            and published.task_id not in self._deferred
        )

    def _fresh_claim(self, uid: str, entry: Entry) -> datetime | None:
        """When another holder's claim may be taken over, if that is still ahead by our
        clock. The planner ages a claim by the time it carries, written by the claimer's
        clock: a clock ahead of the claimer's by up to the claim lease would take over a
        live claim. So its lease also runs from when we first saw it, by our clock."""
        claim = entry.status.get("claim")
        if entry.status.get("phase") != Phase.DISPATCHING.value or not isinstance(
            claim, Mapping
        ) or claim.get("holder") == self.config.holder:
            return None
        stamp = str(claim.get("time") or "")
        seen = self._claim_seen.get(uid)
        if seen is None or seen[0] != stamp:  # first seen now (e.g. read after a conflict)
            seen = self._claim_seen[uid] = (stamp, self.clock())
        until = seen[1] + self.config.claim_lease
        return until if self.clock() < until else None

    def _may_act(self, step: Step) -> bool:
        if step.status is None and step.publish is None and step.revoke is None and (
            not step.delete and not step.notices
        ):
            return True
        return self.leading() and not (self.draining and step.publish is not None)

    async def stop(self) -> None:
        await self.queue.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.io.shutdown()
        self._publish_pool.shutdown(wait=False, cancel_futures=True)
        self._broker_pool.shutdown(wait=False, cancel_futures=True)

    # ---- inputs ----------------------------------------------------------------------

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event (or initial listing) for one ScheduledTask: remember, wake it."""
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid"))
        if event_type == "DELETED":
            self._forget(uid, dict(body))
            return
        entry = self.entries.get(uid)
        if entry is not None and entry.version >= resource_version(body):
            return  # the echo of our own write, or older: we planned from it already
        if entry is None:
            entry = self.entries[uid] = Entry(slim(body))
        else:
            entry.body = slim(body, entry.body)
        claim = entry.status.get("claim")
        if entry.status.get("phase") == Phase.DISPATCHING.value and isinstance(claim, Mapping):
            self.on_claim(str(claim.get("holder") or ""))
            stamp = str(claim.get("time") or "")
            if self._claim_seen.get(uid, ("",))[0] != stamp:
                self._claim_seen[uid] = (stamp, self.clock())
        else:
            self._claim_seen.pop(uid, None)
        if self.leading():
            self.schedule(uid, self.clock())
        else:
            self.queue.defer(uid, STANDBY_PLAN_DELAY)  # one plan for the leader's writes

    def observe_run(self, body: Mapping[str, Any], store: TaskStore) -> None:
        """A task kept elsewhere than in an object of its own (a periodic run in its
        parent's status): planned as any, its writes go to `store`."""
        self._stores[str((body.get("metadata") or {}).get("uid"))] = store
        self.observe(None, body)

    def forget_run(self, body: Mapping[str, Any]) -> None:
        """Such a task is gone (dropped by history, its parent deleted): as a delete."""
        self.observe("DELETED", body)
        self._stores.pop(str((body.get("metadata") or {}).get("uid")), None)

    def on_celery_event(self, event: TaskEvent) -> None:
        """Called from the event listener thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._hint, event)

    def _hint(self, event: TaskEvent) -> None:
        if event.hostname:
            joined = event.kind == "worker-online" or (
                event.hostname not in self._hints.worker_seen
                or event.hostname in self._hints.worker_offline
            )
            self._hints.worker_seen[event.hostname] = self.clock()
            if joined and event.kind != "worker-offline":
                self._resend_revokes()
            if event.kind == "worker-offline":
                self._hints.worker_offline.add(event.hostname)
                self._wake_tracked()
            else:
                self._hints.worker_offline.discard(event.hostname)
                self._hints.dead_reported.discard(event.hostname)
        if not event.task_id or not self.leading():
            return  # a standby plans nothing from task events (it reads no results either)
        uid = self._uid_of.get(event.task_id)
        if uid is None:
            return
        if event.kind == "task-started":
            ts = datetime.fromtimestamp(event.timestamp, UTC) if event.timestamp else self.clock()
            if event.task_id not in self._hints.started:
                self._hints.started[event.task_id] = ts
                self.schedule(uid, self.clock())  # the plan coalesces the Started write
        elif event.kind != "task-received":
            self._hinted[event.task_id] = None
            self._poll_now.set()  # it ended or retried: read its record now

    def worker_alive(self, hostname: str | None) -> bool | None:
        """None when we know nothing of it (no events: workers without -E)."""
        if not hostname or hostname not in self._hints.worker_seen:
            return None
        if hostname in self._hints.worker_offline:
            return False
        listening = max(
            (b for a in self.apps.apps() if (b := a.backend.events_connected_for()) is not None),
            default=None,
        )
        if listening is None or listening < self.worker_timeout.total_seconds():
            return None  # we may have missed its heartbeats: judge nothing
        age: timedelta = self.clock() - self._hints.worker_seen[hostname]
        return age < self.worker_timeout

    def _resend_revokes(self) -> None:
        """A worker (re)joined: it has not heard the revokes sent so far (workers keep
        revoked ids in memory only). Send each pending one again now."""
        for uid, (_, sends) in list(self._revoke_sent.items()):
            self._revoke_sent[uid] = (None, sends)
            self.schedule(uid, self.clock())

    def _wake_tracked(self) -> None:
        for uid in list(self._tracked):
            self.schedule(uid, self.clock())

    def _check_workers(self) -> None:
        """Heartbeats that stopped (a SIGKILLed worker sends no worker-offline)."""
        for hostname in list(self._hints.worker_seen):
            if self.worker_alive(hostname) is False and hostname not in self._hints.dead_reported:
                self._hints.dead_reported.add(hostname)
                logger.warning("worker %s stopped sending heartbeats", hostname)
                self._wake_tracked()

    def _forget(self, uid: str, body: dict[str, Any]) -> None:
        entry = self.entries.pop(uid, None)
        self._claim_seen.pop(uid, None)
        self._set_due(uid, None)
        self.queue.forget(uid)
        self._untrack(uid)
        self._published.pop(uid, None)
        self._forget_failures(uid)
        self._app_of.pop(uid, None)
        self._app_blocked.pop(uid, None)
        status = (entry.body if entry else body).get("status") or {}
        task_id = current_task_id(uid, status)
        if task_id and status.get("phase") in REVOKE_ON_DELETE:
            self._revoke_deleted(task_id, (entry.body if entry else body).get("spec") or {},
                                 body)

    def _revoke_deleted(self, task_id: str, spec: Mapping[str, Any],
                        body: Mapping[str, Any]) -> None:
        """Deleting a dispatched task revokes it (no finalizer, see docs). A standby parks
        the revoke: if the delete landed while nobody led, the next leader sends it."""
        raw_revoke = spec.get("revoke")
        revoke: Mapping[str, Any] = raw_revoke if isinstance(raw_revoke, Mapping) else {}
        app = self._resolve(body)
        if not isinstance(app, ResolvedApp):
            logger.warning("cannot revoke task %s of deleted %s: %s", task_id, _name(body),
                           app.message)
            return
        parked = ParkedRevoke(
            app.backend, _name(body),
            # Deleting is cancelling: stop it if it runs (spec.revoke may say more).
            revoke.get("terminate") is not False, str(revoke.get("signal") or "SIGTERM"),
            self.clock(),
        )
        if not self.leading():
            self._prune_parked_revokes()
            self._parked_revokes[task_id] = parked
            logger.info("standing by: the revoke of task %s of deleted %s is kept for the "
                        "next leader", task_id, parked.name)
            return
        asyncio.get_running_loop().run_in_executor(
            self._publish_pool, self._send_revoke, parked.backend, task_id, parked.terminate,
            parked.signal,
        )
        logger.info("revoked task %s of deleted %s", task_id, parked.name)

    def _send_parked_revokes(self) -> None:
        """This process leads now: send each revoke it parked as a standby, unless the
        old leader already did (its durable mark is there): each is sent once."""
        oldest = self.clock() - PARKED_REVOKE_TTL
        parked = {task_id: p for task_id, p in self._parked_revokes.items() if p.at >= oldest}
        self._parked_revokes.clear()
        if parked:
            asyncio.get_running_loop().run_in_executor(
                self._publish_pool, self._send_missed_revokes, parked)

    def _send_missed_revokes(self, parked: dict[str, ParkedRevoke]) -> None:
        for task_id, p in parked.items():
            try:
                if p.backend.is_revoked(task_id):
                    continue
            except Exception as exc:
                logger.warning("cannot tell if task %s was revoked (revoking it): %s",
                               task_id, public_error(exc))
            self._send_revoke(p.backend, task_id, p.terminate, p.signal)
            logger.info("revoked task %s of %s, deleted while nobody led", task_id, p.name)

    def _prune_parked_revokes(self) -> None:
        """Parked in time order: drop the expired ones from the front."""
        oldest = self.clock() - PARKED_REVOKE_TTL
        while self._parked_revokes:
            task_id, first = next(iter(self._parked_revokes.items()))
            if first.at >= oldest:
                return
            del self._parked_revokes[task_id]

    def _forget_failures(self, uid: str) -> None:
        self._publish_failures.pop(uid, None)
        self._publish_backoff.succeeded(uid)
        self._revoke_sent.pop(uid, None)
        self._rejected_message.pop(uid, None)
        self._rejected_backoff.succeeded(uid)

    def _send_revoke(self, backend: Backend, task_id: str, terminate: bool, signal: str) -> None:
        """Record the revoke where the worker guard looks, then broadcast it (from a
        thread; a failure is logged, the next broadcast is already planned)."""
        try:
            backend.mark_revoked(task_id)
            backend.revoke(task_id, terminate=terminate, signal=signal)
        except Exception as exc:
            logger.warning("revoking task %s failed: %s", task_id, public_error(exc))

    def store(self, uid: str) -> TaskStore:
        return self._stores.get(uid, self.objects)

    # ---- the due-time queue ------------------------------------------------------------

    def schedule(self, uid: str, at: datetime) -> None:
        if uid in self.entries:
            self.queue.schedule(uid, at)

    # ---- one object --------------------------------------------------------------------

    def _spec(self, entry: Entry) -> ScheduledTaskSpec | InvalidSpec:
        return entry.parsed(parse_scheduled_task_spec)

    def _note_due(self, uid: str, entry: Entry) -> None:
        """Count unfinished tasks per due second (claimed ones too, so a burst does not
        look smaller, and postpone its rest, while it is being claimed)."""
        status = entry.status
        phase = status.get("phase")
        second: int | None = None
        if phase is None or Phase(phase) not in FINISHED_PHASES:
            due = self._due_time(entry)
            second = int(due.timestamp()) if due is not None else None
        self._set_due(uid, second)

    def _due_time(self, entry: Entry) -> datetime | None:
        if entry.status.get("dueTime"):
            return parse_time(str(entry.status["dueTime"]))
        spec = self._spec(entry)  # first sight: the due time the plan will resolve
        if not isinstance(spec, ScheduledTaskSpec):
            return None
        created = parse_time(str(entry.meta.get("creationTimestamp")))
        return resolve_due_time(eta=spec.eta, countdown=spec.countdown, created=created)

    def _set_due(self, uid: str, second: int | None) -> None:
        for member, wake in self.bursts.set(uid, second):
            self.schedule(member, wake - self.config.dispatch_lead)

    def _resolve(self, body: Mapping[str, Any]) -> ResolvedApp | AppProblem:
        """The Celery app a task uses (spec.app, else the namespace's or cluster's default,
        else the flags): read from the raw spec, so a task whose spec broke after it
        was sent is still tracked and revoked through its app."""
        namespace = str((body.get("metadata") or {}).get("namespace"))
        spec = body.get("spec")
        return self.apps.resolve(namespace, app_ref_of(spec if isinstance(spec, Mapping) else {}))

    def _app_problem(
        self, app: ResolvedApp | AppProblem, spec: ScheduledTaskSpec | InvalidSpec
    ) -> tuple[str, str] | None:
        """Why this app will not take this task now (checked before every claim)."""
        if isinstance(app, AppProblem):
            return app.reason, app.message
        if not isinstance(spec, ScheduledTaskSpec):
            return None
        queue = effective_queue(spec.task.queue, app.defaults)
        violation = policy_violation(app.policy, spec.task.name, queue, describe_key(app.key))
        return ("NotAllowed", violation) if violation else None

    def observed(
        self, uid: str, entry: Entry, app: ResolvedApp | AppProblem | None = None
    ) -> Observed:
        if app is None:
            app = self._resolve(entry.body)
        if isinstance(app, ResolvedApp):
            self._app_of[uid] = app.key
            self._app_labels[app.key] = app.label
        spec = self._spec(entry)
        if isinstance(spec, ScheduledTaskSpec) and isinstance(app, ResolvedApp):
            spec = with_app_defaults(spec, app.defaults)
        self._note_due(uid, entry)
        status = entry.status
        task_id = current_task_id(uid, status)
        held = self._deferred.pop(task_id, None) if task_id else None
        if held is not None:
            self._states[str(task_id)] = held[0]
        backend = self._states.get(task_id) if task_id else None
        started = self._hints.started.get(task_id) if task_id else None
        published = self._published.get(uid)
        mark = self._sent_marks.get(task_id) if task_id else None
        worker = (backend.worker if backend else None) or status.get("worker")
        if started is None and backend is not None and backend.status in ("STARTED", "RETRY"):
            started = self._hints.started.setdefault(str(task_id), self.clock())
        return Observed(
            uid=uid,
            generation=int(entry.meta.get("generation") or 0),
            created=parse_time(str(entry.meta.get("creationTimestamp"))),
            spec=spec,
            status=status,
            now=self.clock(),
            backend=backend,
            backend_read=bool(task_id) and task_id in self._states,
            broker_run_id=self._run_ids.get(app.key) if isinstance(app, ResolvedApp) else None,
            published_here=published.task_id if published else None,
            published_run_id=published.run_id if published else None,
            published_at=published.at if published else None,
            confirm_after=published.confirm_after if published and not self.draining else None,
            marks_kept=isinstance(app, ResolvedApp) and app.backend.results_available,
            sent_marks_read_at=mark[1] if mark else None,
            sent_mark_run_id=mark[0] if mark else None,
            started_hint=started,
            worker_alive=self.worker_alive(worker),
            extra_lead=self.bursts.extra_lead(uid),
            publish_failure=self._publish_failures.get(uid),
            revoke_sent_at=self._revoke_sent.get(uid, (None, 0))[0],
            revoke_sends=self._revoke_sent.get(uid, (None, 0))[1],
            # A finished task needs nothing of its app (and must not wake for it).
            app_problem=None if _finished(status) else self._app_problem(app, spec),
        )

    async def reconcile(self, uid: str) -> None:
        try:
            await self._reconcile(uid)
        finally:
            self._pack_if_idle(uid)

    def _pack_if_idle(self, uid: str) -> None:
        """Hold a task that waits (for its due time, a retry, its TTL) and has nothing to
        do within PACK_IDLE packed (Watched.pack): most of a large install's tasks wait
        for hours. Tasks on the broker or a worker are read on every Celery event."""
        entry = self.entries.get(uid)
        if entry is None or entry.packed or uid in self._sending or self.queue.runs_again(uid):
            return
        phase = entry.phase
        if phase is not None and phase not in PACKED_PHASES:
            return
        at = self.queue.wake_at(uid)
        if at is None or at - self.clock() > PACK_IDLE:
            entry.pack()

    async def _reconcile(self, uid: str) -> None:
        entry = self.entries.get(uid)
        if entry is None:
            return
        held = self._deferred.get(str(current_task_id(uid, entry.status))) if (
            self._deferred) else None
        if held is not None and held[1] > self.clock():
            self.schedule(uid, held[1])  # its final write is paced: nothing before then
            return
        app = self._resolve(entry.body)
        obs = self.observed(uid, entry, app)
        step = plan_step(obs, self.config)
        if not self._may_act(step):
            self.queue.park(uid)  # a standby (or a leader shutting down) does not act
            return
        if step.publish is not None and (fresh := self._fresh_claim(uid, entry)) is not None:
            self.schedule(uid, fresh)  # another's claim, live by our own clock: not yet
            return
        if step.publish is None:
            await self._carry_out(uid, entry, app, obs, step)
            return
        self._sending.add(uid)  # a graceful stop waits for it: claimed → sent → confirmed
        try:
            await self._carry_out(uid, entry, app, obs, step)
        finally:
            self._sending.discard(uid)

    async def _carry_out(
        self, uid: str, entry: Entry, app: ResolvedApp | AppProblem, obs: Observed, step: Step
    ) -> None:
        if obs.app_problem is not None:
            if not self._held_by_app(uid, step, obs.app_problem):
                return
        else:
            self._app_blocked.pop(uid, None)
            self._app_backoff.succeeded(uid)
        if step.status is not None:
            if not await self._write_status(uid, entry, step.status):
                return
            # Plan once more from what we wrote (its watch echo is skipped as known):
            # e.g. a task just finished now arms its ttlSecondsAfterFinished.
            self.queue.again(uid)
        if step.publish is not None and isinstance(app, ResolvedApp):
            await self._publish(uid, entry, step, app)
            self.queue.again(uid)  # confirm right away
        task_id = current_task_id(uid, obs.status)
        if step.revoke is not None and task_id and isinstance(app, ResolvedApp):
            sends = self._revoke_sent.get(uid, (None, 0))[1]
            self._revoke_sent[uid] = (self.clock(), sends + 1)
            await asyncio.get_running_loop().run_in_executor(
                self._publish_pool, self._send_revoke,
                app.backend, task_id, step.revoke.terminate, step.revoke.signal,
            )
        if step.delete:
            try:
                await self.store(uid).delete(entry.body)
            except Rejected as exc:  # e.g. RBAC without delete: ttlSecondsAfterFinished
                await self._refused(uid, entry, exc, "DeleteRejected", "the delete")
                return
        for notice in step.notices:
            if notice.reason in ROUTINE_EVENTS and not self.routine_events:
                continue
            self.store(uid).post_event(entry.body, notice.type, notice.reason, notice.message)
        metrics.RETRIES.labels(queue=metrics.queue_label(_queue(entry))).inc(
            retries_recorded(obs.status, step.status))
        self._after(uid, entry, step)

    def _held_by_app(self, uid: str, step: Step, problem: tuple[str, str]) -> bool:
        """Its app cannot take the task. The planner has held it back before dispatch
        (Stalled, said once); a step that would still publish (a takeover or a republish
        of a task already out there) is not carried out at all. Either way: try again
        when the app changes, or after a capped backoff. True: carry out the step."""
        self._app_blocked[uid] = problem[1]
        if step.publish is None:
            if step.wake_at is None:
                self.schedule(uid, self.clock() + self._app_backoff.failed(uid))
            return True
        logger.warning("not sending task of %s: %s", uid, problem[1])
        self.schedule(uid, self.clock() + self._app_backoff.failed(uid))
        return False

    def _app_changed(self, key: str) -> None:
        """An app was created, changed, deleted or its Secret rotated (any thread)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake_app, key)

    def _wake_app(self, key: str) -> None:
        for uid in [u for u, k in self._app_of.items() if k == key] + list(self._app_blocked):
            self.schedule(uid, self.clock())

    def phase_counts(self, app_key: str) -> dict[str, int]:
        """Tasks by phase that use the app (for its status)."""
        counts: dict[str, int] = {}
        for uid, key in list(self._app_of.items()):
            entry = self.entries.get(uid)
            if key == app_key and entry is not None:
                phase = entry.phase or "Pending"
                counts[phase] = counts.get(phase, 0) + 1
        return counts

    def _after(self, uid: str, entry: Entry, step: Step) -> None:
        phase = entry.status.get("phase")
        task_id = current_task_id(uid, entry.status)
        if step.finished_outcome:
            queue = metrics.queue_label(_queue(entry))
            app_label = self._app_labels.get(self._app_of.get(uid, ""), "unknown")
            metrics.FINISHED.labels(queue=queue, outcome=step.finished_outcome,
                                    app=app_label).inc()
            metrics.FINISHED_BY_TASK.labels(task=metrics.task_label(_task(entry)),
                                            outcome=step.finished_outcome).inc()
            # What this process published is only needed until the attempt ends.
            self._published.pop(uid, None)
            self._forget_failures(uid)
        if task_id and (step.track or phase in {p.value for p in IN_FLIGHT}) and not (
            step.finished_outcome
        ):
            self._track(uid, str(task_id))
        else:
            tracked = self._untrack(uid)
            if tracked:
                self._hints.started.pop(tracked, None)
                self._states.pop(tracked, None)
                self._deferred.pop(tracked, None)
                self._sent_marks.pop(tracked, None)
        metrics.TRACKED_TASKS.set(len(self._tracked))
        if step.wake_at is not None:
            self.schedule(uid, step.wake_at)

    def _track(self, uid: str, task_id: str) -> None:
        old = self._tracked.get(uid)
        if old != task_id:
            if old is not None:
                self._uid_of.pop(old, None)
            self._tracked[uid] = task_id
            self._uid_of[task_id] = uid

    def _untrack(self, uid: str) -> str | None:
        task_id = self._tracked.pop(uid, None)
        if task_id is not None:
            self._uid_of.pop(task_id, None)
        return task_id

    async def _write_status(self, uid: str, entry: Entry, patch: dict[str, Any]) -> bool:
        try:
            outcome, obj = await self.store(uid).write_status(entry.body, patch)
        except Rejected as exc:
            await self._refused(uid, entry, exc, "StatusRejected", "a status update")
            return False
        if uid in self._rejected_message:
            self._rejected_message.pop(uid, None)
            self._rejected_backoff.succeeded(uid)
        if outcome == WriteOutcome.GONE or obj is None:
            self.entries.pop(uid, None)
            self.queue.forget(uid)
            self._set_due(uid, None)
            return False
        if resource_version(obj) >= entry.version:
            entry.body = slim(obj, entry.body)
        if outcome == WriteOutcome.CONFLICT:
            self.queue.again(uid)  # plan again from what is there now
            return False
        return True

    async def _refused(
        self, uid: str, entry: Entry, exc: Rejected, reason: str, what: str
    ) -> None:
        """The API server refused our request (a schema limit, a CEL rule, RBAC): the
        same request would fail again. Say so once per distinct message — in a
        condition if the API server takes that much, and a Warning — and try the step
        again later, with capped exponential backoff, never in a tight loop."""
        delay = self._rejected_backoff.failed(uid)
        message = f"the API server refused {what} ({exc.status}): {exc.message}"
        logger.warning("%s for %s refused: %s", what, _name(entry.body), message)
        if self._rejected_message.get(uid) != message:
            self._rejected_message[uid] = message
            self.store(uid).post_event(entry.body, "Warning", reason, message)
            conditions = stalled_conditions(
                entry.status.get("conditions"), reason, message,
                int(entry.meta.get("generation") or 0), self.clock(),
            )
            with contextlib.suppress(Exception):
                _, obj = await self.store(uid).write_status(
                    entry.body, {"conditions": conditions})
                if obj is not None and resource_version(obj) >= entry.version:
                    entry.body = slim(obj, entry.body)
        self.schedule(uid, self.clock() + delay)

    async def _publish(self, uid: str, entry: Entry, step: Step, app: ResolvedApp) -> None:
        assert step.publish is not None
        spec = entry.spec
        if not isinstance(spec, ScheduledTaskSpec):
            return
        order = step.publish
        meta = entry.meta
        headers = {
            "celeryoperator_uid": uid,
            "celeryoperator_namespace": str(meta.get("namespace")),
            "celeryoperator_name": str(meta.get("name")),
            "celeryoperator_attempt": str(order.attempt),
        }
        call = spec.task
        if not call.queue and app.defaults.queue:
            call = replace(call, queue=app.defaults.queue)
        pub = Publication(
            call=call, task_id=order.task_id, eta=order.eta, expires=order.expires,
            headers=headers,
        )
        loop = asyncio.get_running_loop()
        try:
            run_id, marked = await loop.run_in_executor(self._publish_pool, self._send, app, pub)
        except NotLeading:
            logger.warning("not publishing %s for %s: this process stopped leading (the next "
                           "leader takes the claim over)", order.task_id, _name(entry.body))
            return
        except Exception as exc:
            failure = self._publish_failed(uid, order.task_id, exc)
            self._publish_failures[uid] = failure
            logger.warning(
                "publishing %s for %s failed (%s, %s): %s", order.task_id, _name(entry.body),
                failure.reason, "permanent" if failure.permanent else "will retry",
                failure.message,
            )
            # The planner ends the task (permanent) or retries at failure.retry_at.
            return
        self._publish_failures.pop(uid, None)
        self._publish_backoff.succeeded(uid)
        now = self.clock()
        # Queued only for a task still waiting a while past its due time — and past its
        # burst's quiet window, when no result is read (else every task of a burst would
        # get a Queued write before its result could be seen).
        confirm_after = max(now, order.eta, self._burst_settled(uid)) + (
            self.config.queued_after) if marked else None
        self._published[uid] = Published(order.task_id, run_id, now, confirm_after)
        logger.info(
            "published %s attempt %d as %s (eta %s, rv %s)", _name(entry.body), order.attempt,
            order.task_id, order.eta.isoformat(), entry.meta.get("resourceVersion"),
        )
        self._quiet_for_burst(uid, order.eta)
        lateness = (self.clock() - order.eta).total_seconds()
        metrics.DISPATCH_LATENESS.observe(lateness)
        metrics.DISPATCHED.labels(queue=metrics.queue_label(call.queue), app=app.label).inc()

    def _send(self, app: ResolvedApp, pub: Publication) -> tuple[str | None, bool]:
        """Publish (in a publish thread); the broker's run id just before, as confirmed,
        and whether the publish is marked sent in the result store.

        The id recorded with a message says which lifetime of the broker holds it: a later,
        different id means a restart that may have lost it, and the task is sent again.
        So it must not be stale — were the broker to restart between our last check and
        this publish, the message would sit on the new broker under the old id, and be
        sent twice. Unless the id was checked within RUN_ID_FRESH, read it now (at most
        about once a second per app in a burst). A broker that does not answer is not
        published to: kombu's own retries would deliver the message to whatever lifetime
        of the broker comes back, recorded under the id from before."""
        last = self._run_id_checked.get(app.key)
        if last is None or time.monotonic() - last > RUN_ID_FRESH:
            try:
                self._noted_run_id(app, app.backend.broker_run_id())
            except Exception as exc:
                raise PublishFailed(
                    permanent=False, reason="BrokerUnavailable",
                    public_message=f"the broker is unavailable ({public_error(exc)})",
                ) from exc
        run_id = self._run_ids.get(app.key)
        if not self.leading():  # checked last thing before the broker sees it
            raise NotLeading()
        app.backend.publish(pub)
        return run_id, self._mark_sent(app, pub.task_id, run_id)

    def _mark_sent(self, app: ResolvedApp, task_id: str, run_id: str | None) -> bool:
        """The durable confirm of a publish, right after the broker accepted it. Without
        it (no run id yet, a store that keeps none, a failing store) the publish is
        confirmed in status at once, as it always was: nothing depends on the mark."""
        if run_id is None:
            return False
        try:
            marked = app.backend.mark_sent(task_id, run_id)
        except Exception as exc:
            if app.key not in self._mark_failing:
                self._mark_failing.add(app.key)
                logger.warning("app %s: sent marks cannot be written (%s): publishes are "
                               "confirmed in status instead", app.label, public_error(exc))
            return False
        if app.key in self._mark_failing:
            self._mark_failing.discard(app.key)
            logger.info("app %s: sent marks are written again", app.label)
        return marked

    def _noted_run_id(self, app: ResolvedApp, run_id: str) -> None:
        """A run id read from the app's broker (any thread): a change wakes its tasks."""
        self._run_id_checked[app.key] = time.monotonic()
        previous = self._run_ids.get(app.key)
        if not run_id or run_id == previous:
            return
        self._run_ids[app.key] = run_id
        if previous is not None:
            logger.warning("broker of app %s restarted (run id %s → %s)",
                           app.label, previous, run_id)
        if self._loop is not None:  # a restart to judge, or confirms that waited for an id
            self._loop.call_soon_threadsafe(self._wake_app_tracked, app.key)

    def _wake_app_tracked(self, key: str) -> None:
        for uid in [u for u in self._tracked if self._app_of.get(u) == key]:
            self.schedule(uid, self.clock())

    def _publish_failed(self, uid: str, task_id: str, exc: Exception) -> PublishFailure:
        """Classify a publish error (dispatch says whether a retry can help) and pick the
        time of the next try (capped exponential backoff per task id)."""
        delay = self._publish_backoff.failed(uid)
        if isinstance(exc, PublishFailed):
            permanent, reason, message = exc.permanent, exc.reason, exc.public_message
        else:
            permanent, reason, message = False, "PublishError", public_error(exc)
        return PublishFailure(task_id, permanent, reason, message, self.clock() + delay)

    def _quiet_for_burst(self, uid: str, due: datetime) -> None:
        """At a big burst's due time its workers need the machine, and its final writes
        wait until it has run anyway (`_burst_settled`): so from just before the due time
        the operator reads neither event hints nor results for a while (up to QUIET_MAX);
        what arrives meanwhile is handled after. Only for bursts claimed QUIET_MIN_EXTRA
        early or more, and never more than half the time: a steady stream of tasks (a few
        dozen a second look like small bursts) must not starve the result reads."""
        extra = self.bursts.extra_lead(uid)
        if extra < QUIET_MIN_EXTRA:
            return
        start, end = due - QUIET_BEFORE, due + min(extra, QUIET_MAX)
        if not self._quiet.admit(int(due.timestamp()), start, end, self.clock()):
            return
        for app in self.apps.apps():
            app.backend.quiet_events(start.timestamp(), end.timestamp())
        logger.info("burst due %s: quiet (no event hints, no result reads) until %s",
                    due.isoformat(), end.isoformat())

    # ---- the result tracker --------------------------------------------------------------

    async def _track_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            wait = self.poll_interval
            if self._tracked and self.leading():  # (a hinted read does not delay a sweep)
                wait = min(wait, max(0.0, self._sweep_at - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poll_now.wait(), timeout=wait)
            self._poll_now.clear()
            self._check_workers()
            if not self._tracked or not self.leading():
                self._hinted.clear()
                continue  # a standby reads no results: the leader's writes tell it
            if (quiet := self._quiet.end_at(self.clock())) is not None:
                await asyncio.sleep((quiet - self.clock()).total_seconds())
                continue
            await asyncio.sleep(0.02)  # let a burst of event hints gather into one read
            hinted, self._hinted = self._hinted, {}
            candidates: Any = hinted
            if loop.time() >= self._sweep_at:  # events are hints: some never come
                self._sweep_at = loop.time() + self.poll_interval
                candidates = self._tracked.values()
            # A final state does not change any more: read it once, not every second
            # while its (paced) finishing write is pending.
            ids = [
                task_id for task_id in candidates
                if task_id in self._uid_of and task_id not in self._deferred
                and ((known := self._states.get(task_id)) is None
                     or known.status not in TERMINAL_STATES)
            ]
            if not ids:
                continue
            states = await self._read_backends(ids)
            await self._read_sent_marks(states)
            now = self.clock()
            for task_id in ids:
                uid = self._uid_of.get(task_id)
                if uid is None:
                    continue  # forgotten or retried meanwhile
                state = states.get(task_id)
                first = task_id not in self._states  # a planner may be waiting for it
                previous = self._states.get(task_id)
                self._states[task_id] = state
                changed = first or state != previous
                if changed and state is not None and state.status in TERMINAL_STATES:
                    # Finishing writes are paced, and a burst's wait until the burst has
                    # run (as long after its due time as it was claimed before it): the
                    # API server and the CPU belong to the workers meanwhile.
                    at = max(now, self._finish_next, self._burst_settled(uid))
                    self._finish_next = at + self.finish_spacing
                    if at > now:
                        # Held back until then: no write of any kind for it meanwhile.
                        self._deferred[task_id] = (state, at)
                    self.schedule(uid, at)
                elif changed:
                    self.schedule(uid, now)

    async def _read_backends(self, ids: list[str]) -> dict[str, TaskState | None]:
        """One batched read per app's result backend; an app whose backend fails backs
        off on its own (its tasks wait), the others are read as usual."""
        loop = asyncio.get_running_loop()
        by_app: dict[str, set[str]] = {}
        for task_id in ids:
            uid = self._uid_of.get(task_id)
            if uid is not None and (key := self._app_of.get(uid)) is not None:
                by_app.setdefault(key, set()).add(task_id)
        states: dict[str, TaskState | None] = {}
        now = self.clock()
        for app in self.apps.apps():
            wanted = by_app.get(app.key)
            if not wanted or self._read_next.get(app.key, now) > now:
                continue
            try:
                states |= await loop.run_in_executor(
                    self._publish_pool, app.backend.read, wanted
                )
            except Exception as exc:
                metrics.RESULT_READ_FAILURES.labels(app=app.label).inc()
                delay = self._read_backoff.failed(app.key)
                self._read_next[app.key] = now + delay
                logger.warning(
                    "reading the result backend of app %s failed (next try in %.0f s): %s",
                    app.label, delay.total_seconds(), public_error(exc),
                )
                continue
            self._read_backoff.succeeded(app.key)
            self._read_next.pop(app.key, None)
        return states

    async def _read_sent_marks(self, states: Mapping[str, TaskState | None]) -> None:
        """The sent marks of claims this process did not make (another's, or its own
        before a restart) whose task the backend has no record of: a taker reads them
        before it publishes the task again. Rare (after a restart or failover), read
        every poll while they last, one query per app."""
        by_app: dict[str, list[str]] = {}
        dispatching = Phase.DISPATCHING.value
        for task_id, state in states.items():
            if state is not None or (uid := self._uid_of.get(task_id)) is None:
                continue
            published = self._published.get(uid)
            if published is not None and published.task_id == task_id:
                continue  # the common case: a claim this process published
            entry = self.entries.get(uid)
            if entry is None or entry.phase != dispatching:
                continue
            if (key := self._app_of.get(uid)) is not None:
                by_app.setdefault(key, []).append(task_id)
        loop = asyncio.get_running_loop()
        now = self.clock()
        for app in self.apps.apps():
            wanted = by_app.get(app.key)
            run_id = self._run_ids.get(app.key)
            if (not wanted or run_id is None or not app.backend.results_available
                    or self._read_next.get(app.key, now) > now):
                continue  # (a store that fails is read again after its backoff)
            try:
                found = await loop.run_in_executor(
                    self._publish_pool, app.backend.sent, wanted, run_id
                )
            except Exception as exc:
                delay = self._read_backoff.failed(app.key)
                self._read_next[app.key] = now + delay
                logger.warning("reading the sent marks of app %s failed (next try in %.0f s; "
                               "its claims are taken over once they can be read): %s",
                               app.label, delay.total_seconds(), public_error(exc))
                continue
            for task_id in wanted:
                self._sent_marks[task_id] = (run_id if task_id in found else None, now)

    def _burst_settled(self, uid: str) -> datetime:
        extra = self.bursts.extra_lead(uid)
        entry = self.entries.get(uid)
        if not extra or entry is None or not entry.status.get("dueTime"):
            return self.clock()
        return parse_time(str(entry.status["dueTime"])) + min(extra, SETTLE_MAX)

    def _phase(self, uid: str) -> str | None:
        entry = self.entries.get(uid)
        return entry.status.get("phase") if entry else None

    async def _broker_loop(self) -> None:
        while True:
            await asyncio.sleep(self.broker_check_interval)
            await self._check_brokers()

    async def _check_brokers(self) -> None:
        """Each app's broker run id (a change: it restarted, maybe empty); an app whose
        broker is down is asked again later and later, the others as usual."""
        loop = asyncio.get_running_loop()
        now = self.clock()
        for app in self.apps.apps():
            if self._broker_next.get(app.key, now) > now:
                continue
            try:
                # Its own thread: a publish backlog must not delay noticing a restart.
                run_id = await loop.run_in_executor(
                    self._broker_pool, app.backend.broker_run_id
                )
            except Exception as exc:
                delay = self._broker_backoff.failed(app.key)
                self._broker_next[app.key] = now + delay
                logger.warning("cannot reach the broker of app %s (next try in %.0f s): %s",
                               app.label, delay.total_seconds(), public_error(exc))
                continue
            self._broker_backoff.succeeded(app.key)
            self._broker_next.pop(app.key, None)
            self._noted_run_id(app, run_id)

    async def _consumer_loop(self) -> None:
        """Tell users when a task waits on a queue no worker consumes (a typo, a missing
        worker deployment): one Warning Event per task, the task keeps waiting."""
        loop = asyncio.get_running_loop()
        warned: set[str] = set()
        while True:
            await asyncio.sleep(self.consumer_check_interval)
            if not self.leading():
                continue
            now = self.clock()
            waiting: dict[str, list[tuple[str, Entry]]] = {}  # by app
            for uid in list(self._tracked):
                entry = self.entries.get(uid)
                if entry is None or uid in warned or entry.status.get("phase") != "Queued":
                    continue
                queued = entry.status.get("queuedTime")
                key = self._app_of.get(uid)
                if key and queued and now - parse_time(str(queued)) >= self.consumer_grace:
                    waiting.setdefault(key, []).append((uid, entry))
            for app in self.apps.apps():
                if app.key not in waiting:
                    continue
                try:
                    consumed = await loop.run_in_executor(
                        self._publish_pool, app.backend.consumed_queues
                    )
                except Exception as exc:
                    logger.warning("asking the workers of app %s for their queues failed: %s",
                                   app.label, public_error(exc))
                    continue
                self._warn_no_consumer(waiting[app.key], consumed, app, warned)
            warned &= set(self._tracked)
            self._count_no_consumer()

    def _warn_no_consumer(
        self, waiting: list[tuple[str, Entry]], consumed: set[str], app: ResolvedApp,
        warned: set[str],
    ) -> None:
        for uid, entry in waiting:
            queue = effective_queue(_queue(entry), app.defaults)
            if queue not in consumed:
                self._no_consumer[uid] = (app.label, metrics.queue_label(queue))
                warned.add(uid)
                self.store(uid).post_event(
                    entry.body, "Warning", "NoConsumer",
                    f"no running worker consumes queue {queue!r}: the task waits in the "
                    "queue until one does",
                )

    def _count_no_consumer(self) -> None:
        """The NoConsumer gauge: tasks warned about that still wait Queued, per app and
        queue; a pair whose last such task moved on (a worker came) goes back to 0."""
        counts = dict.fromkeys(self._no_consumer.values(), 0)
        for uid, labels in list(self._no_consumer.items()):
            entry = self.entries.get(uid)
            if entry is None or entry.status.get("phase") != "Queued":
                del self._no_consumer[uid]
            else:
                counts[labels] += 1
        for (app, queue), waiting in counts.items():
            metrics.NO_CONSUMER.labels(app=app, queue=queue).set(waiting)

    # ---- introspection -------------------------------------------------------------------

    def armed(self) -> int:
        """Objects with a pending wake-up (the due-time queue's live entries)."""
        return self.queue.armed()


def _name(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def _finished(status: Mapping[str, Any]) -> bool:
    phase = status.get("phase")
    return phase is not None and phase in {p.value for p in FINISHED_PHASES} and (
        phase != Phase.INVALID.value
    )


def _queue(entry: Entry) -> str | None:
    spec = entry.spec
    if isinstance(spec, ScheduledTaskSpec) and spec.task.queue:
        return spec.task.queue
    return None


def _task(entry: Entry) -> str:
    spec = entry.spec
    return spec.task.name if isinstance(spec, ScheduledTaskSpec) else "invalid"


def retries_recorded(before: Mapping[str, Any], patch: Mapping[str, Any] | None) -> int:
    """Retries a written step records (for the retries counter): a new attempt of
    spec.retry is one; a Celery retry raises status.retries by as many as it saw."""
    if patch is None or patch.get("phase") != Phase.RETRYING.value:
        return 0
    if "nextAttemptTime" in patch:
        return 1
    return max(0, int(patch.get("retries") or 0) - int(before.get("retries") or 0))
