"""Broker URLs the operator accepts, and which broker module each one gets."""

from __future__ import annotations

import pytest
from amqp.exceptions import (
    AccessRefused,
    ChannelError,
    MessageNacked,
    NotFound,
    PreconditionFailed,
)
from kombu.exceptions import OperationalError

from celery_operator.dispatch.brokers import open_broker
from celery_operator.dispatch.brokers.amqp import AmqpBroker
from celery_operator.dispatch.brokers.redis import RedisBroker
from celery_operator.dispatch.publish_errors import classify
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


@pytest.mark.parametrize(
    ("error", "permanent", "reason", "says"),
    [
        (ChannelError("NO_ROUTE", reply_code=312), False, "NoRoute",
         "no queue is bound for the message's exchange and routing key"),
        (NotFound("NOT_FOUND - no exchange 'typo' in vhost '/'"), False, "NoRoute",
         "the broker has no such exchange"),
        (AccessRefused("ACCESS_REFUSED - Login was refused"), False, "BrokerAuthFailed",
         "the broker refused access"),
        (PreconditionFailed("PRECONDITION_FAILED - message size 200 is larger than "
                            "configured max size 100"), True, "MessageRejected",
         "message size 200 is larger"),
        (PreconditionFailed("PRECONDITION_FAILED - inequivalent arg 'x-max-priority'"),
         False, "BrokerError", "inequivalent arg"),
        (MessageNacked(), False, "BrokerError", "did not confirm the message"),
    ],
)
def test_rabbitmq_refusals_are_classified_by_what_the_broker_said(
    error: Exception, permanent: bool, reason: str, says: str
) -> None:
    try:
        raise OperationalError("publish failed") from error  # kombu's wrapper, as sent
    except OperationalError as wrapped:
        failed = classify(wrapped, too_large=lambda: None)
    assert (failed.permanent, failed.reason) == (permanent, reason)
    assert says in failed.public_message
