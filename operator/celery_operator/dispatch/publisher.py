"""Publishes task messages by name from a Celery app that has no result backend."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from celery import Celery
from kombu.pools import ProducerPool

from celery_operator.api import TaskCall
from celery_operator.api.headers import reserved_header_reason
from celery_operator.dispatch.brokers import open_broker
from celery_operator.dispatch.errors import PublishFailed
from celery_operator.dispatch.publish_errors import classify
from celery_operator.dispatch.routing import RouteCheck, reserved_name


@dataclass(frozen=True)
class Publication:
    """One Celery message: the call, its deterministic id, when it runs and until when."""

    call: TaskCall
    task_id: str
    eta: datetime | None = None
    expires: datetime | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


def celery_app(
    broker_url: str,
    name: str = "celery-operator",
    transport_options: Mapping[str, Any] | None = None,
) -> Celery:
    """A JSON-only Celery app for publishing and control. No result backend: with one,
    every send_task would subscribe to a pub/sub channel for its id (celery#3808).
    `transport_options` become broker_transport_options (e.g. visibility_timeout,
    queue_order_strategy: they must match the workers' for priorities to route alike)."""
    app = Celery(name, broker=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        broker_connection_retry_on_startup=True,
        task_send_sent_event=False,
    )
    if transport_options:
        app.conf.broker_transport_options = dict(transport_options)
    # Connections and producers from pools of this app's own, not kombu's process-wide
    # ones (keyed by broker URL, shared by every app on that broker): close_app can then
    # close every broker connection the app opened without breaking another app's.
    limit = app.conf.broker_pool_limit
    app._pool = app.connection_for_write().Pool(limit=limit)
    app.amqp._producer_pool = ProducerPool(app._pool, limit=limit)  # type: ignore[no-untyped-call]
    return app


def close_app(app: Celery) -> None:
    """Close every broker connection `app` opened (Celery's own close() keeps them)."""
    app.amqp.producer_pool.force_close_all()
    app.pool.force_close_all()
    app.close()


class Publisher:
    """Thread-safe: send_task draws connections from the app's producer pool."""

    def __init__(
        self, broker_url: str, transport_options: Mapping[str, Any] | None = None
    ) -> None:
        self.broker_url = broker_url
        self.broker = open_broker(broker_url)
        options = dict(transport_options or {}) | dict(self.broker.required_transport_options)
        self.app = celery_app(broker_url, transport_options=options)
        self.routes = RouteCheck(self.app)
        self._run_id: str | None = None

    def publish(self, pub: Publication) -> None:
        """Send the message (a few connection retries first); raises only PublishFailed."""
        call = pub.call
        if (problem := reserved_name(call.queue, call.exchange)) is not None:
            raise PublishFailed(permanent=True, reason="ReservedName", public_message=problem)
        # The schema and the model refuse these; an object stored before they did must
        # still never override Celery's own message headers (task name, id, ...).
        for header in call.headers:
            if reserved_header_reason(header) is not None:
                raise PublishFailed(permanent=True, reason="ReservedName",
                                    public_message=f"header {header!r} is reserved")
        try:
            with self.app.producer_or_acquire() as producer:
                if self.broker.routes_readable:
                    # The check reads the binding table through the very channel that
                    # publishes, so it routes exactly as kombu will.
                    self.routes.check(producer, call)
                self.app.send_task(
                    call.name, producer=producer, **_options(pub),
                    **self.broker.publish_options,
                )
        except PublishFailed:
            raise
        except Exception as exc:
            self.routes.forget()  # whatever broke may have taken the bindings with it
            raise classify(exc, too_large=lambda: self._too_large(call)) from exc

    def _too_large(self, call: TaskCall) -> str | None:
        """Why the broker refuses this message for its size (None: it does not)."""
        try:
            size = len(json.dumps([list(call.args), dict(call.kwargs)]))
        except (TypeError, ValueError):
            return None
        # kombu base64-encodes the body inside its JSON envelope: at least 4/3 of it.
        return self.broker.too_large(size * 4 // 3)

    def broker_run_id(self) -> str:
        """The broker's identity (brokers.Broker.identity): it changes when the broker
        may have lost what it held, so messages published before need publishing again."""
        run_id = self.broker.identity()
        if run_id != self._run_id:
            # A broker restarted empty has no bindings until the workers reconnect: a
            # cached route would let kombu drop a republish.
            self.routes.forget()
            self._run_id = run_id
        return run_id

    def queue_length(self, queue: str) -> int:
        return self.broker.queue_depth(queue)

    def queue_consumers(self, queue: str) -> int | None:
        return self.broker.queue_consumers(queue)

    def close(self) -> None:
        self.broker.close()
        close_app(self.app)


def _options(pub: Publication) -> dict[str, Any]:
    call = pub.call
    options: dict[str, Any] = {
        "task_id": pub.task_id,
        "args": list(call.args),
        "kwargs": dict(call.kwargs),
        "headers": dict(call.headers) | dict(pub.headers),
        "retry": True,
        "retry_policy": {
            "max_retries": 3,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 2,
        },
    }
    if pub.eta is not None:
        options["eta"] = pub.eta
    if pub.expires is not None:
        options["expires"] = pub.expires
    for key, value in (
        ("queue", call.queue),
        ("routing_key", call.routing_key),
        ("exchange", call.exchange),
        ("priority", call.priority),
        ("time_limit", call.time_limit),
        ("soft_time_limit", call.soft_time_limit),
    ):
        if value is not None:
            options[key] = value
    return options

