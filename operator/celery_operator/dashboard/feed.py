"""One watch per kind feeding the cache, and the hub that streams changes to pages.

The kubernetes client is synchronous, so each watch runs in a thread; the hub hands its
events to the asyncio loop that serves the server-sent event streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from typing import Any

from celery_operator.api import PERIODIC_PLURAL, SCHEDULED_PLURAL
from celery_operator.kube.client import Rejected
from celery_operator.kube.objects import Objects, Unreachable

from .listing import first_page
from .rows import ScheduleRow, TaskRow, schedule_row, task_row
from .store import Cache

GONE, FORBIDDEN = 410, 403
RETRY_SECONDS = 5.0
QUEUE_MAX = 1000  # a page that falls this far behind is told to reload its view instead


class Hub:
    """Fans one stream of change notices out to every open page. The watches start before
    the server's loop exists (the first list overlaps the server's start): notices before
    `attach` reach no page, and none is open yet."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: set[asyncio.Queue[str]] = set()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def subscribe(self) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_MAX)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str]) -> None:
        self._queues.discard(queue)

    def publish(self, notice: dict[str, Any]) -> None:
        """Thread-safe: called from the watch threads."""
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: we are exiting
                self._loop.call_soon_threadsafe(self._fan_out, json.dumps(notice))

    def _fan_out(self, message: str) -> None:
        for queue in self._queues:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(message)


class Watcher(threading.Thread):
    """Lists a kind, then watches it from the list's resourceVersion, again and again.
    Without a namespace it watches all of them; a user whom RBAC refuses that falls back
    to `fallback` (the kubeconfig context's namespace), as kubectl get would be used."""

    def __init__(self, objects: Objects, plural: str, cache: Cache[Any], hub: Hub,
                 namespace: str | None, fallback: str) -> None:
        super().__init__(name=f"watch-{plural}", daemon=True)
        self.objects, self.plural, self.cache, self.hub = objects, plural, cache, hub
        self.namespace, self.fallback = namespace, fallback
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self._list_and_watch()
            except Rejected as exc:
                if exc.status == GONE:
                    continue  # too old to resume: list again
                if exc.status == FORBIDDEN and self.namespace is None:
                    self.namespace = self.fallback
                    continue
                self._trouble(f"Error from server ({exc.reason}): {exc.message}")
            except Unreachable as exc:
                self._trouble(f"cannot reach the Kubernetes API server: {exc}")
            self.stopped.wait(RETRY_SECONDS)

    def _trouble(self, problem: str) -> None:
        self.cache.problem = problem
        self.hub.publish({"kind": self.plural, "problem": problem})

    def _list(self) -> str:
        """The whole list into the cache (before it, while the cache is empty, a first page
        to show at once); its resourceVersion."""
        if not self.cache.synced:
            page = first_page(self.objects, self.plural, self.namespace)
            if page.whole:
                self.cache.replace(page.items)
                self._resync()
                return page.version
            self.cache.preview(page.items, page.remaining)
            self._resync()
        items, version = self.objects.snapshot(self.plural, self.namespace)
        self.cache.replace(items)
        self._resync()
        return version

    def _resync(self) -> None:
        self.hub.publish({"kind": self.plural, "resync": True})  # pages re-render

    def _list_and_watch(self) -> None:
        version = self._list()
        while not self.stopped.is_set():
            for event, obj in self.objects.watch(self.plural, self.namespace, version):
                namespace, name = self.cache.apply(event, obj)
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                self.hub.publish({"kind": self.plural, "namespace": namespace, "name": name})


class Live:
    """Both kinds' caches and the watches that feed them."""

    def __init__(self, objects: Objects, namespace: str | None, fallback: str) -> None:
        self.objects, self.namespace, self.fallback = objects, namespace, fallback
        self.tasks: Cache[TaskRow] = Cache(task_row)
        self.schedules: Cache[ScheduleRow] = Cache(schedule_row)
        self.hub = Hub()
        self.watchers: list[Watcher] = []

    def start(self) -> None:
        for plural, cache in ((SCHEDULED_PLURAL, self.tasks), (PERIODIC_PLURAL, self.schedules)):
            watcher = Watcher(self.objects, plural, cache, self.hub, self.namespace,
                              self.fallback)
            watcher.start()
            self.watchers.append(watcher)

    def stop(self) -> None:
        for watcher in self.watchers:
            watcher.stopped.set()
