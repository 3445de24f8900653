"""RabbitMQ (AMQP 0-9-1) as a broker: publisher confirms, persistent messages, durable
queues; identity kept in a durable queue on the broker itself.

Identity: the queue IDENTITY_QUEUE (durable, at most one ready message, further
publishes refused) holds one persistent message whose body is a random id. The first
operator to find the queue missing declares it and publishes an id, confirmed, so it is
on disk. A node restarted with its data keeps queue and message, so the id stays the same
and nothing is republished. A node that comes back without its data (a lost volume, a new
node behind the same URL) has no such queue: a new id is written, the id changes exactly
when the messages published under the old one may be gone, and the engines republish
every task that was Queued but not started — as after a Redis restart.
Reading takes the message without acknowledging it and rejects it back at once; another
reader of the same vhost finds the queue empty meanwhile and waits for it to come back
(readers in one process take turns; see _IDENTITY_LOCK).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import amqp
from amqp.exceptions import MessageNacked, NotFound
from kombu.connection import Connection

IDENTITY_QUEUE = "celery-operator.broker-identity"
IDENTITY_ARGUMENTS: Mapping[str, Any] = {"x-max-length": 1, "x-overflow": "reject-publish"}
# How long a reader waits for the id message another reader holds (it gives it back
# within a round trip); after that the message is taken to be gone and a new id written.
IDENTITY_HELD_SECONDS = 3.0
PERSISTENT = 2  # AMQP delivery mode
CONNECT_TIMEOUT_SECONDS = 10

# One identity read at a time in this process: two would see each other's held message
# as a missing one.
_IDENTITY_LOCK = threading.Lock()

T = TypeVar("T")


class IdentityUnreadable(RuntimeError):
    pass


class AmqpBroker:
    # Publishing waits for the broker's confirm: "Queued" means the broker has the
    # message (persistent, in a durable queue: on disk).
    required_transport_options: Mapping[str, Any] = {"confirm_publish": True}
    # An unroutable message comes back (basic.return) instead of being dropped: the
    # publish then fails with NoRoute, as the Redis route check would.
    publish_options: Mapping[str, Any] = {"mandatory": True}
    routes_readable = False

    def __init__(self, url: str) -> None:
        self._conn: Any = Connection(  # type: ignore[no-untyped-call]
            url, connect_timeout=CONNECT_TIMEOUT_SECONDS,
            transport_options=dict(self.required_transport_options),
        )
        self._channel: Any = None
        self._lock = threading.Lock()

    def identity(self) -> str:
        with _IDENTITY_LOCK:
            return self._call(self._read_identity)

    def queue_depth(self, queue: str) -> int:
        return self._call(lambda: self._queue_stats(queue))[0]

    def queue_consumers(self, queue: str) -> int | None:
        return self._call(lambda: self._queue_stats(queue))[1]

    def too_large(self, size: int) -> str | None:
        return None  # RabbitMQ says so itself (PRECONDITION_FAILED, max_message_size)

    def close(self) -> None:
        with self._lock:
            self._drop_connection()

    def _call(self, fn: Callable[[], T]) -> T:
        """`fn` on this broker's channel; once more on a fresh connection when the old
        one broke (e.g. the broker restarted since the last call)."""
        with self._lock:
            try:
                return fn()
            except self._conn.connection_errors:
                self._drop_connection()
            return fn()

    def _chan(self) -> Any:
        if self._channel is None or not self._channel.is_open:
            self._conn.ensure_connection(max_retries=1)
            self._channel = self._conn.channel()
        return self._channel

    def _drop_connection(self) -> None:
        self._channel = None
        try:
            self._conn.close()
        except Exception:  # already broken: nothing to close cleanly
            self._conn.collect()

    def _queue_stats(self, queue: str) -> tuple[int, int]:
        """(ready messages, consumers) of `queue`; (0, 0) when it does not exist."""
        try:
            _, messages, consumers = self._chan().queue_declare(queue=queue, passive=True)
        except NotFound:
            self._channel = None  # the broker closed the channel
            return 0, 0
        return int(messages), int(consumers)

    def _read_identity(self) -> str:
        try:
            self._chan().queue_declare(queue=IDENTITY_QUEUE, passive=True)
        except NotFound:
            self._channel = None
            self._chan().queue_declare(
                queue=IDENTITY_QUEUE, durable=True, auto_delete=False,
                arguments=dict(IDENTITY_ARGUMENTS),
            )
            self._offer_identity()
        for offered in (False, True):
            deadline = time.monotonic() + IDENTITY_HELD_SECONDS
            while time.monotonic() < deadline:
                if (found := self._peek_identity()) is not None:
                    return found
                time.sleep(0.05)
            if not offered:
                self._offer_identity()  # emptied by someone: this is a new lifetime
        raise IdentityUnreadable(f"queue {IDENTITY_QUEUE!r} stays empty")

    def _offer_identity(self) -> None:
        """Publish a new random id; refused (nacked) when another one is there already."""
        message = amqp.Message(uuid.uuid4().hex, delivery_mode=PERSISTENT)
        with contextlib.suppress(MessageNacked):  # the queue holds an id: that one counts
            self._chan().basic_publish(message, exchange="", routing_key=IDENTITY_QUEUE)

    def _peek_identity(self) -> str | None:
        channel = self._chan()
        message = channel.basic_get(IDENTITY_QUEUE, no_ack=False)
        if message is None:
            return None
        channel.basic_reject(message.delivery_tag, requeue=True)
        body = message.body
        return body.decode() if isinstance(body, bytes) else str(body)
