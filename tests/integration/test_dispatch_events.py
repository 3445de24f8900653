"""EventListener against a real redis-server: malformed events, or a handler that chokes
on one, cost neither the connection nor the hints that follow."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from celery.events.event import get_exchange
from kombu import Producer

from celery_operator.dispatch.events import EventListener, TaskEvent
from celery_operator.dispatch.publisher import celery_app

pytestmark = [pytest.mark.integration, pytest.mark.serial]


def test_malformed_events_are_cleaned_and_a_failing_handler_does_not_stop_listening(
    broker_url: str,
) -> None:
    run = uuid.uuid4().hex[:8]
    got: list[TaskEvent] = []

    def on_event(event: TaskEvent) -> None:
        if event.task_id == f"{run}-boom":
            raise RuntimeError("the handler chokes on this one")
        if run in event.task_id or run in (event.hostname or ""):
            got.append(event)

    app = celery_app(broker_url)
    listener = EventListener(app, on_event).start()
    try:
        with app.connection_for_write() as conn:
            # Celery's event exchange (a fanout over PUBLISH on Redis), raw bodies on it.
            producer = Producer(conn.default_channel, exchange=get_exchange(conn),
                                serializer="json")

            def send(routing_key: str, **body: Any) -> None:
                producer.publish(body, routing_key=routing_key)

            # Pub/sub: wait until the listener hears (probe heartbeats, bounded).
            deadline = time.monotonic() + 20
            while not got and time.monotonic() < deadline:
                send("worker.heartbeat", type="worker-heartbeat", hostname=f"probe-{run}")
                time.sleep(0.2)
            assert got, "the listener never heard a heartbeat"
            got.clear()

            send("task.started", type="task-started", uuid=f"{run}-boom", timestamp=1.0)
            send("task.succeeded", type="task-succeeded", uuid=f"{run}-big",
                 hostname=7, timestamp=1e300)
            send("task.failed", type="task-failed", uuid=5, hostname=f"w-{run}")
            send("task.retried", type="task-retried", uuid=f"{run}-text-time",
                 timestamp="yesterday")
            send("task.received", type="task-received", uuid=f"{run}-last",
                 hostname="w1@node", timestamp=1700000000.5)
            deadline = time.monotonic() + 20
            while not any(e.task_id == f"{run}-last" for e in got):
                assert time.monotonic() < deadline, f"later events were lost: {got}"
                time.sleep(0.1)
    finally:
        listener.stop()
    assert [e for e in got if not e.kind.startswith("worker-")] == [
        TaskEvent("task-succeeded", f"{run}-big", None, None),
        TaskEvent("task-retried", f"{run}-text-time", None, None),
        TaskEvent("task-received", f"{run}-last", "w1@node", 1700000000.5),
    ]
