"""The PeriodicTask engine: creates one child ScheduledTask per fire time.

The children do the dispatching (one dispatch path). This engine keeps every
PeriodicTask and its children in memory (fed by watch events), wakes each PeriodicTask
at its next fire time from one due-time queue, and carries out `plan_periodic`.

A child is a ScheduledTask whose controller ownerReference names the parent's uid (the
label only makes listing cheap: anyone may write it). A step the API server refuses ends
there: the parent gets Ready=False with the server's message and one Warning per distinct
message, and the step is tried again with capped exponential backoff, at once only when
the user changes the spec or the run request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from celery_operator import metrics
from celery_operator.api import (
    GROUP,
    PERIODIC_PLURAL,
    SCHEDULED_PLURAL,
    VERSION,
    InvalidSpec,
    PeriodicTaskSpec,
    Phase,
    format_time,
    parse_periodic_task_spec,
    parse_time,
)
from celery_operator.api.limits import fit_status
from celery_operator.api.names import MANUAL_LABEL, PARENT_LABEL, SCHEDULED_TIME_ANNOTATION
from celery_operator.kube.client import Gone, Rejected
from celery_operator.scheduling.periodic_plan import (
    CONFLICT_BACKOFF,
    ERROR_BACKOFF,
    REJECTED_BACKOFF,
    RUN_REQUEST_ANNOTATION,
    Backoff,
    Child,
    ChildOrder,
    PeriodicConfig,
    PeriodicObserved,
    PeriodicStep,
    controller_uid,
    failed_step_conditions,
    plan_periodic,
    run_spec,
)

from .bursts import BurstTracker
from .duequeue import DueQueue
from .kubeio import KubeIO, WriteOutcome, resource_version
from .parentruns import (
    OUTCOME_WAIT,
    RUNS,
    RunsInParent,
    compact_ended,
    compose_patches,
    ended,
    foldable,
    is_run_uid,
    merge_patch,
    parent_patch_foldable,
    run_body,
    run_item,
    run_uid,
)
from .ports import Kube
from .taskstore import TaskStore
from .watched import Watched, slim

logger = logging.getLogger(__name__)

# A phase we do not know (status is writable by others) is read as "not started".
KNOWN_PHASES = frozenset(p.value for p in Phase)
# After a start, a parent waits this long (and while the list is still being taken in)
# for its children to come in by the watch before it lists them itself: 10,000 parents
# listing their children among 100,000 ScheduledTasks kept the API server busy for
# minutes (timeouts, 504).
CHILDREN_WAIT_SECONDS = 120.0
# Past that bound, while the intake still goes on, a waiting parent looks again this often
# (before it, the ledger wakes it: `children_ready`).
CHILDREN_RECHECK = timedelta(seconds=5)


def _key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


@dataclass
class Retry:
    """A failed step: not tried again before `until` unless the user changes `inputs`."""

    failures: int
    until: datetime
    inputs: tuple[Any, ...]


@dataclass
class PeriodicEntry(Watched[PeriodicTaskSpec]):
    children_listed: bool = False
    planned: bool = False  # reconciled once since this process started: its runs are armed
    children: dict[str, Child] = field(default_factory=dict)
    retry: Retry | None = None
    warned: tuple[str, str] | None = None  # the last refusal a Warning was posted for
    conflicts: int = 0  # status writes lost to another writer in a row
    # Runs kept in status.runs (runObjects Never): a status patch not written yet, folded
    # into the next write (a run's claim), written alone by `fold_at` at the latest.
    pending: dict[str, Any] = field(default_factory=dict)
    fold_at: datetime | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    hosted: set[str] = field(default_factory=set)  # its runs the task engine knows

    def status_now(self) -> Mapping[str, Any]:
        """Status as written, with what waits to be written."""
        return merge_patch(self.status, self.pending) if self.pending else self.status


class StepRefused(Exception):
    """A step that sending again will not fix: reported on the parent, retried slowly."""

    def __init__(self, reason: str, message: str, event: str, *, run: str | None = None) -> None:
        super().__init__(event)
        self.reason = reason
        self.message = message
        self.event = event
        # The same refusal of the next run names another run: one Warning for all of them.
        self.kind = message.replace(run, "<run>") if run else message


def child_from_body(body: Mapping[str, Any]) -> Child | None:
    meta = body.get("metadata") or {}
    stamp = (meta.get("annotations") or {}).get(SCHEDULED_TIME_ANNOTATION)
    if not stamp:
        return None
    try:
        scheduled = parse_time(stamp)
    except ValueError:
        return None
    phase = (body.get("status") or {}).get("phase")
    return Child(
        name=str(meta.get("name")),
        scheduled_time=scheduled,
        phase=phase if phase in KNOWN_PHASES else None,
        manual=(meta.get("labels") or {}).get(MANUAL_LABEL) == "true",
        revoke_requested=bool((body.get("spec") or {}).get("revoke")),
        uid=str(meta["uid"]) if meta.get("uid") else None,
    )


class RunHost(Protocol):
    """The task engine, as the runs kept in status.runs need it."""

    def observe_run(self, body: Mapping[str, Any], store: TaskStore) -> None: ...

    def forget_run(self, body: Mapping[str, Any]) -> None: ...


def run_child(parent_uid: str, name: str, item: Any) -> Child | None:
    """A run of status.runs as the planner sees it (None: an entry we cannot read)."""
    if not isinstance(item, Mapping):
        return None
    try:
        scheduled = parse_time(str(item.get("scheduledTime")))
    except ValueError:
        return None
    phase = (item.get("status") or {}).get("phase")
    return Child(name=name, scheduled_time=scheduled,
                 phase=phase if phase in KNOWN_PHASES else None,
                 manual=item.get("manual") is True,
                 revoke_requested=isinstance(item.get("revoke"), Mapping),
                 uid=run_uid(parent_uid, name))


def _inputs(entry: PeriodicEntry) -> tuple[Any, ...]:
    """What the user may change to have a refused step tried again at once."""
    annotations = entry.meta.get("annotations") or {}
    return (entry.meta.get("generation"), annotations.get(RUN_REQUEST_ANNOTATION))


# A parent written by someone else while the stopping leader writes what waits.
FLUSH_ATTEMPTS = 3


class PeriodicEngine:
    def __init__(
        self,
        kube: Kube,
        config: PeriodicConfig,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        threads: int = 24,
        create_rate: float = 20.0,
        max_extra_ahead: float = 60.0,
        leading: Callable[[], bool] = lambda: True,
        children_known: Callable[[str], bool] = lambda namespace: False,
        children_arriving: Callable[[], bool] = lambda: False,
        children_wait: float = CHILDREN_WAIT_SECONDS,
        tasks: RunHost | None = None,
        outcome_wait: timedelta = OUTCOME_WAIT,
    ) -> None:
        """`children_known(namespace)`: every ScheduledTask of the namespace that existed
        at the operator's first list is in memory (observe_child saw it). Until then, a
        parent's first reconcile waits for it — woken by `children_ready(namespace)`, or
        after `children_wait` seconds from the engine's start, and longer while
        `children_arriving()` (the list is still being taken in) — and then lists its
        children itself."""
        self.kube = kube
        # The task engine, which plans and dispatches the runs kept in status.runs.
        self.tasks = tasks
        # How long what may wait (a run kept in status: its outcome, the parent's view of
        # it) waits for the next claim to carry it: fewer writes, outcomes shown later.
        self.outcome_wait = outcome_wait
        self.run_store = RunsInParent(self)
        self.children_known = children_known
        self.children_arriving = children_arriving
        self.children_wait = timedelta(seconds=children_wait)
        self.started = clock()
        self.leading = leading  # leader election: a standby plans and parks, never acts
        self.config = config
        # Many PeriodicTasks firing in the same second get their children created earlier.
        self.bursts = BurstTracker(create_rate, timedelta(seconds=max_extra_ahead))
        self.clock = clock
        self.io = KubeIO(kube, threads)
        self.entries: dict[str, PeriodicEntry] = {}
        self._key_of_uid: dict[str, str] = {}
        # Children seen before their parent (watch order is not guaranteed), by the
        # parent uid they name, with the parent name their label names.
        self._orphans: dict[str, dict[str, tuple[str, Child]]] = {}
        # Parents whose first reconcile waits for their namespace's children, by namespace.
        self._awaiting_children: dict[str, set[str]] = {}
        self.queue = DueQueue(self.reconcile, clock, concurrency=threads,
                              name="periodictask-due-queue")
        metrics.PERIODIC_PLANNED.set_function(
            lambda: sum(entry.planned for entry in list(self.entries.values())))

    def start(self) -> None:
        self.queue.start()

    def resume(self) -> None:
        """This process started leading: do what was parked."""
        self.queue.unpark_all()

    async def stop(self) -> None:
        await self.queue.stop()
        self.io.shutdown()

    async def flush(self, seconds: float) -> int:
        """Stopping: what waits for a coming claim (runs' outcomes, the parents' news) is
        written now, so users see it while no operator runs, for at most `seconds`. What
        is left the next leader reads back from the result store. Returns the parents
        written."""
        if not self.leading():
            return 0
        waiting = [(key, entry) for key, entry in list(self.entries.items()) if entry.pending]

        async def write(key: str, entry: PeriodicEntry) -> bool:
            for _ in range(FLUSH_ATTEMPTS):  # a conflict brings the parent as it is now
                async with entry.lock:
                    if not entry.pending:
                        return False
                    if await self._write_now(key, entry, {}) != WriteOutcome.CONFLICT:
                        return not entry.pending
            return False

        if not waiting:
            return 0
        writes = [asyncio.create_task(write(key, entry)) for key, entry in waiting]
        done, late = await asyncio.wait(writes, timeout=seconds)
        for task in late:
            task.cancel()
        written = sum(1 for t in done if not t.cancelled() and t.exception() is None
                      and t.result())
        if written < len(waiting):
            logger.warning("stopping with %d PeriodicTasks' run outcomes unwritten: the next "
                           "leader reads them from the result store", len(waiting) - written)
        return written

    # ---- inputs ----------------------------------------------------------------------

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = _key(str(meta.get("namespace")), str(meta.get("name")))
        if event_type == "DELETED":
            # Its runs are left to Kubernetes' garbage collector (they carry the parent's
            # ownerReference); each deleted run is then handled as any deleted ScheduledTask.
            gone = self.entries.pop(key, None)
            if gone is not None:
                self._key_of_uid.pop(str(gone.meta.get("uid")), None)
                self._forget_runs(gone)
            self.queue.forget(key)
            self.bursts.set(key, None)
            return
        entry = self.entries.get(key)
        if entry is not None and entry.meta.get("uid") != meta.get("uid"):
            # Deleted and created again under the same name: a new object, new children.
            self._key_of_uid.pop(str(entry.meta.get("uid")), None)
            self._forget_runs(entry)
            entry = None
        if entry is None:
            entry = self.entries[key] = PeriodicEntry(slim(body))
            uid = str(meta.get("uid"))
            self._key_of_uid[uid] = key
            for name, (parent, child) in self._orphans.pop(uid, {}).items():
                if parent == meta.get("name"):
                    entry.children[name] = child
        elif entry.version >= resource_version(body):
            # The echo of our own status write (planned from already), or older. A run's
            # children wake the parent through observe_child; the plan's next wake-up is
            # scheduled when it is carried out.
            return
        else:
            entry.body = slim(body, entry.body)
        self._sync_runs(entry)
        self.queue.now(key)

    def observe_child(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A ScheduledTask event; only children of a PeriodicTask matter here: those whose
        controller ownerReference is a PeriodicTask's uid and whose label names it."""
        meta = body.get("metadata") or {}
        parent = (meta.get("labels") or {}).get(PARENT_LABEL)
        owner = controller_uid(meta)
        if not parent and owner is None:
            return  # a plain ScheduledTask (most of them): nothing to look up
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        child = None
        if event_type != "DELETED" and parent and owner is not None:
            child = child_from_body(body)
        labelled = _key(namespace, parent) if parent else None
        woken: list[str] = []
        # The entry it names by label and the one it names by owner: it is a child of the
        # one it names both ways; the other forgets it (a label or owner can change).
        for key in {labelled, self._key_of_uid.get(owner or "")} - {None}:
            assert key is not None
            entry = self.entries.get(key)
            if entry is None:
                continue
            if child is not None and key == labelled and entry.meta.get("uid") == owner:
                before = entry.children.get(name)
                entry.children[name] = child
                if before is not None and before.shown_phase == child.shown_phase and (
                    before.revoke_requested == child.revoke_requested
                ):
                    continue  # nothing the parent shows or decides on has changed
                woken.append(key)
            elif entry.children.pop(name, None) is not None:
                woken.append(key)
        if owner is not None:
            if child is not None and labelled not in self.entries and parent:
                self._orphans.setdefault(owner, {})[name] = (parent, child)
            else:
                self._orphans.get(owner, {}).pop(name, None)
        for key in woken:
            self.queue.again(key)

    # ---- runs kept in status.runs (runObjects: Never) ------------------------------------

    def _run_body(self, entry: PeriodicEntry, name: str, item: Mapping[str, Any]
                  ) -> dict[str, Any]:
        raw = entry.body.get("spec") or {}
        spec = self._spec(entry)
        child = run_child(str(entry.meta.get("uid")), name, item)
        order = ChildOrder(name, child.scheduled_time if child else self.clock(),
                           bool(child and child.manual))
        try:
            if not isinstance(spec, PeriodicTaskSpec):
                raise ValueError(str(spec))
            run = run_spec(raw, spec, str(entry.meta.get("name")), order)
        except ValueError:
            # A spec broken since the run started: it is tracked and revoked as it went.
            run = {"task": dict(raw.get("task") or {})}
        return run_body(entry.body, name, item, run)

    def _sync_runs(self, entry: PeriodicEntry) -> None:
        """The runs of status.runs (and those not written yet) to the task engine and
        the planner; those gone from it are forgotten (revoked if still in flight)."""
        runs = entry.status_now().get(RUNS)
        if not isinstance(runs, Mapping) and not any(
            c.uid and is_run_uid(c.uid) for c in entry.children.values()
        ):
            return  # (nearly every PeriodicTask: its runs are objects)
        runs = runs if isinstance(runs, Mapping) else {}
        parent_uid = str(entry.meta.get("uid"))
        for name, item in runs.items():
            child = run_child(parent_uid, name, item)
            if child is None:
                continue
            entry.children[name] = child
            self._host(entry, name, item)
        for name, child in list(entry.children.items()):
            if child.uid and is_run_uid(child.uid) and name not in runs:
                self._forget_run(entry, name)

    def _host(self, entry: PeriodicEntry, name: str, item: Mapping[str, Any]) -> None:
        """A run in flight is the task engine's to dispatch and follow; an ended one is
        only history here (the engine forgets it: nothing more to do)."""
        if self.tasks is None:
            return
        body = self._run_body(entry, name, item)
        if not ended(body["status"]):
            self.tasks.observe_run(body, self.run_store)
            entry.hosted.add(name)
        elif name in entry.hosted:
            entry.hosted.discard(name)
            self.tasks.forget_run(body)

    def _forget_run(self, entry: PeriodicEntry, name: str) -> None:
        child = entry.children.pop(name, None)
        entry.hosted.discard(name)
        if child is not None and self.tasks is not None:
            item = run_item(child.scheduled_time, child.manual)
            item["status"] = {"phase": child.phase} if child.phase else {}
            self.tasks.forget_run(run_body(entry.body, name, item, {}))

    def _forget_runs(self, entry: PeriodicEntry) -> None:
        for name, child in list(entry.children.items()):
            if child.uid and is_run_uid(child.uid):
                self._forget_run(entry, name)

    def _run_entry(self, body: Mapping[str, Any]) -> tuple[str, PeriodicEntry] | None:
        meta = body.get("metadata") or {}
        key = _key(str(meta.get("namespace")), str((meta.get("labels") or {}).get(PARENT_LABEL)))
        entry = self.entries.get(key)
        if entry is None or str(meta.get("uid")) != run_uid(str(entry.meta.get("uid")),
                                                            str(meta.get("name"))):
            return None
        return key, entry

    async def write_run(self, body: Mapping[str, Any], patch: Mapping[str, Any]
                        ) -> tuple[str, dict[str, Any] | None]:
        """A status write of a run (from the task engine), conditional on the run's
        status as it planned from. The claim and every write that must not be lost are
        written at once, with whatever of the parent waits; an outcome waits for the
        next one (at most `outcome_wait`), or when none is coming within it, is written
        at once with the parent's view of it (one write: the parent is planned at once)."""
        found = self._run_entry(body)
        if found is None:
            return WriteOutcome.GONE, None
        key, entry = found
        name = str((body.get("metadata") or {}).get("name"))
        async with entry.lock:
            item = (entry.status_now().get(RUNS) or {}).get(name)
            if not isinstance(item, Mapping):
                return WriteOutcome.GONE, None
            before = dict(item.get("status") or {})
            if ended(before):
                return WriteOutcome.GONE, None  # history now: the engine is done with it
            if before != dict(body.get("status") or {}):
                return WriteOutcome.CONFLICT, self._run_body(entry, name, item)
            fitted = fit_status(SCHEDULED_PLURAL, patch)
            stored = compact_ended(before, fitted) if ended(fitted) else fitted
            run_patch = {RUNS: {name: {"status": stored}}}
            if patch.get("phase") == Phase.SCHEDULED.value or (
                    foldable(patch) and self._claim_soon(entry)):
                self._fold(key, entry, run_patch)
            elif foldable(patch):
                # The parent's view changes with it (active, recentRuns, last*Time): the
                # reconcile this asks for writes both (alone, a run cost 3 writes).
                self._fold(key, entry, run_patch, within=timedelta(0))
            else:
                outcome = await self._write_now(key, entry, run_patch)
                if outcome != WriteOutcome.WRITTEN:
                    item = (entry.status_now().get(RUNS) or {}).get(name)
                    if outcome == WriteOutcome.GONE or not isinstance(item, Mapping):
                        return WriteOutcome.GONE, None
                    return outcome, self._run_body(entry, name, item)
            item = (entry.status_now().get(RUNS) or {})[name]
            self._run_changed(key, entry, name, item)
            # The engine sees what it wrote (an ended run's compact copy is the parent's).
            return WriteOutcome.WRITTEN, self._run_body(
                entry, name, {**item, "status": merge_patch(before, fitted)})

    def _run_changed(self, key: str, entry: PeriodicEntry, name: str,
                     item: Mapping[str, Any]) -> None:
        child = run_child(str(entry.meta.get("uid")), name, item)
        before = entry.children.get(name)
        if child is None:
            return
        entry.children[name] = child
        if before is None or before.shown_phase != child.shown_phase:
            self.queue.again(key)  # the parent's view of its runs changes

    def _claim_soon(self, entry: PeriodicEntry) -> bool:
        """A run is waiting for its claim (created ahead, in memory), or the next fire
        time is within `outcome_wait`: that claim will carry what waits. (Else waiting
        would only delay what users see: it is written now.)"""
        if any(c.uid and is_run_uid(c.uid) and c.phase in (None, Phase.SCHEDULED.value)
               for c in entry.children.values()):
            return True
        upcoming = entry.status_now().get("nextScheduleTimes") or []
        try:
            nearest = parse_time(str(upcoming[0])) if upcoming else None
        except ValueError:
            return False
        return nearest is not None and nearest - self.clock() <= self.outcome_wait

    def _fold(self, key: str, entry: PeriodicEntry, patch: Mapping[str, Any],
              within: timedelta | None = None) -> None:
        """`patch` waits for the next write, written alone `within` from now at the
        latest (`outcome_wait` by default; zero: by a reconcile asked for now)."""
        entry.pending = compose_patches(entry.pending, patch)
        at = self.clock() + (self.outcome_wait if within is None else within)
        if entry.fold_at is None or at < entry.fold_at:
            entry.fold_at = at
        if within == timedelta(0):
            self.queue.again(key)
        else:
            self.queue.schedule(key, entry.fold_at)

    async def _write_now(self, key: str, entry: PeriodicEntry, patch: Mapping[str, Any]
                         ) -> str:
        """Write `patch` and everything that waits, in one conditional write. On a
        conflict what waits still waits (the body is the parent as it is now)."""
        waited = entry.pending
        sent, entry.pending = compose_patches(waited, patch), {}
        fold_at, entry.fold_at = entry.fold_at, None
        try:
            outcome, obj = await self.io.write_status(PERIODIC_PLURAL, entry.body, sent)
        except BaseException:
            entry.pending = compose_patches(waited, entry.pending)
            entry.fold_at = fold_at
            raise
        if outcome == WriteOutcome.GONE or obj is None:
            self._drop(key)
            return WriteOutcome.GONE
        if resource_version(obj) >= entry.version:
            entry.body = slim(obj, entry.body)
        if outcome == WriteOutcome.CONFLICT:
            # What waited waits on; `patch` is decided again (the task engine plans the
            # run again, the planner the parent) from the parent as it is now.
            entry.pending = compose_patches(waited, entry.pending)
            entry.fold_at = fold_at
            self._sync_runs(entry)
            self._conflicted(key, entry)
            return WriteOutcome.CONFLICT
        entry.conflicts = 0
        return WriteOutcome.WRITTEN

    def _conflicted(self, key: str, entry: PeriodicEntry) -> None:
        """Planned again from the object as it is now: at once the first time, then with
        backoff (someone keeps writing it)."""
        entry.conflicts += 1
        delay = CONFLICT_BACKOFF.delay(entry.conflicts - 1)
        if delay:
            self.queue.schedule(key, self.clock() + delay)
        else:
            self.queue.again(key)

    def post_run_event(self, body: Mapping[str, Any], type_: str, reason: str,
                       message: str) -> None:
        found = self._run_entry(body)
        if found is not None:
            name = (body.get("metadata") or {}).get("name")
            self.io.post_event(found[1].body, type_, reason, f"run {name}: {message}")

    # ---- one PeriodicTask ------------------------------------------------------------------

    def _spec(self, entry: PeriodicEntry) -> PeriodicTaskSpec | InvalidSpec:
        return entry.parsed(parse_periodic_task_spec)

    async def _list_children(self, entry: PeriodicEntry) -> None:
        """Once per process and parent: the watch may not have delivered them all yet."""
        meta = entry.meta
        items = await self.io.call(
            self.kube.list, SCHEDULED_PLURAL, str(meta["namespace"]),
            f"{PARENT_LABEL}={meta['name']}",
        )
        for item in items:
            if controller_uid(item.get("metadata") or {}) != meta.get("uid"):
                continue  # carries the label, but is not ours
            child = child_from_body(item)
            if child is not None:
                entry.children.setdefault(child.name, child)
        entry.children_listed = True

    async def reconcile(self, key: str) -> None:
        entry = self.entries.get(key)
        if entry is None:
            return
        retry = entry.retry
        if retry is not None:
            if retry.inputs != _inputs(entry):
                entry.retry = None  # the user changed something: try again at once
            elif self.clock() < retry.until:
                self.queue.schedule(key, retry.until)  # a watch event woke it: not yet
                return
        try:
            await self._reconcile(key, entry)
        except StepRefused as refused:
            logger.warning("%s: %s", key, refused.event)
            self._back_off(key, entry, REJECTED_BACKOFF)
            await self._report_refused(key, entry, refused)
        except Exception:
            logger.exception("reconciling PeriodicTask %s failed", key)
            metrics.RECONCILE_ERRORS.inc()
            self._back_off(key, entry, ERROR_BACKOFF)
        else:
            entry.retry = None
            entry.warned = None
            entry.planned = entry.children_listed  # (False: waiting for its children)

    def _back_off(self, key: str, entry: PeriodicEntry, backoff: Backoff) -> None:
        failures = (entry.retry.failures if entry.retry is not None else 0) + 1
        until = self.clock() + backoff.delay(failures)
        entry.retry = Retry(failures, until, _inputs(entry))
        self.queue.schedule(key, until)
        logger.info("PeriodicTask %s: retry %d in %.1f s", key, failures,
                    backoff.delay(failures).total_seconds())

    async def _report_refused(self, key: str, entry: PeriodicEntry, refused: StepRefused) -> None:
        """Ready=False with the API server's message, and one Warning per distinct one."""
        if entry.warned != (refused.reason, refused.kind):
            entry.warned = (refused.reason, refused.kind)
            self.io.post_event(entry.body, "Warning", refused.reason, refused.event)
        conditions = failed_step_conditions(
            entry.status, generation=int(entry.meta.get("generation") or 0), now=self.clock(),
            reason=refused.reason, message=refused.message,
        )
        if conditions is None:
            return
        try:
            outcome, obj = await self.io.write_status(
                PERIODIC_PLURAL, entry.body, {"conditions": conditions}
            )
        except Exception as exc:  # reported in the log; the retry is already scheduled
            logger.warning("PeriodicTask %s: could not write the condition: %s", key, exc)
            return
        if outcome == WriteOutcome.GONE or obj is None:
            self._drop(key)
        elif resource_version(obj) >= entry.version:
            entry.body = slim(obj, entry.body)

    def _drop(self, key: str) -> None:
        gone = self.entries.pop(key, None)
        if gone is not None:
            self._key_of_uid.pop(str(gone.meta.get("uid")), None)
            self._forget_runs(gone)
            self._awaiting_children.get(str(gone.meta.get("namespace")), set()).discard(key)

    def children_ready(self, namespace: str | None) -> None:
        """Every listed ScheduledTask of `namespace` (None: of any namespace now known
        whole) was taken in: its waiting parents reconcile now."""
        for waiting in [namespace] if namespace is not None else list(self._awaiting_children):
            if waiting in self._awaiting_children and self.children_known(waiting):
                keys = self._awaiting_children.pop(waiting)
                logger.info("%d PeriodicTasks of namespace %s waited for its ScheduledTasks "
                            "to be taken in; they reconcile now", len(keys), waiting)
                for key in keys:
                    self.queue.now(key)

    async def _reconcile(self, key: str, entry: PeriodicEntry) -> None:
        if not entry.children_listed:
            namespace = str(entry.meta["namespace"])
            if self.children_known(namespace):
                entry.children_listed = True  # all of them came in by the watch
            elif self.clock() < self.started + self.children_wait or self.children_arriving():
                self._awaiting_children.setdefault(namespace, set()).add(key)
                self.queue.schedule(key, max(self.started + self.children_wait,
                                             self.clock() + CHILDREN_RECHECK))
                return
            else:
                await self._list_children(entry)
            self._awaiting_children.get(namespace, set()).discard(key)
        meta = entry.meta
        obs = PeriodicObserved(
            name=str(meta["name"]),
            generation=int(meta.get("generation") or 0),
            created=parse_time(str(meta["creationTimestamp"])),
            spec=self._spec(entry),
            status=entry.status_now(),
            annotations=meta.get("annotations") or {},
            children=list(entry.children.values()),
            now=self.clock(),
        )
        self._note_next(key, entry)
        extra = self.bursts.extra_lead(key)
        config = replace(self.config, create_ahead=self.config.create_ahead + extra)
        step = plan_periodic(obs, config)
        acts = step.create or step.revoke or step.delete or step.notices or (
            step.status is not None
        )
        if acts and not self.leading():
            self.queue.park(key)  # a standby does not act
            return
        namespace = str(meta["namespace"])
        never = isinstance(obs.spec, PeriodicTaskSpec) and obs.spec.run_objects == "Never"
        for order in step.create:
            if never:
                self._create_run(key, entry, order)
            else:
                await self._create_child(entry, order)
        for name in step.revoke:
            if self._is_run(entry, name):
                await self._revoke_run(key, entry, name)
            else:
                await self._revoke_child(entry, name)
        for name in step.delete:
            old = entry.children.get(name)
            if self._is_run(entry, name):
                self._fold(key, entry, {RUNS: {name: None}})
                self._forget_run(entry, name)
                continue
            await self.io.call(self.kube.delete, SCHEDULED_PLURAL, namespace, name,
                               uid=old.uid if old is not None else None)
            entry.children.pop(name, None)
        if step.status is not None and not await self._write_status(
                key, entry, obs, step, may_wait=never):
            return
        for notice in step.notices:
            self.io.post_event(entry.body, notice.type, notice.reason, notice.message)
        self._note_next(key, entry)
        if step.wake_at is not None:
            self.queue.schedule(key, step.wake_at)
        for name in [n for n in entry.hosted
                     if (c := entry.children.get(n)) is not None and c.finished]:
            item = (entry.status_now().get(RUNS) or {}).get(name)
            if isinstance(item, Mapping):
                self._host(entry, name, item)  # ended: the task engine is done with it
        if entry.fold_at is not None and self.clock() >= entry.fold_at and self.leading():
            async with entry.lock:  # nothing came to fold what waits into: written alone
                if entry.pending:
                    await self._write_now(key, entry, {})

    def _is_run(self, entry: PeriodicEntry, name: str) -> bool:
        child = entry.children.get(name)
        return child is not None and child.uid is not None and is_run_uid(child.uid)

    def _create_run(self, key: str, entry: PeriodicEntry, order: ChildOrder) -> None:
        """A run in status.runs: nothing is written yet (its claim will be, with this)."""
        if order.name in entry.children:
            return
        spec = self._spec(entry)
        if not isinstance(spec, PeriodicTaskSpec):
            return
        try:
            run_spec(entry.body.get("spec") or {}, spec, str(entry.meta["name"]), order)
        except ValueError as exc:
            raise StepRefused("InvalidSpec", str(exc), f"run {order.name} not created: {exc}",
                              run=order.name) from exc
        item = run_item(order.scheduled_time, order.manual)
        self._fold(key, entry, {RUNS: {order.name: item}})
        entry.children[order.name] = Child(
            order.name, order.scheduled_time, None, order.manual,
            uid=run_uid(str(entry.meta.get("uid")), order.name))
        self._host(entry, order.name, item)

    async def _revoke_run(self, key: str, entry: PeriodicEntry, name: str) -> None:
        """Replace: the run's revoke request is written at once (it must outlive us)."""
        async with entry.lock:
            revoke = {RUNS: {name: {"revoke": {"terminate": True, "signal": "SIGTERM"}}}}
            try:
                outcome = await self._write_now(key, entry, revoke)
            except Rejected as exc:
                raise StepRefused("RevokeRejected", exc.message,
                                  f"revoking run {name} refused by the API server: "
                                  f"{exc.message}", run=name) from exc
        if outcome == WriteOutcome.WRITTEN:
            self._sync_runs(entry)

    async def _write_status(self, key: str, entry: PeriodicEntry, obs: PeriodicObserved,
                            step: PeriodicStep, *, may_wait: bool) -> bool:
        """The parent's own patch, with whatever waits. Where runs live in status
        (`may_wait`) it waits for the next run's claim when it only brings the view of runs
        and schedule up to date, or comes with a run about to be claimed. True: written
        (or waiting); False: not, and the parent is planned again (conflict) or gone."""
        assert step.status is not None
        missed = missed_runs_added(obs, step)
        if may_wait and (step.create or (parent_patch_foldable(entry.status, step.status)
                                         and self._claim_soon(entry))):
            self._fold(key, entry, step.status)
            metrics.MISSED_RUNS.labels(namespace=str(entry.meta["namespace"])).inc(missed)
            return True
        async with entry.lock:
            try:
                outcome = await self._write_now(key, entry, step.status)
            except Rejected as exc:
                raise StepRefused("StatusRejected", exc.message,
                                  f"status write refused by the API server: {exc.message}"
                                  ) from exc
        if outcome == WriteOutcome.WRITTEN:
            metrics.MISSED_RUNS.labels(namespace=str(entry.meta["namespace"])).inc(missed)
        return outcome == WriteOutcome.WRITTEN

    async def _revoke_child(self, entry: PeriodicEntry, name: str) -> None:
        old = entry.children.get(name)
        body: dict[str, Any] = {"spec": {"revoke": {"terminate": True, "signal": "SIGTERM"}}}
        if old is not None and old.uid:
            body["metadata"] = {"uid": old.uid}  # only the run we know, never a look-alike
        try:
            await self.io.call(self.kube.patch, SCHEDULED_PLURAL, str(entry.meta["namespace"]),
                               name, body)
        except Gone:
            entry.children.pop(name, None)
            return
        except Rejected as exc:
            raise StepRefused("RevokeRejected", exc.message,
                              f"revoking run {name} refused by the API server: {exc.message}",
                              run=name) from exc
        if old is not None:
            entry.children[name] = replace(old, revoke_requested=True)

    def _note_next(self, key: str, entry: PeriodicEntry) -> None:
        """Count PeriodicTasks by the second of their next fire time (see BurstTracker)."""
        upcoming = (entry.body.get("status") or {}).get("nextScheduleTimes") or []
        try:
            second = int(parse_time(str(upcoming[0])).timestamp()) if upcoming else None
        except (ValueError, OverflowError):
            second = None  # status is not only ours to write: no burst lead from it
        for member, wake in self.bursts.set(key, second):
            self.queue.schedule(member, wake - self.config.create_ahead)

    async def _create_child(self, entry: PeriodicEntry, order: ChildOrder) -> None:
        meta = entry.meta
        spec = self._spec(entry)
        if not isinstance(spec, PeriodicTaskSpec):
            return  # changed to an invalid spec while this step ran: the next one says so
        try:
            child_spec = run_spec(entry.body.get("spec") or {}, spec, str(meta["name"]), order)
        except ValueError as exc:
            raise StepRefused("InvalidSpec", str(exc), f"run {order.name} not created: {exc}",
                              run=order.name) from exc
        labels = {PARENT_LABEL: str(meta["name"])}
        if order.manual:
            labels[MANUAL_LABEL] = "true"
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ScheduledTask",
            "metadata": {
                "name": order.name,
                "namespace": meta["namespace"],
                "labels": labels,
                "annotations": {SCHEDULED_TIME_ANNOTATION: format_time(order.scheduled_time,
                                                                      fraction=True)},
                "ownerReferences": [{
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "PeriodicTask",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                }],
            },
            "spec": child_spec,
        }
        namespace = str(meta["namespace"])
        try:
            created = await self.io.call(self.kube.create, SCHEDULED_PLURAL, namespace, body)
        except Rejected as exc:
            raise StepRefused("ChildRejected", exc.message,
                              f"creating run {order.name} refused by the API server: "
                              f"{exc.message}", run=order.name) from exc
        if created is None:
            existing = await self.io.call(self.kube.get, SCHEDULED_PLURAL, namespace, order.name)
            if controller_uid(existing.get("metadata") or {}) != meta.get("uid"):
                # Someone else's object has the run's name: the run cannot be created;
                # the schedule moves on (that object is left alone).
                self.io.post_event(
                    entry.body, "Warning", "RunNameTaken",
                    f"run {order.name} not created: a ScheduledTask of that name exists "
                    "and is not controlled by this PeriodicTask",
                )
                return
            logger.info("child %s exists already: adopted, not created twice", order.name)
            adopted = child_from_body(existing)
            if adopted is not None:
                entry.children.setdefault(order.name, adopted)
            return
        uid = (created.get("metadata") or {}).get("uid")
        child = Child(order.name, order.scheduled_time, None, order.manual,
                      uid=str(uid) if uid else None)
        entry.children.setdefault(order.name, child)


def missed_runs_added(obs: PeriodicObserved, step: PeriodicStep) -> int:
    """How much a written step raised status.missedRuns (for the missed-runs counter)."""
    if step.status is None or "missedRuns" not in step.status:
        return 0
    return max(0, int(step.status["missedRuns"]) - int(obs.status.get("missedRuns") or 0))
