"""The PeriodicTask engine: creates one child ScheduledTask per fire time.

The children do the dispatching (one dispatch path). This engine keeps every
PeriodicTask and its children in memory (fed by watch events), wakes each PeriodicTask
at its next fire time from one due-time queue, and carries out `plan_periodic`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from celery_operator.api import (
    GROUP,
    PERIODIC_PLURAL,
    SCHEDULED_PLURAL,
    VERSION,
    InvalidSpec,
    PeriodicTaskSpec,
    format_time,
    parse_periodic_task_spec,
    parse_time,
)
from celery_operator.scheduling.periodic_plan import (
    Child,
    ChildOrder,
    PeriodicConfig,
    PeriodicObserved,
    plan_periodic,
)

from .bursts import BurstTracker
from .duequeue import DueQueue
from .kubeio import KubeIO, WriteOutcome, resource_version
from .ports import Kube
from .watched import Watched, slim

logger = logging.getLogger(__name__)

PARENT_LABEL = "celeryoperator.dev/periodic-task"
SCHEDULED_TIME_ANNOTATION = "celeryoperator.dev/scheduled-time"
MANUAL_LABEL = "celeryoperator.dev/manual-run"


def _key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


@dataclass
class PeriodicEntry(Watched[PeriodicTaskSpec]):
    children_listed: bool = False
    children: dict[str, Child] = field(default_factory=dict)


def child_from_body(body: Mapping[str, Any]) -> Child | None:
    meta = body.get("metadata") or {}
    stamp = (meta.get("annotations") or {}).get(SCHEDULED_TIME_ANNOTATION)
    if not stamp:
        return None
    try:
        scheduled = parse_time(stamp)
    except ValueError:
        return None
    return Child(
        name=str(meta.get("name")),
        scheduled_time=scheduled,
        phase=(body.get("status") or {}).get("phase"),
        manual=(meta.get("labels") or {}).get(MANUAL_LABEL) == "true",
        revoke_requested=bool((body.get("spec") or {}).get("revoke")),
    )


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
    ) -> None:
        self.kube = kube
        self.config = config
        # Many PeriodicTasks firing in the same second get their children created earlier.
        self.bursts = BurstTracker(create_rate, timedelta(seconds=max_extra_ahead))
        self.clock = clock
        self.io = KubeIO(kube, threads)
        self.entries: dict[str, PeriodicEntry] = {}
        # Children seen before their parent (watch order is not guaranteed).
        self._orphans: dict[str, dict[str, Child]] = {}
        self.queue = DueQueue(self.reconcile, clock, concurrency=threads,
                              name="periodictask-due-queue")

    def start(self) -> None:
        self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop()
        self.io.shutdown()

    # ---- inputs ----------------------------------------------------------------------

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = _key(str(meta.get("namespace")), str(meta.get("name")))
        if event_type == "DELETED":
            self.entries.pop(key, None)
            self.queue.forget(key)
            self.bursts.set(key, None)
            return
        entry = self.entries.get(key)
        if entry is not None and entry.meta.get("uid") != meta.get("uid"):
            entry = None  # deleted and created again under the same name
        if entry is None:
            entry = self.entries[key] = PeriodicEntry(body=slim(body))
            entry.children.update(self._orphans.pop(key, {}))
        elif resource_version(entry.body) > resource_version(body):
            return
        else:
            entry.body = slim(body)
        self.queue.now(key)

    def observe_child(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A ScheduledTask event; only children of a PeriodicTask matter here."""
        meta = body.get("metadata") or {}
        parent = (meta.get("labels") or {}).get(PARENT_LABEL)
        if not parent:
            return
        key = _key(str(meta.get("namespace")), parent)
        entry = self.entries.get(key)
        children = entry.children if entry is not None else self._orphans.setdefault(key, {})
        name = str(meta.get("name"))
        if event_type == "DELETED":
            children.pop(name, None)
        else:
            child = child_from_body(body)
            if child is None:
                return
            before = children.get(name)
            children[name] = child
            if before is not None and before.shown_phase == child.shown_phase and (
                before.revoke_requested == child.revoke_requested
            ):
                return  # nothing the parent shows or decides on has changed
        if entry is not None:
            self.queue.again(key)

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
            child = child_from_body(item)
            if child is not None:
                entry.children.setdefault(child.name, child)
        entry.children_listed = True

    async def reconcile(self, key: str) -> None:
        entry = self.entries.get(key)
        if entry is None:
            return
        if not entry.children_listed:
            await self._list_children(entry)
        meta = entry.meta
        obs = PeriodicObserved(
            name=str(meta["name"]),
            generation=int(meta.get("generation") or 0),
            created=parse_time(str(meta["creationTimestamp"])),
            spec=self._spec(entry),
            status=entry.body.get("status") or {},
            annotations=meta.get("annotations") or {},
            children=list(entry.children.values()),
            now=self.clock(),
        )
        self._note_next(key, entry)
        extra = self.bursts.extra_lead(key)
        config = replace(self.config, create_ahead=self.config.create_ahead + extra)
        step = plan_periodic(obs, config)
        namespace = str(meta["namespace"])
        for order in step.create:
            await self._create_child(entry, order)
        for name in step.revoke:
            await self.io.call(
                self.kube.patch, SCHEDULED_PLURAL, namespace, name,
                {"spec": {"revoke": {"terminate": True, "signal": "SIGTERM"}}},
            )
            if name in entry.children:
                old = entry.children[name]
                entry.children[name] = Child(old.name, old.scheduled_time, old.phase, old.manual,
                                             revoke_requested=True)
        for name in step.delete:
            await self.io.call(self.kube.delete, SCHEDULED_PLURAL, namespace, name)
            entry.children.pop(name, None)
        if step.status is not None:
            outcome, obj = await self.io.write_status(PERIODIC_PLURAL, entry.body, step.status)
            if outcome == WriteOutcome.GONE or obj is None:
                self.entries.pop(key, None)
                return
            if resource_version(obj) >= resource_version(entry.body):
                entry.body = slim(obj)
            if outcome == WriteOutcome.CONFLICT:
                self.queue.again(key)
                return
        for notice in step.notices:
            self.io.post_event(entry.body, notice.type, notice.reason, notice.message)
        self._note_next(key, entry)
        if step.wake_at is not None:
            self.queue.schedule(key, step.wake_at)

    def _note_next(self, key: str, entry: PeriodicEntry) -> None:
        """Count PeriodicTasks by the second of their next fire time (see BurstTracker)."""
        upcoming = (entry.body.get("status") or {}).get("nextScheduleTimes") or []
        second = int(parse_time(str(upcoming[0])).timestamp()) if upcoming else None
        for member, wake in self.bursts.set(key, second):
            self.queue.schedule(member, wake - self.config.create_ahead)

    async def _create_child(self, entry: PeriodicEntry, order: ChildOrder) -> None:
        meta = entry.meta
        spec = entry.body.get("spec") or {}
        task = dict(spec.get("task") or {})
        task["headers"] = {**(task.get("headers") or {}), "periodic_task_name": meta["name"]}
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
                "annotations": {SCHEDULED_TIME_ANNOTATION: format_time(order.scheduled_time)},
                "ownerReferences": [{
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "PeriodicTask",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                }],
            },
            "spec": {"task": task} if order.manual else {
                "task": task, "eta": format_time(order.scheduled_time)
            },
        }
        created = await self.io.call(self.kube.create, SCHEDULED_PLURAL, str(meta["namespace"]),
                                     body)
        if created is None:
            logger.info("child %s exists already: adopted, not created twice", order.name)
        child = Child(order.name, order.scheduled_time, None, order.manual)
        entry.children.setdefault(order.name, child)
