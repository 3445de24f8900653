"""Sorts what send_task raised into PublishFailed: permanent or transient, and why.

kombu wraps broker errors in OperationalError after its retries, so the whole chain of
causes is looked at, most specific rule first.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import amqp.exceptions as amqp_errors
import redis.exceptions as redis_errors
from kombu.exceptions import OperationalError, SerializationError, SerializerNotInstalled

from celery_operator.dispatch.errors import PublishFailed, public_error

_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    OperationalError,
    OSError,  # socket errors, ConnectionRefusedError, TimeoutError
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first(chain: list[BaseException], *kinds: type[BaseException]) -> BaseException:
    """The outermost exception of `kinds`: kombu's wrapper says the most (the innermost
    may be an unrelated error the library handled on the way)."""
    return next((e for e in chain if isinstance(e, kinds)), chain[0])


def classify(exc: BaseException, *, too_large: Callable[[], str | None]) -> PublishFailed:
    """The PublishFailed for `exc`. `too_large` is asked only after a connection error
    (Redis drops the connection on an oversized value) and says why the message is too
    big for the broker, or None."""
    chain = list(_chain(exc))

    def has(*kinds: type[BaseException]) -> bool:
        return any(isinstance(e, kinds) for e in chain)

    if has(SerializationError, SerializerNotInstalled):
        cause = _first(chain, SerializationError, SerializerNotInstalled)
        return PublishFailed(
            permanent=True, reason="EncodeError",
            public_message=f"the message cannot be encoded as JSON ({public_error(cause)})",
        )
    if has(redis_errors.NoPermissionError):
        return PublishFailed(
            permanent=True, reason="MessageRejected",
            public_message="the broker does not permit writing to this queue",
        )
    if any(isinstance(e, redis_errors.ResponseError) and "WRONGTYPE" in str(e) for e in chain):
        return PublishFailed(
            permanent=True, reason="MessageRejected",
            public_message="the broker refused the message: the queue's key holds "
            "another kind of value",
        )
    if has(redis_errors.OutOfMemoryError):
        return PublishFailed(
            permanent=False, reason="BrokerFull",
            public_message="the broker is out of memory (maxmemory reached)",
        )
    if has(redis_errors.AuthenticationError):
        return PublishFailed(
            permanent=False, reason="BrokerAuthFailed",
            public_message="the operator could not authenticate to the broker",
        )
    if (amqp := _amqp_failure(chain)) is not None:
        return amqp
    if has(*_CONNECTION_ERRORS):
        if (why := too_large()) is not None:
            return PublishFailed(permanent=True, reason="MessageRejected", public_message=why)
        cause = _first(chain, *_CONNECTION_ERRORS)
        if has(redis_errors.TimeoutError, socket.timeout, TimeoutError):
            return PublishFailed(
                permanent=False, reason="BrokerTimeout",
                public_message=f"the broker did not answer in time ({public_error(cause)})",
            )
        return PublishFailed(
            permanent=False, reason="BrokerUnavailable",
            public_message=f"the broker is unavailable ({public_error(cause)})",
        )
    if has(TypeError, ValueError, ArithmeticError):  # e.g. an eta Celery cannot represent
        return PublishFailed(
            permanent=True, reason="InvalidArguments",
            public_message=f"Celery refused the message's options ({public_error(exc)})",
        )
    if has(redis_errors.ResponseError):
        return PublishFailed(
            permanent=False, reason="BrokerError",
            public_message=f"the broker returned an error ({public_error(exc)})",
        )
    return PublishFailed(
        permanent=False, reason="PublishError",
        public_message=f"publishing failed ({public_error(exc)})",
    )


AMQP_NO_ROUTE = 312  # reply code of a mandatory message no queue is bound for


def _amqp_failure(chain: list[BaseException]) -> PublishFailed | None:
    """RabbitMQ's answers that are not outages (None: none of them is in `chain`)."""
    for exc in chain:
        code = getattr(exc, "reply_code", None) if isinstance(exc, amqp_errors.AMQPError) else None
        if code == AMQP_NO_ROUTE:
            return PublishFailed(
                permanent=False, reason="NoRoute",
                public_message="no queue is bound for the message's exchange and routing "
                "key: the broker returned it",
            )
        if isinstance(exc, amqp_errors.NotFound):
            return PublishFailed(
                permanent=False, reason="NoRoute",
                public_message=f"the broker has no such exchange ({public_error(exc)})",
            )
        if isinstance(exc, amqp_errors.AccessRefused):
            return PublishFailed(
                permanent=False, reason="BrokerAuthFailed",
                public_message=f"the broker refused access ({public_error(exc)})",
            )
        if isinstance(exc, amqp_errors.PreconditionFailed):
            too_large = "max size" in str(exc)
            return PublishFailed(
                permanent=too_large, reason="MessageRejected" if too_large else "BrokerError",
                public_message=f"the broker refused the message ({public_error(exc)})",
            )
        if isinstance(exc, amqp_errors.MessageNacked):
            return PublishFailed(
                permanent=False, reason="BrokerError",
                public_message="the broker did not confirm the message (nack)",
            )
    return None
