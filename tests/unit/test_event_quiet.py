"""A burst's quiet window: event hints are held back, then delivered, and no worker is
judged by heartbeats that were waiting unread."""

import threading
import time

from celery import Celery

from celery_operator.dispatch.events import EventListener, TaskEvent

STARTED = {"type": "task-started", "uuid": "t1", "hostname": "w1", "timestamp": 1.0}


def _listening_listener(got: list[TaskEvent]) -> EventListener:
    listener = EventListener(Celery(broker="memory://"), got.append)
    listener._connected_at = time.monotonic() - 100  # as if it had listened for 100 s
    return listener


def test_events_in_a_quiet_window_are_delivered_after_it_not_lost() -> None:
    got: list[TaskEvent] = []
    listener = _listening_listener(got)
    now = time.time()
    listener.quiet(now - 0.1, now + 0.5)
    worker = threading.Thread(target=listener._handle, args=(STARTED,))
    worker.start()
    time.sleep(0.25)
    assert got == []  # held back
    assert listener.connected_for() is None  # heartbeats may be waiting: judge nothing
    worker.join(timeout=5)
    assert [(e.kind, e.task_id) for e in got] == [("task-started", "t1")]
    assert time.time() >= now + 0.5
    # Listening counts again from the end of the window, not from the connect.
    after = listener.connected_for()
    assert after is not None and after < 1.0


def test_outside_a_quiet_window_events_pass_at_once() -> None:
    got: list[TaskEvent] = []
    listener = _listening_listener(got)
    now = time.time()
    listener.quiet(now + 30, now + 40)  # a later burst
    started = time.monotonic()
    listener._handle(STARTED)
    assert len(got) == 1 and time.monotonic() - started < 0.1
    after = listener.connected_for()
    assert after is not None and after > 99
