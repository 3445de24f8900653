"""A standby does not listen to Celery events: it acts on none, and decoding every
worker's events was a tenth of its CPU (bench/failover). Where the events are the task
states (no readable result backend) it keeps listening, to have them when it leads.
A real Redis broker and Celery's own event dispatcher."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest
from celery import Celery

from celery_operator.dispatch.backend import CeleryBackend
from celery_operator.dispatch.events import TaskEvent
from tests.integration.conftest import holds_for, wait_for

_ids = itertools.count()


@pytest.fixture
def send(broker_url: str) -> Iterator[Callable[[], bool]]:
    """Publish one task-started event, as a worker would; returns True (for polling)."""
    app = Celery(broker=broker_url)
    conn = app.connection_for_write()
    dispatcher = app.events.Dispatcher(conn, hostname="worker@standby-test", enabled=True)

    def one() -> bool:
        dispatcher.send("task-started", uuid=f"task-{next(_ids)}")
        return True

    yield one
    dispatcher.close()
    conn.release()


def _task_events(heard: list[TaskEvent]) -> int:
    return sum(1 for e in heard if e.kind == "task-started")


def test_a_standby_hears_nothing_a_leader_hears_events_until_it_stands_by(
    broker_url: str, backend_url: str, send: Callable[[], bool]
) -> None:
    backend = CeleryBackend(broker_url, backend_url)
    heard: list[TaskEvent] = []
    try:
        backend.listen(heard.append, standby=True)
        assert backend.events_connected_for() is None
        holds_for(lambda: send() and not heard, 1.0, "a standby hearing no events")
        backend.listen(heard.append, standby=False)  # it leads
        wait_for(lambda: send() and _task_events(heard), 20, "the leader hearing events")
        backend.listen(heard.append, standby=True)  # it stopped leading
        assert backend.events_connected_for() is None
        before = len(heard)
        holds_for(lambda: send() and len(heard) == before, 1.0,
                  "a standby again hearing no events")
    finally:
        backend.close()


def test_a_standby_keeps_listening_where_events_are_the_task_states(
    broker_url: str, send: Callable[[], bool]
) -> None:
    backend = CeleryBackend(broker_url, "rpc://")
    heard: list[TaskEvent] = []
    try:
        assert not backend.results_available
        backend.listen(heard.append, standby=True)
        wait_for(lambda: send() and _task_events(heard), 20, "the standby hearing events")
    finally:
        backend.close()
