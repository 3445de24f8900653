"""Which app a task uses: the resolution rules with plain values (no API server)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest

from celery_operator.api.apps import AppDefaults, AppPolicy, AppRef
from celery_operator.controllers.appresolve import (
    AppProblem,
    AppState,
    ResolvedApp,
    app_key,
    app_label,
    resolve_app,
)
from celery_operator.dispatch.backend import CeleryBackend


@pytest.fixture
def backend() -> Iterator[CeleryBackend]:
    made = CeleryBackend("redis://127.0.0.1:1/0", "redis://127.0.0.1:1/1")  # never used
    yield made
    made.close()


def usable(backend: CeleryBackend, kind: str, ns: str | None, name: str, *,
           selector: Mapping[str, object] | None = None, default: bool = False) -> AppState:
    resolved = ResolvedApp(key=app_key(kind, ns, name), label=app_label(ns, name),
                           policy=AppPolicy(), defaults=AppDefaults(), backend=backend)
    return AppState(kind=kind, namespace=ns, name=name, resolved=resolved, problem=None,
                    namespace_selector=selector, is_default=default)


def broken(kind: str, ns: str | None, name: str, *, default: bool = False) -> AppState:
    problem = AppProblem("SecretMissing",
                         'spec.broker.secretKeyRef.name: Secret "s" not found in namespace "x"')
    return AppState(kind=kind, namespace=ns, name=name, resolved=None, problem=problem,
                    is_default=default)


def index(*states: AppState) -> dict[str, AppState]:
    return {app_key(s.kind, s.namespace, s.name): s for s in states}


LABELS = {"team-a": {"team": "a"}, "team-b": {"team": "b"}}


def labels(ns: str) -> Mapping[str, str]:
    return LABELS[ns]


def no_labels(ns: str) -> Mapping[str, str]:
    raise AssertionError("labels are not needed here")


def test_a_named_celeryapp_is_looked_up_in_the_tasks_own_namespace(
    backend: CeleryBackend,
) -> None:
    apps = index(usable(backend, "CeleryApp", "team-b", "billing"))
    answer = resolve_app("team-a", AppRef("CeleryApp", "billing"), apps, no_labels, None)
    assert answer == AppProblem(
        "AppNotFound", 'spec.app: CeleryApp "billing" not found in namespace "team-a"')
    found = resolve_app("team-b", AppRef("CeleryApp", "billing"), apps, no_labels, None)
    assert isinstance(found, ResolvedApp)
    assert (found.key, found.label) == ("CeleryApp/team-b/billing", "team-b/billing")


def test_a_cluster_app_is_used_only_from_namespaces_its_selector_admits(
    backend: CeleryBackend,
) -> None:
    apps = index(
        usable(backend, "ClusterCeleryApp", None, "shared",
               selector={"matchLabels": {"team": "a"}}),
        usable(backend, "ClusterCeleryApp", None, "closed", selector=None),
        usable(backend, "ClusterCeleryApp", None, "open", selector={}),
    )
    ok = resolve_app("team-a", AppRef("ClusterCeleryApp", "shared"), apps, labels, None)
    assert isinstance(ok, ResolvedApp) and ok.label == "cluster/shared"
    assert resolve_app("team-b", AppRef("ClusterCeleryApp", "shared"), apps, labels, None) == (
        AppProblem("AppNotAllowed", 'spec.app: ClusterCeleryApp "shared" may not be used from '
                   'namespace "team-b" (its namespaceSelector does not select it)'))
    closed = resolve_app("team-a", AppRef("ClusterCeleryApp", "closed"), apps, labels, None)
    assert isinstance(closed, AppProblem) and closed.reason == "AppNotAllowed"
    assert "no namespaceSelector" in closed.message
    assert isinstance(resolve_app("team-b", AppRef("ClusterCeleryApp", "open"), apps,
                                  no_labels, None), ResolvedApp)
    assert resolve_app("team-a", AppRef("ClusterCeleryApp", "nope"), apps, labels, None) == (
        AppProblem("AppNotFound", 'spec.app: ClusterCeleryApp "nope" not found'))


def test_without_spec_app_the_namespace_default_then_the_cluster_default_then_the_flags(
    backend: CeleryBackend,
) -> None:
    flags = ResolvedApp(key="flags", label="default", policy=AppPolicy(),
                        defaults=AppDefaults(), backend=backend)
    local = usable(backend, "CeleryApp", "team-a", "default")
    cluster = usable(backend, "ClusterCeleryApp", None, "shared", default=True,
                     selector={"matchExpressions": [{"key": "team", "operator": "In",
                                                     "values": ["a"]}]})
    other = usable(backend, "ClusterCeleryApp", None, "other", selector={})  # not default
    both = index(local, cluster, other)
    chosen = resolve_app("team-a", None, both, labels, flags)
    assert isinstance(chosen, ResolvedApp) and chosen.key == "CeleryApp/team-a/default"
    chosen = resolve_app("team-a", None, index(cluster, other), labels, flags)
    assert isinstance(chosen, ResolvedApp) and chosen.key == "ClusterCeleryApp/shared"
    # team-b is not admitted by the cluster default: the flags serve it.
    assert resolve_app("team-b", None, index(cluster, other), labels, flags) is flags
    answer = resolve_app("team-b", None, index(cluster, other), labels, None)
    assert answer == AppProblem(
        "AppNotFound",
        'spec.app: not set, and there is neither a CeleryApp "default" in namespace "team-b" '
        'nor a default ClusterCeleryApp (annotated celeryoperator.dev/default-app: "true") '
        "that admits it",
    )


def test_a_broken_app_is_a_problem_and_never_falls_through_to_another(
    backend: CeleryBackend,
) -> None:
    flags = ResolvedApp(key="flags", label="default", policy=AppPolicy(),
                        defaults=AppDefaults(), backend=backend)
    apps = index(broken("CeleryApp", "team-a", "default"),
                 broken("ClusterCeleryApp", None, "shared", default=True))
    answer = resolve_app("team-a", None, apps, labels, flags)
    assert answer == AppProblem(
        "SecretMissing",
        'spec.app (not set): CeleryApp "default" in namespace "team-a" cannot be used: '
        'spec.broker.secretKeyRef.name: Secret "s" not found in namespace "x"',
    )
    answer = resolve_app("team-b", None, apps, labels, flags)
    assert isinstance(answer, AppProblem) and answer.reason == "SecretMissing"
    assert answer.message.startswith('spec.app (not set): ClusterCeleryApp "shared" cannot')


def test_unreadable_namespace_labels_are_a_problem_only_where_a_selector_needs_them(
    backend: CeleryBackend,
) -> None:
    problem = AppProblem("AppNotReady", 'spec.app: cannot read the labels of namespace "x"')

    def unreadable(ns: str) -> AppProblem:
        return problem

    apps = index(usable(backend, "ClusterCeleryApp", None, "s",
                        selector={"matchLabels": {"team": "a"}}))
    assert resolve_app("x", AppRef("ClusterCeleryApp", "s"), apps, unreadable, None) == problem
