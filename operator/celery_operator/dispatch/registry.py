"""One CeleryBackend per connection set, shared by every app that uses the same one.

A connection set is what a CeleryApp's Secrets and spec say: broker URL, result backend
URL and broker transport options. Apps hold a set by key ("CeleryApp/ns/name", "flags");
the backend is created on first use and closed when the last app holding it lets go
(deleted, or its Secret now names another broker). Thread-safe.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from celery.app.backends import BACKEND_ALIASES
from kombu.transport import TRANSPORT_ALIASES

from celery_operator.config import redact_url
from celery_operator.dispatch.backend import CeleryBackend
from celery_operator.dispatch.brokers import BROKER_SCHEMES
from celery_operator.dispatch.results import result_backend_problem

logger = logging.getLogger(__name__)

# Brokers: those dispatch.brokers has a module for; result backends: dispatch.results.
# The operator's own spelling for django-celery-results' table (Celery knows no URL).
DJANGO_BACKEND = "django-db"


@dataclass(frozen=True, repr=False)
class ConnectionSet:
    """Hashable: equal sets share one backend. Its repr hides every password."""

    broker_url: str
    result_backend_url: str
    transport_options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(
        cls,
        broker_url: str,
        result_backend_url: str,
        transport_options: Mapping[str, Any] | None = None,
    ) -> ConnectionSet:
        options = {_snake(k): v for k, v in (transport_options or {}).items() if v is not None}
        return cls(broker_url, result_backend_url, tuple(sorted(options.items())))

    def __repr__(self) -> str:
        return (
            f"ConnectionSet(broker={redact_url(self.broker_url)}, "
            f"results={redact_url(self.result_backend_url)}, "
            f"options={dict(self.transport_options)})"
        )


def _snake(name: str) -> str:
    """visibilityTimeout (the CRD's spelling) -> visibility_timeout (kombu's)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def url_problem(url: str, *, broker: bool) -> str | None:
    """Why `url` cannot be used as a broker (or result backend) URL; None when it can.
    The answer never quotes the URL: it may hold a password."""
    what = "broker" if broker else "result backend"
    known = TRANSPORT_ALIASES if broker else BACKEND_ALIASES
    if not url.strip():
        return f"the {what} URL is empty"
    if any(c.isspace() for c in url):
        return f"the {what} URL contains whitespace"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number)
    except ValueError as exc:
        return f"the {what} URL does not parse ({_why(exc)})"
    scheme = parts.scheme.lower()
    if not scheme:
        return f"the {what} URL has no scheme (e.g. redis://)"
    # Celery reads "db+postgresql" as the backend "db" over an SQLAlchemy URL.
    backend = scheme if broker else scheme.partition("+")[0]
    if backend not in known and not (backend == DJANGO_BACKEND and not broker):
        return f"the {what} URL's scheme {scheme!r} is not one Celery knows"
    if broker and scheme not in BROKER_SCHEMES:
        supported = ", ".join(f"{s}://" for s in sorted(BROKER_SCHEMES))
        return f"the {what} URL's scheme {scheme!r} is not supported (use {supported})"
    if not broker and (problem := result_backend_problem(url)) is not None:
        return problem
    if scheme == "rpc":  # results go back to the publisher: nothing to connect to
        return None
    if not parts.hostname:
        return f"the {what} URL has no host"
    path = parts.path.strip("/")
    # An AMQP URL's path is its virtual host, a database URL's a database name; Redis's
    # is a database number.
    if scheme in ("redis", "rediss") and path and not path.isdigit():
        return f"the {what} URL's database {path!r} is not a number"
    return None


def _why(exc: ValueError) -> str:
    # urlsplit's messages name the part ("Port could not be cast..."), never the value.
    text = str(exc)
    return "the port is not a number" if "Port" in text or "port" in text else "malformed"


def open_backend(conn: ConnectionSet) -> CeleryBackend:
    """A backend for `conn`; connects only when first used."""
    return CeleryBackend(conn.broker_url, conn.result_backend_url, dict(conn.transport_options))


class BackendRegistry:
    def __init__(
        self,
        open_: Callable[[ConnectionSet], CeleryBackend] = open_backend,
        on_open: Callable[[CeleryBackend], None] | None = None,
    ) -> None:
        """`on_open` runs for every new backend (e.g. to start its event listener)."""
        self._open = open_
        self._on_open = on_open
        self._lock = threading.Lock()
        self._backends: dict[ConnectionSet, CeleryBackend] = {}
        self._holders: dict[ConnectionSet, set[str]] = {}
        self._held: dict[str, ConnectionSet] = {}

    def on_every_backend(self, fn: Callable[[CeleryBackend], None]) -> None:
        """Run `fn` on every backend open now and on each one opened later (e.g. to
        start its event listener once the engine that listens exists)."""
        with self._lock:
            self._on_open = fn
            backends = list(self._backends.values())
        for backend in backends:
            fn(backend)

    def use(self, key: str, conn: ConnectionSet) -> CeleryBackend:
        """The shared backend of `conn`, now held by `key`; what `key` held before is let
        go (and closed if nobody else holds it)."""
        opened = False
        with self._lock:
            previous = self._held.get(key)
            backend = self._backends.get(conn)
            if backend is None:
                backend = self._open(conn)
                self._backends[conn] = backend
                self._holders[conn] = set()
                opened = True
            self._holders[conn].add(key)
            self._held[key] = conn
            stale = self._let_go(key, previous) if previous not in (None, conn) else None
            on_open = self._on_open
        if opened:
            logger.info("opened connection set %r for %s", conn, key)
            if on_open is not None:
                on_open(backend)
        if stale is not None:
            self._close(stale)
        return backend

    def release(self, key: str) -> None:
        """`key` holds nothing any more; its backend is closed if it was the last holder."""
        with self._lock:
            conn = self._held.pop(key, None)
            stale = self._let_go(key, conn) if conn is not None else None
        if stale is not None:
            self._close(stale)

    def backend_of(self, key: str) -> CeleryBackend | None:
        with self._lock:
            conn = self._held.get(key)
            return self._backends.get(conn) if conn is not None else None

    def open_count(self) -> int:
        """Backends open now (one per distinct connection set in use)."""
        with self._lock:
            return len(self._backends)

    def close_all(self) -> None:
        with self._lock:
            backends = list(self._backends.items())
            self._backends.clear()
            self._holders.clear()
            self._held.clear()
        for conn, backend in backends:
            self._close((conn, backend))

    def _let_go(
        self, key: str, conn: ConnectionSet | None
    ) -> tuple[ConnectionSet, CeleryBackend] | None:
        """Under the lock: drop `key` from `conn`'s holders; the backend to close, if any."""
        if conn is None:
            return None
        if self._held.get(key) == conn:
            del self._held[key]
        holders = self._holders.get(conn)
        if holders is None:
            return None
        holders.discard(key)
        if holders:
            return None
        del self._holders[conn]
        return conn, self._backends.pop(conn)

    def _close(self, stale: tuple[ConnectionSet, CeleryBackend]) -> None:
        conn, backend = stale
        try:
            backend.close()
        except Exception as exc:  # closing must not break the caller's own change
            logger.warning("closing connection set %r failed: %s", conn, exc)
        else:
            logger.info("closed connection set %r", conn)
