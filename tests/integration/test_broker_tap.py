"""The broker tap counts what a real redis-server received, across a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from celery_operator.devstack import RedisServer

from .broker_tap import BrokerTap, parse_monitor_line

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    srv = RedisServer(tmp_path).start()
    yield srv
    srv.stop()


def _producer(url: str) -> Celery:
    return Celery("tap-test", broker=url, set_as_current=False)


def test_counts_every_publish_per_task_id_across_a_restart(server: RedisServer) -> None:
    with BrokerTap("127.0.0.1", server.port, db=0) as tap:
        _producer(server.db_url(0)).send_task(
            "demo.add", args=[1, 2], task_id="a", queue='odd "queue"\n', headers={"x": "é\\"}
        )
        server.restart_empty()
        tap.wait_attached(after=1)
        again = _producer(server.db_url(0))
        again.send_task("demo.add", args=[1, 2], task_id="a")
        again.send_task("demo.add", args=[1, 2], task_id="b", priority=5)
        _producer(server.db_url(3)).send_task("demo.add", task_id="other-db")
        tap.sync()
        assert tap.all_published() == {"a": 2, "b": 1}
        assert tap.queues_of("a") == {'odd "queue"\n', "celery"}
        assert tap.connections == 2
        assert tap.sessions_of("a") == [1, 2]


def test_parses_redis_quoting() -> None:
    line = b'+1.5 [2 127.0.0.1:1] "LPUSH" "q\\x06\\x163" "{\\"a\\": \\"\\\\n\\"}"'
    assert parse_monitor_line(line) == (2, [b"LPUSH", b"q\x06\x163", b'{"a": "\\n"}'])
