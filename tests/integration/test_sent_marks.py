"""Sent marks, the durable confirm of a publish: found only for the broker lifetime they
were written for, in Redis and in a fresh PostgreSQL database alike; none in rpc://."""

from __future__ import annotations

import uuid

import pytest

from celery_operator.devstack.postgresserver import PostgresServer
from celery_operator.dispatch.backend import CeleryBackend

from .conftest import fresh_database

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("store", ["redis", "postgresql"])
def test_a_mark_is_found_for_its_broker_lifetime_only(
    store: str, broker_url: str, backend_url: str, postgres: PostgresServer
) -> None:
    results = backend_url if store == "redis" else fresh_database(postgres, "marks")
    backend = CeleryBackend(broker_url, results)
    try:
        sent, other, never = (str(uuid.uuid4()) for _ in range(3))
        assert backend.mark_sent(sent, "run-1") is True
        assert backend.mark_sent(other, "run-2") is True
        assert backend.sent([sent, other, never], "run-1") == {sent}
        assert backend.sent([sent, other, never], "run-2") == {other}
        assert backend.sent([never], "run-3") == set()
        assert backend.mark_sent(sent, "run-1") is True  # again: no error, still one
        assert backend.sent([sent], "run-1") == {sent}
    finally:
        backend.close()


def test_rpc_keeps_no_marks(broker_url: str) -> None:
    backend = CeleryBackend(broker_url, "rpc://")
    try:
        task_id = str(uuid.uuid4())
        assert backend.mark_sent(task_id, "run-1") is False
        assert backend.sent([task_id], "run-1") == set()
    finally:
        backend.close()
