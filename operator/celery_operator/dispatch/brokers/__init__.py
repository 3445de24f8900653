"""What differs between brokers, behind one small interface; one module per broker.

The engines see only CeleryBackend. Publishing itself goes through Celery/kombu for every
broker; what kombu does not give alike is here: the broker's identity across restarts,
queue depth and consumers, why a message is too large, the transport options publishing
needs, and whether routes can be checked before a publish.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from celery_operator.dispatch.brokers.amqp import AmqpBroker
from celery_operator.dispatch.brokers.redis import RedisBroker

REDIS_SCHEMES = frozenset({"redis", "rediss"})
AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})
BROKER_SCHEMES = REDIS_SCHEMES | AMQP_SCHEMES


class Broker(Protocol):
    # Broker transport options the publishing app must use (over the app's own).
    required_transport_options: Mapping[str, Any]
    # Options every send_task gets on this broker.
    publish_options: Mapping[str, Any]
    # True: RouteCheck can read the broker's binding tables (kombu's Redis emulation).
    # An AMQP broker routes by itself: there messages are mandatory instead.
    routes_readable: bool

    def identity(self) -> str:
        """Changes exactly when the broker may have lost what it held (a restart without
        its data, or another broker behind the same URL)."""
        ...

    def queue_depth(self, queue: str) -> int:
        """Messages ready in `queue` (0 when it does not exist)."""
        ...

    def queue_consumers(self, queue: str) -> int | None:
        """Consumers attached to `queue` (0 when it does not exist; None: this broker
        cannot tell)."""
        ...

    def too_large(self, size: int) -> str | None:
        """Why a message body of `size` bytes is refused for its size (None: it is not,
        or the broker cannot say). Asked only after a publish failed."""
        ...

    def close(self) -> None: ...


def scheme_of(url: str) -> str:
    return urlsplit(url).scheme.lower()


def open_broker(url: str) -> Broker:
    """The broker module for `url`'s scheme; connects only when first asked."""
    scheme = scheme_of(url)
    if scheme in REDIS_SCHEMES:
        return RedisBroker(url)
    if scheme in AMQP_SCHEMES:
        return AmqpBroker(url)
    raise ValueError(f"broker URL scheme {scheme!r} is not supported")
