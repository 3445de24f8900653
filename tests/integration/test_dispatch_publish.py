"""Publisher against a real redis-server and a real worker: what cannot be delivered is
refused with a PublishFailed that says whether a retry can help, and never shows where
the broker is."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib

from celery_operator.api import TaskCall
from celery_operator.api.celery_state import TaskState
from celery_operator.devstack import CeleryWorker, RedisServer
from celery_operator.dispatch.errors import PublishFailed
from celery_operator.dispatch.publisher import Publication, Publisher
from celery_operator.dispatch.results import ResultReader

pytestmark = pytest.mark.integration


def _publish(publisher: Publisher, **call: Any) -> str:
    task_id = str(uuid.uuid4())
    publisher.publish(Publication(TaskCall("demo.add", **call), task_id=task_id))
    return task_id


def _refused(publisher: Publisher, **call: Any) -> PublishFailed:
    with pytest.raises(PublishFailed) as info:
        _publish(publisher, **call)
    return info.value


def _wait_state(reader: ResultReader, task_id: str, timeout: float = 30) -> TaskState | None:
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = reader.read([task_id])[task_id]
        if state is not None and state.status == "SUCCESS":
            return state
        time.sleep(0.1)
    return state


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own: its settings change, or it is stopped."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


def test_a_message_to_a_bound_exchange_runs_and_one_to_an_unbound_exchange_is_refused(
    broker_url: str, backend_url: str, tmp_path: Path
) -> None:
    queue = f"route-{uuid.uuid4().hex[:6]}"
    broker = redis_lib.Redis.from_url(broker_url)
    publisher = Publisher(broker_url)
    reader = ResultReader(backend_url)
    # Before any worker declared the queue, nothing is bound for its exchange.
    failed = _refused(publisher, args=(1, 1), exchange=queue, routing_key=queue)
    assert (failed.permanent, failed.reason) == (False, "NoRoute")
    worker = CeleryWorker(broker_url, backend_url, queues=(queue,), workdir=tmp_path).start()
    try:
        # The worker bound queue <- exchange `queue` with key `queue` (Celery's defaults).
        task_id = _publish(publisher, args=(2, 3), exchange=queue, routing_key=queue)
        state = _wait_state(reader, task_id)
        assert state is not None and state.status == "SUCCESS" and state.result == 5, state

        for exchange, routing_key in ((f"{queue}-typo", queue), (queue, "wrong-key")):
            failed = _refused(publisher, args=(1, 1), exchange=exchange, routing_key=routing_key)
            assert failed.permanent is False and failed.reason == "NoRoute"
            assert failed.public_message == (
                f"no queue is bound to exchange {exchange!r} with routing key "
                f"{routing_key!r}: the broker would drop the message"
            )
        # Nothing of the refused messages reached any queue.
        assert broker.llen(queue) == 0 and broker.llen(f"{queue}-typo") == 0
    finally:
        worker.stop()
        publisher.close()
        reader.close()


def test_a_stopped_broker_is_a_transient_failure_that_names_no_address(
    own_redis: RedisServer,
) -> None:
    publisher = Publisher(own_redis.db_url(0))
    _publish(publisher, args=(1, 1))  # connected once, then the server goes away
    own_redis.stop()
    try:
        for call in ({"args": (1, 1)}, {"args": (1, 1), "exchange": "x", "routing_key": "y"}):
            failed = _refused(publisher, **call)
            assert (failed.permanent, failed.reason) == (False, "BrokerUnavailable")
            assert failed.public_message.startswith("the broker is unavailable (")
            for secret in (str(own_redis.port), "127.0.0.1", "localhost", "redis://"):
                assert secret not in failed.public_message
                assert secret not in str(failed)
            assert isinstance(failed.__cause__, Exception)  # the detail, for the logs
    finally:
        publisher.close()


def test_what_cannot_succeed_on_retry_is_permanent(own_redis: RedisServer) -> None:
    publisher = Publisher(own_redis.db_url(0))
    admin = redis_lib.Redis.from_url(own_redis.db_url(0))
    try:
        failed = _refused(publisher, args=(object(),))
        assert (failed.permanent, failed.reason) == (True, "EncodeError")

        # An expiry Celery cannot turn into seconds from now (OverflowError).
        with pytest.raises(PublishFailed) as info:
            publisher.publish(Publication(
                TaskCall("demo.add", args=(1, 1)), task_id=str(uuid.uuid4()),
                expires=datetime.min.replace(tzinfo=timezone(timedelta(hours=5))),
            ))
        assert (info.value.permanent, info.value.reason) == (True, "InvalidArguments")

        admin.set("taken", "a string, not a list")
        failed = _refused(publisher, args=(1, 1), queue="taken")
        assert (failed.permanent, failed.reason) == (True, "MessageRejected")

        for call in (
            {"queue": "celery.pidbox"}, {"queue": "unacked"}, {"queue": "_kombu.binding.celery"},
            {"queue": "celery-operator:run-once:x"}, {"exchange": "celeryev", "routing_key": "#"},
            {"exchange": "w1@host.celery.pidbox", "routing_key": "x"},
        ):
            failed = _refused(publisher, args=(1, 1), **call)
            assert (failed.permanent, failed.reason) == (True, "ReservedName")
        # Celery's own message headers can never be overridden, whatever got stored.
        for header in ("task", "id", "ignore_result", "celeryoperator_uid"):
            failed = _refused(publisher, args=(1, 1), headers={header: "x"})
            assert (failed.permanent, failed.reason) == (True, "ReservedName")
        assert admin.type("unacked") == b"none" and admin.llen("celery.pidbox") == 0

        # Redis refuses a value over proto-max-bulk-len by dropping the connection.
        admin.config_set("proto-max-bulk-len", "1mb")
        failed = _refused(publisher, args=("x" * 1_500_000,))
        assert (failed.permanent, failed.reason) == (True, "MessageRejected")
        assert "larger than the broker accepts (1048576 bytes)" in failed.public_message
        _publish(publisher, args=("x" * 1000,))  # the connection is fine for the next one
    finally:
        publisher.close()


def test_a_full_broker_is_transient(own_redis: RedisServer) -> None:
    publisher = Publisher(own_redis.db_url(0))
    admin = redis_lib.Redis.from_url(own_redis.db_url(0))
    try:
        _publish(publisher, args=(1, 1))
        admin.config_set("maxmemory", "1")  # below what is used: every write refused
        failed = _refused(publisher, args=(1, 1))
        assert (failed.permanent, failed.reason) == (False, "BrokerFull")
        admin.config_set("maxmemory", "0")
        _publish(publisher, args=(1, 1))
        assert admin.llen("celery") == 2
    finally:
        publisher.close()


def test_after_the_broker_restarts_empty_a_cached_route_is_checked_again(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    broker_url = own_redis.db_url(0)
    queue = f"restart-{uuid.uuid4().hex[:6]}"
    publisher = Publisher(broker_url)
    worker = CeleryWorker(broker_url, own_redis.db_url(1), queues=(queue,),
                          workdir=tmp_path).start()
    try:
        first_run = publisher.broker_run_id()
        _publish(publisher, args=(1, 1), exchange=queue, routing_key=queue)  # route cached
        worker.stop()
        own_redis.restart_empty()  # the binding tables are gone with everything else
        assert publisher.broker_run_id() != first_run
        failed = _refused(publisher, args=(1, 1), exchange=queue, routing_key=queue)
        assert (failed.permanent, failed.reason) == (False, "NoRoute")
    finally:
        worker.stop()
        publisher.close()
