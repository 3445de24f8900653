"""An app's connection set, read from its Secrets with `get` (never list or watch).

A missing Secret or key, a Secret the operator may not read and a URL that cannot be a
broker are the app's problem, named by its field. Anything else (the API server down)
raises: the caller keeps what it had and tries again later.
"""

from __future__ import annotations

from typing import Protocol

from celery_operator.api.apps import CeleryAppSpec, SecretKeyRef
from celery_operator.controllers.appresolve import AppProblem
from celery_operator.dispatch.registry import ConnectionSet, url_problem
from celery_operator.kube.client import Gone, Rejected


class SecretReader(Protocol):
    def get_secret(self, namespace: str, name: str) -> dict[str, str]: ...


def read_connection_set(
    kube: SecretReader, namespace: str, spec: CeleryAppSpec
) -> ConnectionSet | AppProblem:
    """The app's connection set, or the first problem found (broker, then backend)."""
    cache: dict[str, dict[str, str] | AppProblem] = {}
    urls: list[str] = []
    for field, ref, broker in (
        ("spec.broker", spec.broker, True),
        ("spec.resultBackend", spec.result_backend, False),
    ):
        url = _read_url(kube, namespace, field, ref, broker, cache)
        if isinstance(url, AppProblem):
            return url
        urls.append(url)
    return ConnectionSet.of(urls[0], urls[1], spec.transport_options)


def _read_url(
    kube: SecretReader,
    namespace: str,
    field: str,
    ref: SecretKeyRef,
    broker: bool,
    cache: dict[str, dict[str, str] | AppProblem],
) -> str | AppProblem:
    path = f"{field}.secretKeyRef"
    if ref.name not in cache:  # both URLs often live in one Secret: one get
        cache[ref.name] = _get(kube, namespace, ref.name, path)
    data = cache[ref.name]
    if isinstance(data, AppProblem):
        return data
    if ref.key not in data:
        return AppProblem(
            "SecretKeyMissing",
            f'{path}.key: Secret "{ref.name}" in namespace "{namespace}" has no key '
            f'"{ref.key}" (or its value is not UTF-8 text)',
        )
    url = data[ref.key].strip()
    problem = url_problem(url, broker=broker)
    if problem is not None:
        return AppProblem(
            "InvalidURL",
            f'{path}: key "{ref.key}" of Secret "{ref.name}" in namespace "{namespace}": '
            f"{problem}",
        )
    return url


def _get(kube: SecretReader, namespace: str, name: str, path: str) -> dict[str, str] | AppProblem:
    try:
        return kube.get_secret(namespace, name)
    except Gone:
        return AppProblem(
            "SecretMissing", f'{path}.name: Secret "{name}" not found in namespace "{namespace}"'
        )
    except Rejected as exc:
        return AppProblem(
            "SecretForbidden",
            f'{path}.name: the operator may not read Secret "{name}" in namespace '
            f'"{namespace}" ({exc.status}: {exc.message})',
        )
