"""Broker URLs the operator accepts, and which broker module each one gets."""

from __future__ import annotations

import pytest

from celery_operator.dispatch.brokers import open_broker
from celery_operator.dispatch.brokers.amqp import AmqpBroker
from celery_operator.dispatch.brokers.redis import RedisBroker
from celery_operator.dispatch.registry import url_problem

PASSWORD = "p@ss:w/rd"
ENCODED = "p%40ss%3Aw%2Frd"


@pytest.mark.parametrize(
    "url",
    ["amqp://guest:guest@h:5672//", "pyamqp://h/vhost", "amqps://h:5671/my-vhost",
     f"amqp://u:{ENCODED}@h//"],
)
def test_amqp_broker_urls_are_accepted_with_any_virtual_host(url: str) -> None:
    assert url_problem(url, broker=True) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("amqp:///", "the broker URL has no host"),
        (f"amqp://u:{PASSWORD}@h//", "the broker URL does not parse (the port is not a number)"),
    ],
)
def test_bad_amqp_urls_are_refused_without_quoting_them(url: str, problem: str) -> None:
    assert url_problem(url, broker=True) == problem


def test_each_scheme_gets_its_broker_module_and_nothing_connects_yet() -> None:
    # Port 1 has nothing listening: opening must not try.
    for url, kind in (("redis://127.0.0.1:1/0", RedisBroker), ("rediss://127.0.0.1:1/0",
                      RedisBroker), ("amqp://127.0.0.1:1//", AmqpBroker),
                      ("pyamqp://127.0.0.1:1//", AmqpBroker)):
        broker = open_broker(url)
        assert isinstance(broker, kind)
        broker.close()


def test_an_unknown_scheme_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'sqs' is not supported"):
        open_broker("sqs://h/")
