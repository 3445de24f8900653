"""Which app a task uses: the resolution rules, pure (a snapshot of the apps in, an
answer out), so they are tested with plain values.

With `spec.app` set: that CeleryApp in the task's namespace, or that ClusterCeleryApp if
its namespaceSelector admits the namespace. Without: the CeleryApp `default` of the
namespace, else the ClusterCeleryApp annotated as default (if it admits the namespace),
else the operator's flags, else a problem naming both. An app that exists but cannot be
used (bad spec, missing Secret) is a problem: a task never silently goes elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from celery_operator.api.apps import (
    DEFAULT_APP_ANNOTATION,
    DEFAULT_APP_NAME,
    AppDefaults,
    AppPolicy,
    AppRef,
    selector_matches,
)
from celery_operator.api.names import CELERYAPP_KIND, CLUSTER_CELERYAPP_KIND
from celery_operator.dispatch.backend import CeleryBackend

FLAGS_KEY = "flags"
FLAGS_LABEL = "default"


@dataclass(frozen=True)
class ResolvedApp:
    key: str  # "CeleryApp/<ns>/<name>", "ClusterCeleryApp/<name>", "flags"
    label: str  # for metrics and messages: "<ns>/<name>", "cluster/<name>", "default"
    policy: AppPolicy
    defaults: AppDefaults
    backend: CeleryBackend  # a controllers.ports.Backend, and what the status loop needs


@dataclass(frozen=True)
class AppProblem:
    reason: str  # CamelCase: AppNotFound, AppNotAllowed, AppNotReady, SecretMissing, ...
    message: str  # names the field: 'spec.app: CeleryApp "x" not found in namespace "ns"'


@dataclass(frozen=True)
class AppState:
    """One app as the directory knows it: usable (`resolved`) or not (`problem`, whose
    message names the app's own field, e.g. spec.broker.secretKeyRef.name)."""

    kind: str
    namespace: str | None  # None for a ClusterCeleryApp
    name: str
    resolved: ResolvedApp | None
    problem: AppProblem | None
    namespace_selector: Mapping[str, object] | None = None
    is_default: bool = False


def app_key(kind: str, namespace: str | None, name: str) -> str:
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


def app_label(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else f"cluster/{name}"


def is_default_app(annotations: Mapping[str, str] | None) -> bool:
    return (annotations or {}).get(DEFAULT_APP_ANNOTATION) == "true"


def resolve_app(
    namespace: str,
    ref: AppRef | None,
    apps: Mapping[str, AppState],
    labels: Callable[[str], Mapping[str, str] | AppProblem],
    flags: ResolvedApp | None,
) -> ResolvedApp | AppProblem:
    """The app a task in `namespace` with `spec.app` = `ref` uses. `labels(ns)` gives the
    namespace's labels (or why they cannot be read), asked only when a selector matters."""
    if ref is not None:
        if ref.kind == CLUSTER_CELERYAPP_KIND:
            state = apps.get(app_key(CLUSTER_CELERYAPP_KIND, None, ref.name))
            if state is None:
                return AppProblem("AppNotFound",
                                  f'spec.app: ClusterCeleryApp "{ref.name}" not found')
            return _cluster_app(namespace, state, labels, "spec.app")
        state = apps.get(app_key(CELERYAPP_KIND, namespace, ref.name))
        if state is None:
            return AppProblem(
                "AppNotFound",
                f'spec.app: CeleryApp "{ref.name}" not found in namespace "{namespace}"',
            )
        return _usable(state, "spec.app")
    local = apps.get(app_key(CELERYAPP_KIND, namespace, DEFAULT_APP_NAME))
    if local is not None:
        return _usable(local, "spec.app (not set)")
    defaults = sorted(
        (s for s in apps.values() if s.kind == CLUSTER_CELERYAPP_KIND and s.is_default),
        key=lambda s: s.name,
    )
    for state in defaults:
        answer = _cluster_app(namespace, state, labels, "spec.app (not set)")
        if not (isinstance(answer, AppProblem) and answer.reason == "AppNotAllowed"):
            return answer
    if flags is not None:
        return flags
    return AppProblem(
        "AppNotFound",
        f'spec.app: not set, and there is neither a CeleryApp "{DEFAULT_APP_NAME}" in '
        f'namespace "{namespace}" nor a default ClusterCeleryApp (annotated '
        f'{DEFAULT_APP_ANNOTATION}: "true") that admits it',
    )


def _cluster_app(
    namespace: str,
    state: AppState,
    labels: Callable[[str], Mapping[str, str] | AppProblem],
    field: str,
) -> ResolvedApp | AppProblem:
    selector = state.namespace_selector
    if selector is None and state.problem is None:
        return AppProblem(
            "AppNotAllowed",
            f'{field}: ClusterCeleryApp "{state.name}" may not be used from namespace '
            f'"{namespace}" (it has no namespaceSelector: no namespace may use it)',
        )
    if selector is not None and selector:  # {} admits every namespace: no labels needed
        found = labels(namespace)
        if isinstance(found, AppProblem):
            return found
        if not selector_matches(selector, found):
            return AppProblem(
                "AppNotAllowed",
                f'{field}: ClusterCeleryApp "{state.name}" may not be used from namespace '
                f'"{namespace}" (its namespaceSelector does not select it)',
            )
    return _usable(state, field)


def _usable(state: AppState, field: str) -> ResolvedApp | AppProblem:
    if state.resolved is not None:
        return state.resolved
    where = f' in namespace "{state.namespace}"' if state.namespace else ""
    why = state.problem.message if state.problem else "it is not ready yet"
    reason = state.problem.reason if state.problem else "AppNotReady"
    return AppProblem(
        reason, f'{field}: {state.kind} "{state.name}"{where} cannot be used: {why}'
    )
