"""Celery events as hints: a thread that listens and forwards task-* events.

Events over Redis are PUBLISH fan-out and lost when nobody listens, and their result
is a truncated repr, so they only tell the tracker *when* to read the result backend;
the backend stays the source of truth.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Celery

logger = logging.getLogger(__name__)

TASK_EVENTS = frozenset(
    {"task-received", "task-started", "task-succeeded", "task-failed", "task-retried",
     "task-revoked", "task-rejected"}
)


WORKER_EVENTS = frozenset({"worker-online", "worker-heartbeat", "worker-offline"})
MAX_TIMESTAMP = 253402300799.0  # 9999-12-31T23:59:59Z: the last second datetime holds


@dataclass(frozen=True)
class TaskEvent:
    """A task-* event (task_id set) or a worker-* event (task_id empty)."""

    kind: str  # e.g. "task-started", "worker-heartbeat"
    task_id: str
    hostname: str | None
    timestamp: float | None
    # task-failed/-retried: the exception's repr and the traceback, as the worker sent
    exception: str | None = None
    traceback: str | None = None


def _origin(event: dict[str, Any]) -> tuple[str | None, float | None]:
    """(hostname, timestamp) of an event, each None unless it has the right type and
    the timestamp is a time a datetime can hold."""
    hostname = event.get("hostname")
    raw = event.get("timestamp")
    timestamp = None
    if isinstance(raw, int | float) and not isinstance(raw, bool) and 0 < raw < MAX_TIMESTAMP:
        timestamp = float(raw)  # NaN and infinities fail the comparison
    return hostname if isinstance(hostname, str) and hostname else None, timestamp


def _failure(event: dict[str, Any]) -> tuple[str | None, str | None]:
    exception, traceback = event.get("exception"), event.get("traceback")
    return (exception if isinstance(exception, str) else None,
            traceback if isinstance(traceback, str) else None)


class EventListener:
    """Runs `app.events.Receiver` in a daemon thread, reconnecting after broker errors."""

    def __init__(self, app: Celery, on_event: Callable[[TaskEvent], None]) -> None:
        self.app = app
        self.on_event = on_event
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="celery-events", daemon=True)
        self._receiver: Any = None
        self._connected_at: float | None = None  # monotonic time the current capture began
        self._quiet: list[tuple[float, float]] = []  # (start, end), wall clock
        self._lock = threading.Lock()

    def connected_for(self) -> float | None:
        """Seconds the listener has been listening without a break (None: not now, or it
        is holding events back, so recent heartbeats may be waiting unread)."""
        at = self._connected_at
        if at is None or self._quiet_end(time.time()) is not None:
            return None
        return time.monotonic() - at

    def quiet(self, start: float, end: float) -> None:
        """Read no events from `start` to `end` (wall clock): a burst's workers need the
        CPU then. Events published meanwhile wait in the socket and in Redis's output
        buffer for this client, and are handled after `end` (keep windows to seconds:
        Redis drops a pub/sub client whose buffer stays over 8 MB for a minute)."""
        with self._lock:
            now = time.time()
            self._quiet = [w for w in self._quiet if w[1] > now] + [(start, end)]

    def _quiet_end(self, now: float) -> float | None:
        with self._lock:
            ends = [end for start, end in self._quiet if start <= now < end]
        return max(ends) if ends else None

    def _wait_out_quiet(self) -> None:
        held = False
        while not self._stop.is_set() and (end := self._quiet_end(time.time())) is not None:
            held = True
            self._stop.wait(end - time.time())
        if held and self._connected_at is not None:
            # Heartbeats sent while we held back arrive late: judge no worker by them.
            self._connected_at = time.monotonic()

    def start(self) -> EventListener:
        self._thread.start()
        return self

    def _handle(self, event: dict[str, Any]) -> None:
        self._wait_out_quiet()
        if not isinstance(event, dict):
            return
        kind = str(event.get("type", ""))
        task_id = event.get("uuid")
        if kind in TASK_EVENTS and isinstance(task_id, str) and task_id:
            self._forward(TaskEvent(kind, task_id, *_origin(event), *_failure(event)))
        elif kind in WORKER_EVENTS:
            self._forward(TaskEvent(kind, "", *_origin(event)))

    def _forward(self, event: TaskEvent) -> None:
        # Anyone with broker access can publish events: one the handler chokes on must
        # not cost the listener its connection (and every hint after it).
        try:
            self.on_event(event)
        except Exception:
            logger.exception("handling celery event %s failed", event.kind)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self.app.connection_for_read() as conn:
                    self._receiver = self.app.events.Receiver(conn, handlers={"*": self._handle})
                    self._receiver.should_stop = False
                    conn.ensure_connection(max_retries=1)
                    self._connected_at = time.monotonic()
                    self._receiver.capture(limit=None, timeout=None, wakeup=False)
            except Exception as exc:  # broker down or restarted: listen again shortly
                self._connected_at = None
                if self._stop.is_set():
                    break
                logger.warning("celery event listener lost its connection: %s", exc)
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        if self._receiver is not None:
            self._receiver.should_stop = True
