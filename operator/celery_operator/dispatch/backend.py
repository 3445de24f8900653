"""Celery as the engines see it: publish, read results, revoke, broker identity."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from celery_operator.api.celery_state import TaskState
from celery_operator.dispatch.control import consumed_queues, revoke
from celery_operator.dispatch.events import EventListener, TaskEvent
from celery_operator.dispatch.publisher import Publication, Publisher
from celery_operator.dispatch.results import ResultReader
from celery_operator.dispatch.results.events import EventResults


class CeleryBackend:
    def __init__(
        self,
        broker_url: str,
        result_backend_url: str | None,
        transport_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.publisher = Publisher(broker_url, transport_options)
        self.reader = ResultReader(result_backend_url)
        self._listener: EventListener | None = None
        self._listen_lock = threading.Lock()
        self._listening = threading.Event()  # cleared when its listener is stopped

    def publish(self, pub: Publication) -> None:
        """Raises only dispatch.errors.PublishFailed."""
        self.publisher.publish(pub)

    def read(self, task_ids: Iterable[str]) -> dict[str, TaskState | None]:
        return self.reader.read(task_ids)

    def revoke(self, task_id: str, *, terminate: bool, signal: str) -> None:
        revoke(self.publisher.app, task_id, terminate=terminate, signal=signal)

    def mark_revoked(self, task_id: str) -> None:
        """Record the revoke durably in the result backend (Redis key or database row,
        for 7 days): a worker with the run-once guard refuses the task even if it missed
        every broadcast. A backend that keeps nothing (rpc://) has the broadcast only."""
        self.reader.mark_revoked(task_id)

    def mark_sent(self, task_id: str, run_id: str) -> bool:
        """Record durably, where the results are, that `task_id` went out to the broker
        lifetime `run_id` (the confirm of a publish, read by a taker of its claim).
        False: the result backend keeps no marks (rpc://). Raises ResultBackendError."""
        return self.reader.mark_sent(task_id, run_id)

    def sent(self, task_ids: Sequence[str], run_id: str) -> set[str]:
        """The ids among `task_ids` marked sent to the broker lifetime `run_id`."""
        return self.reader.sent(task_ids, run_id)

    @property
    def results_available(self) -> bool:
        """False: the result backend keeps nothing the operator can read (rpc://); task
        states then come from worker events and no result value is known."""
        return self.reader.available

    def is_revoked(self, task_id: str) -> bool:
        """Whether a revoke of this task was recorded (by this process or another)."""
        return self.reader.is_revoked(task_id)

    def consumed_queues(self) -> set[str]:
        return consumed_queues(self.publisher.app)

    def broker_run_id(self) -> str:
        return self.publisher.broker_run_id()

    def worker_queues(self, timeout: float = 1.0) -> dict[str, list[str]]:
        """Each worker that answered within `timeout`, with the queues it consumes."""
        replies = self.publisher.app.control.inspect(timeout=timeout).active_queues() or {}
        return {
            str(hostname): sorted(
                {str(q.get("name")) for q in queues or [] if isinstance(q, dict)}
            )
            for hostname, queues in replies.items()
        }

    def queue_length(self, queue: str) -> int:
        """Messages ready in `queue` on the broker (0: none, or no such queue)."""
        return self.publisher.queue_length(queue)

    def queue_consumers(self, queue: str) -> int | None:
        """Consumers of `queue` as the broker counts them (None: it cannot tell)."""
        return self.publisher.queue_consumers(queue)

    def check_result_backend(self) -> None:
        """Raises when the result backend cannot be read (one read of an id never set)."""
        self.reader.check()

    def listen(self, on_event: Callable[[TaskEvent], None], *, standby: bool = False) -> None:
        """Forward Celery task events (hints) to `on_event`, from a thread. Without a
        readable result backend the events are also the states.

        A standby acts on no event, and decoding every worker's events cost it about a
        tenth of its CPU: it does not listen, unless the events are the states (they are
        recorded for when it leads). Called again when it starts or stops leading; a new
        leader judges no worker by heartbeats until it has listened for a while."""
        with self._listen_lock:
            wanted = not standby or not self.results_available
            if wanted and self._listener is None:
                self._listening = threading.Event()
                self._listening.set()
                handler = self._handler(on_event, self._listening)
                self._listener = EventListener(self.publisher.app, handler).start()
            elif not wanted and self._listener is not None:
                self._listening.clear()  # its thread may hand over one more: dropped
                self._listener.stop()
                self._listener = None

    def _handler(
        self, on_event: Callable[[TaskEvent], None], listening: threading.Event
    ) -> Callable[[TaskEvent], None]:
        store = self.reader.store

        def handle(event: TaskEvent) -> None:
            if not listening.is_set():
                return
            if isinstance(store, EventResults):
                store.record(event)  # before the hint: the read it triggers finds it
            on_event(event)

        return handle

    def events_connected_for(self) -> float | None:
        """How long the event listener has listened without a break (None: it is not)."""
        return self._listener.connected_for() if self._listener is not None else None

    def quiet_events(self, start: float, end: float) -> None:
        """Hold event hints back from `start` to `end` (wall clock); they come after."""
        if self._listener is not None:
            self._listener.quiet(start, end)

    def close(self) -> None:
        with self._listen_lock:
            listener, self._listener = self._listener, None
            self._listening.clear()
        if listener is not None:
            listener.stop()
        self.reader.close()
        self.publisher.close()
