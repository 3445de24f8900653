"""AppDirectory: every CeleryApp and ClusterCeleryApp the operator knows, usable or not.

Fed the apps' watch bodies (`observe`), it reads each app's Secrets with `get`, builds
its connection set through the BackendRegistry and answers `resolve(namespace, ref)`
for the engines. Secrets are re-read every 30 s (a rotated password swaps the backend
without a restart) and on every spec change; a broken app is re-read with capped
exponential backoff. Namespace labels (for namespaceSelectors) are read with `get`,
cached and refreshed every 30 s.

Threads: `load`, `observe` and `refresh` may block on the API server (call them from a
thread); `resolve` blocks only the first time a namespace's labels are needed. Every
change of what an app resolves to is announced to subscribers with the app's key, from
whichever thread made it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from celery_operator.api.apps import AppDefaults, AppPolicy, AppRef, CeleryAppSpec
from celery_operator.api.apps import parse_celery_app_spec as parse_app_spec
from celery_operator.api.errors import InvalidSpec
from celery_operator.api.names import (
    CELERYAPP_KIND,
    CELERYAPP_PLURAL,
    CLUSTER_CELERYAPP_KIND,
    CLUSTER_CELERYAPP_PLURAL,
)
from celery_operator.config import redact_urls_in
from celery_operator.controllers.appresolve import (
    FLAGS_KEY,
    FLAGS_LABEL,
    AppProblem,
    AppState,
    ResolvedApp,
    app_key,
    app_label,
    is_default_app,
    resolve_app,
)
from celery_operator.controllers.appsecrets import read_connection_set
from celery_operator.dispatch.registry import BackendRegistry, ConnectionSet
from celery_operator.kube.client import Gone, Rejected
from celery_operator.scheduling.backoff import Backoff

logger = logging.getLogger(__name__)

__all__ = ["AppDirectory", "AppProblem", "AppView", "ResolvedApp"]

SECRET_REFRESH_SECONDS = 30.0
LABELS_REFRESH_SECONDS = 30.0
TICK_SECONDS = 1.0


class AppKube(Protocol):
    def get_secret(self, namespace: str, name: str) -> dict[str, str]: ...

    def get_namespace_labels(self, name: str) -> dict[str, str]: ...

    def list_objects(self, plural: str, namespace: str | None) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class AppView:
    """One app object for its status loop: the latest body and what it resolves to."""

    key: str
    kind: str
    namespace: str | None
    name: str
    body: Mapping[str, Any]
    spec: CeleryAppSpec | None
    state: AppState


@dataclass
class _Entry:
    view: AppView
    conn: ConnectionSet | None = None
    next_read: float = 0.0


class AppDirectory:
    def __init__(
        self,
        kube: AppKube,
        registry: BackendRegistry,
        *,
        operator_namespace: str,
        flags: ConnectionSet | None = None,
        secret_refresh: float = SECRET_REFRESH_SECONDS,
        labels_refresh: float = LABELS_REFRESH_SECONDS,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`operator_namespace` holds the Secrets of ClusterCeleryApps; `flags` is the
        implicit cluster default (--broker-url/--result-backend), when given."""
        self.kube = kube
        self.registry = registry
        self.operator_namespace = operator_namespace
        self.secret_refresh = secret_refresh
        self.labels_refresh = labels_refresh
        self.backoff = backoff or Backoff(initial=1.0, factor=2.0, maximum=secret_refresh)
        self.clock = clock
        self._lock = threading.Lock()  # guards the maps below (held briefly, never on I/O)
        self._apply_lock = threading.Lock()  # one Secret read and apply at a time
        self._entries: dict[str, _Entry] = {}
        self._labels: dict[str, tuple[float, dict[str, str]]] = {}
        self._subscribers: list[Callable[[str], None]] = []
        self._flags: ResolvedApp | None = None
        if flags is not None:
            self._flags = ResolvedApp(
                key=FLAGS_KEY, label=FLAGS_LABEL, policy=AppPolicy(), defaults=AppDefaults(),
                backend=registry.use(FLAGS_KEY, flags),
            )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- what the engines ask ---------------------------------------------------------------

    def resolve(self, namespace: str, ref: AppRef | None) -> ResolvedApp | AppProblem:
        with self._lock:
            states = {key: entry.view.state for key, entry in self._entries.items()}
        return resolve_app(namespace, ref, states, self._labels_of, self._flags)

    def apps(self) -> list[ResolvedApp]:
        """Every usable app, the flags' included (for per-app loops: tracking, revokes)."""
        with self._lock:
            found = [e.view.state.resolved for e in self._entries.values()]
        usable = [app for app in found if app is not None]
        return [self._flags, *usable] if self._flags is not None else usable

    def views(self) -> list[AppView]:
        """Every app object, usable or not (for their status)."""
        with self._lock:
            return [entry.view for entry in self._entries.values()]

    def view(self, key: str) -> AppView | None:
        with self._lock:
            entry = self._entries.get(key)
            return entry.view if entry is not None else None

    def subscribe(self, fn: Callable[[str], None]) -> None:
        """`fn(app key)` after every change of what that app resolves to (and when a
        namespace's labels change: then with each ClusterCeleryApp's key)."""
        self._subscribers.append(fn)

    # ---- what the watch feeds ---------------------------------------------------------------

    def load(self, namespaces: Sequence[str] = ()) -> None:
        """Read every app once before the engines start (so nothing resolves as missing
        at startup). `namespaces`: the watched ones (empty: all)."""
        listings: list[tuple[str, str, str | None]] = [
            (CLUSTER_CELERYAPP_KIND, CLUSTER_CELERYAPP_PLURAL, None)
        ]
        listings += [(CELERYAPP_KIND, CELERYAPP_PLURAL, ns) for ns in namespaces or (None,)]
        for kind, plural, namespace in listings:
            try:
                items = self.kube.list_objects(plural, namespace)
            except Exception as exc:  # no CRD, no RBAC: the watch will bring them later
                logger.warning("could not list %s: %s", plural, redact_urls_in(str(exc)))
                continue
            for body in items:
                self.observe(kind, None, body)

    def observe(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event of a CeleryApp or ClusterCeleryApp (kind as in the body)."""
        meta = body.get("metadata") or {}
        name = str(meta.get("name") or "")
        namespace = None if kind == CLUSTER_CELERYAPP_KIND else str(meta.get("namespace") or "")
        key = app_key(kind, namespace, name)
        if event_type == "DELETED":
            self._forget(key)
            return
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and _same_spec(entry.view.body, body):
            # A status write or a label change: keep the connection set, note the body.
            default = is_default_app(meta.get("annotations"))
            with self._lock:
                was_default = entry.view.state.is_default
                entry.view = replace(
                    entry.view, body=body, state=replace(entry.view.state, is_default=default)
                )
            if default != was_default:
                self._notify(key)
            return
        self._apply(key, kind, namespace, name, body)

    # ---- background refresh -----------------------------------------------------------------

    def start(self) -> AppDirectory:
        self._thread = threading.Thread(target=self._run, name="app-directory", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            try:
                self.refresh()
            except Exception:
                logger.exception("refreshing the apps failed")

    def refresh(self) -> None:
        """Re-read the Secrets of every app that is due, and namespace labels that are."""
        now = self.clock()
        with self._lock:
            due = [(k, e.view) for k, e in self._entries.items() if e.next_read <= now]
            stale = [ns for ns, (at, _) in self._labels.items() if now - at >= self.labels_refresh]
        for key, view in due:
            self._apply(key, view.kind, view.namespace, view.name, view.body, refresh=True)
        for namespace in stale:
            self._refresh_labels(namespace)

    # ---- internals --------------------------------------------------------------------------

    def _apply(
        self, key: str, kind: str, namespace: str | None, name: str, body: Mapping[str, Any],
        *, refresh: bool = False,
    ) -> None:
        """Parse, read the Secrets, swap the backend. `refresh`: only if the app is still
        the one that was due (not deleted or changed by a watch event meanwhile)."""
        with self._apply_lock:
            if refresh:
                with self._lock:
                    current = self._entries.get(key)
                if current is None or current.view.body is not body:
                    return
            self._apply_locked(key, kind, namespace, name, body)

    def _apply_locked(
        self, key: str, kind: str, namespace: str | None, name: str, body: Mapping[str, Any]
    ) -> None:
        meta = body.get("metadata") or {}
        default = is_default_app(meta.get("annotations"))
        with self._lock:
            previous = self._entries.get(key)
        spec: CeleryAppSpec | None = None
        conn: ConnectionSet | None = None
        problem: AppProblem | None = None
        selector: Mapping[str, Any] | None = None
        try:
            spec = parse_app_spec(body.get("spec"), cluster=kind == CLUSTER_CELERYAPP_KIND)
            selector = spec.namespace_selector
        except InvalidSpec as exc:
            problem = AppProblem("InvalidSpec", str(exc))
        if spec is not None:
            secrets_ns = namespace or self.operator_namespace
            try:
                found = read_connection_set(self.kube, secrets_ns, spec)
            except Exception as exc:  # the API server, not the app: keep what worked
                found = self._kept(previous, spec, exc)
            if isinstance(found, AppProblem):
                problem = found
            else:
                conn = found
        now = self.clock()
        if conn is not None:
            assert spec is not None
            self.backoff.succeeded(key)
            next_read = now + self.secret_refresh
            resolved: ResolvedApp | None = ResolvedApp(
                key=key, label=app_label(namespace, name), policy=spec.policy,
                defaults=spec.defaults, backend=self.registry.use(key, conn),
            )
        else:
            next_read = now + self.backoff.failed(key).total_seconds()
            resolved = None
            self.registry.release(key)
            if problem is not None:
                logger.warning("%s cannot be used: %s", key, redact_urls_in(problem.message))
        state = AppState(
            kind=kind, namespace=namespace, name=name, resolved=resolved, problem=problem,
            namespace_selector=selector, is_default=default,
        )
        view = AppView(key=key, kind=kind, namespace=namespace, name=name, body=body,
                       spec=spec, state=state)
        with self._lock:
            self._entries[key] = _Entry(view=view, conn=conn, next_read=next_read)
        if previous is None or previous.view.state != state:
            self._notify(key)

    def _kept(
        self, previous: _Entry | None, spec: CeleryAppSpec, exc: Exception
    ) -> ConnectionSet | AppProblem:
        """After a failed Secret read: the connection set read before, if the spec still
        names the same Secrets; else the app is not ready."""
        why = redact_urls_in(str(exc))[:300]
        old = previous.view.spec if previous is not None else None
        if (
            previous is not None
            and previous.conn is not None
            and old is not None
            and (old.broker, old.result_backend) == (spec.broker, spec.result_backend)
        ):
            logger.warning("could not re-read the Secrets of %s: %s", previous.view.key, why)
            return previous.conn
        return AppProblem(
            "AppNotReady", f"spec.broker.secretKeyRef: cannot read its Secrets yet: {why}"
        )

    def _forget(self, key: str) -> None:
        with self._apply_lock:
            with self._lock:
                entry = self._entries.pop(key, None)
            self.registry.release(key)
            self.backoff.succeeded(key)
        if entry is not None:
            self._notify(key)

    def _labels_of(self, namespace: str) -> Mapping[str, str] | AppProblem:
        with self._lock:
            cached = self._labels.get(namespace)
        if cached is not None:
            return cached[1]
        found = self._read_labels(namespace)
        if isinstance(found, AppProblem):
            return found
        with self._lock:
            self._labels[namespace] = (self.clock(), found)
        return found

    def _read_labels(self, namespace: str) -> dict[str, str] | AppProblem:
        try:
            return self.kube.get_namespace_labels(namespace)
        except (Gone, Rejected) as exc:
            why = str(exc)
        except Exception as exc:
            why = redact_urls_in(str(exc))[:300]
        return AppProblem(
            "AppNotReady",
            f'spec.app: cannot read the labels of namespace "{namespace}" to match a '
            f"ClusterCeleryApp's namespaceSelector: {why}",
        )

    def _refresh_labels(self, namespace: str) -> None:
        found = self._read_labels(namespace)
        with self._lock:
            cached = self._labels.get(namespace)
            if isinstance(found, AppProblem):  # keep the old labels until it answers
                if cached is not None:
                    self._labels[namespace] = (self.clock(), cached[1])
                return
            self._labels[namespace] = (self.clock(), found)
            changed = cached is None or cached[1] != found
            cluster_keys = [k for k, e in self._entries.items()
                            if e.view.kind == CLUSTER_CELERYAPP_KIND]
        if changed:
            for key in cluster_keys:
                self._notify(key)

    def _notify(self, key: str) -> None:
        for fn in list(self._subscribers):
            try:
                fn(key)
            except Exception:
                logger.exception("an app subscriber failed on %s", key)


def _same_spec(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Same object (uid) and same spec: nothing to re-read."""
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    return old_meta.get("uid") == new_meta.get("uid") and old.get("spec") == new.get("spec")
