"""Where a message will go, checked before it is sent.

kombu's Redis transport routes a message sent to a named exchange through the binding
table `_kombu.binding.<exchange>` (members "routing_key SEP pattern SEP queue", written by
whoever declared the queue), with the exchange type the *publishing* connection knows
(direct when it never declared that exchange): direct matches the routing key exactly,
topic by pattern, fanout takes every bound queue. No match and kombu drops the message
without an error. So a mistyped exchange or routing key is refused here as NoRoute.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from celery import Celery
from kombu.messaging import Producer

from celery_operator.api import TaskCall
from celery_operator.dispatch.errors import PublishFailed

# A route found stays trusted this long: the hot path then pays no Redis round trip.
# Bindings go away when a queue is deleted (Celery workers do not do that) or when the
# broker restarts empty: then the publisher forgets every route (see `forget`).
ROUTE_CACHE_SECONDS = 10.0
ROUTE_CACHE_MAX = 1024

# Names kombu, Celery and this project use for their own keys and exchanges on the broker
# (and on the result backend, when both share a database): a task message there would
# reach worker control channels or events, or overwrite a list/set kombu relies on.
RESERVED_EXCHANGES = frozenset({"celeryev", "celery.pidbox", "reply.celery.pidbox"})
RESERVED_QUEUES = frozenset({"unacked", "unacked_index", "unacked_mutex"})
RESERVED_PREFIXES = ("_kombu.", "celeryev.", "celery-task-meta-", "celery-taskset-meta-",
                     "celery-operator:", "celery-operator-revoked-", "celery-operator-demo:")
RESERVED_SUFFIXES = (".pidbox", ".reply.celery.pidbox")
PRIORITY_SEPARATOR = "\x06\x16"  # kombu's queue/priority separator in Redis keys


def reserved_name(queue: str | None, exchange: str | None) -> str | None:
    """Why `queue` or `exchange` may not be used (None: both are fine)."""
    for kind, name in (("queue", queue), ("exchange", exchange)):
        if not name:
            continue
        if (
            name in RESERVED_EXCHANGES
            or name in RESERVED_QUEUES
            or name.startswith(RESERVED_PREFIXES)
            or name.endswith(RESERVED_SUFFIXES)
            or PRIORITY_SEPARATOR in name
        ):
            return f"{kind} {name!r} is reserved for Celery's and the operator's own use"
    return None


class RouteCheck:
    """Raises NoRoute for a message to an exchange no queue is bound for (with its key)."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._found: dict[tuple[str, str | None], float] = {}  # -> monotonic expiry
        self._lock = threading.Lock()

    def destination(self, call: TaskCall) -> tuple[str, str | None] | None:
        """(exchange, routing key) Celery will publish to, or None when it publishes
        straight to the queue (no exchange, or a direct queue without a routing key:
        Celery then ignores the exchange; see celery.app.amqp.send_task_message)."""
        if not call.exchange:
            return None
        queue = self.app.amqp.queues[call.queue or self.app.conf.task_default_queue]
        if not call.routing_key and queue.exchange.type == "direct":
            return None
        return call.exchange, call.routing_key

    def check(self, producer: Producer, call: TaskCall) -> None:
        dest = self.destination(call)
        if dest is None:
            return
        now = time.monotonic()
        with self._lock:
            if self._found.get(dest, 0.0) > now:
                return
        if not self._routed(producer.channel, call, *dest):
            exchange, routing_key = dest
            raise PublishFailed(
                permanent=False, reason="NoRoute",
                public_message=f"no queue is bound to exchange {exchange!r} with routing key "
                f"{routing_key!r}: the broker would drop the message",
            )
        with self._lock:
            if len(self._found) >= ROUTE_CACHE_MAX:
                self._found = {k: t for k, t in self._found.items() if t > now}
                if len(self._found) >= ROUTE_CACHE_MAX:
                    self._found.clear()
            self._found[dest] = now + ROUTE_CACHE_SECONDS

    def forget(self) -> None:
        """Drop every cached route: the broker restarted or the connection broke, and
        the binding tables may be gone until the workers declare their queues again."""
        with self._lock:
            self._found.clear()

    def _routed(self, channel: Any, call: TaskCall, exchange: str, routing_key: str | None) -> bool:
        kind = channel.typeof(exchange)
        if kind.lookup(channel.get_table(exchange), exchange, routing_key, None):
            return True
        # send_task declares the message's queue (and its binding) before publishing: a
        # message to that queue's own exchange and key is routed by the declare itself.
        queue = self.app.amqp.queues[call.queue or self.app.conf.task_default_queue]
        if queue.exchange.name != exchange:
            return False
        own = kind.prepare_bind(queue.name, exchange, queue.routing_key, None)
        return bool(kind.lookup([own], exchange, routing_key, None))
