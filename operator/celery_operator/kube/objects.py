"""Our objects by name, for a command-line client (`kubectl celery`).

Connects as kubectl does (the kubeconfig's current or a named context, and its
namespace), and turns every refusal into one exception that carries the API server's own
reason and message, so a user sees what kubectl would have shown.
"""

from __future__ import annotations

import builtins
import functools
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from celery_operator.api import GROUP, SCHEDULED_PLURAL, VERSION
from celery_operator.api.names import PARENT_LABEL
from celery_operator.kube.client import Rejected, api_message
from celery_operator.scheduling.periodic_plan import controller_uid

# The label and annotation the PeriodicTask engine puts on each run it creates.

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
REQUEST_TIMEOUT = 30  # seconds: a command line must not hang on a dead API server
WATCH_SECONDS = 300  # the API server ends a watch after this; the caller resumes it


class NoCredentials(Exception):
    """Neither a usable kubeconfig nor an in-cluster service account."""


class Unreachable(Exception):
    """The API server did not answer."""


def _refused(exc: ApiException) -> Rejected:
    """Rejected with the Status object's reason (NotFound, Forbidden), as kubectl shows it."""
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (TypeError, ValueError):
        body = {}
    reason = body.get("reason") if isinstance(body, dict) else None
    return Rejected(int(exc.status or 0), str(reason or exc.reason or ""), api_message(exc))


@contextmanager
def _request() -> Iterator[None]:
    try:
        yield
    except ApiException as exc:
        if exc.status:
            raise _refused(exc) from exc
        raise Unreachable(str(exc.reason or exc)) from exc
    except urllib3.exceptions.MaxRetryError as exc:
        raise Unreachable(str(exc.reason or exc)) from exc  # the cause, not urllib3's wrapper
    except urllib3.exceptions.HTTPError as exc:
        raise Unreachable(str(exc)) from exc


def _context_namespace(kubeconfig: str | None, context: str | None) -> str | None:
    contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else None


def connect(kubeconfig: str | None, context: str | None) -> tuple[Objects, str]:
    """A client for the kubeconfig (else $KUBECONFIG, ~/.kube/config, the pod's service
    account) and the namespace its context names ("default" when it names none)."""
    cfg = client.Configuration()
    try:
        config.load_kube_config(config_file=kubeconfig, context=context,
                                client_configuration=cfg)
        namespace = _context_namespace(kubeconfig, context)
    except (config.ConfigException, OSError) as exc:
        if kubeconfig or context or not SERVICE_ACCOUNT_NAMESPACE.exists():
            raise NoCredentials(f"no usable kubeconfig: {exc}") from exc
        try:
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException as in_cluster:
            raise NoCredentials(f"no usable kubeconfig ({exc}) nor service account "
                                f"({in_cluster})") from in_cluster
        namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    cfg.retries = 0  # a refused connection is reported at once, not after urllib3's retries
    return Objects(client.ApiClient(cfg)), namespace or "default"


class Objects:
    """Get, patch and list custom objects by name. Raises Rejected (any refusal, with the
    API server's message) or Unreachable."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.api_client = api_client

    @functools.cached_property
    def core(self) -> client.CoreV1Api:
        """Made when first used (only for Events): its module takes half a second to
        import, which every command and the dashboard's first paint would pay."""
        return client.CoreV1Api(self.api_client)

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with _request():
            return method(*args, **kwargs, _request_timeout=REQUEST_TIMEOUT)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._call(
            self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name))

    def patch(
        self, plural: str, namespace: str, name: str, body: Mapping[str, Any],
        *, resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Merge-patch; with `resource_version`, refused (409) if the object changed."""
        patch = dict(body)
        if resource_version is not None:
            patch["metadata"] = {**patch.get("metadata", {}), "resourceVersion": resource_version}
        return cast(dict[str, Any], self._call(
            self.custom.patch_namespaced_custom_object, GROUP, VERSION, namespace, plural,
            name, patch))

    def annotate(
        self, plural: str, namespace: str, name: str, key: str, value: str
    ) -> dict[str, Any]:
        return self.patch(plural, namespace, name, {"metadata": {"annotations": {key: value}}})

    def list(self, plural: str, namespace: str | None) -> builtins.list[dict[str, Any]]:
        """Every object of a kind in one namespace, or (None) in all of them."""
        return cast(builtins.list[dict[str, Any]], self.list_page(plural, namespace)["items"])

    def list_page(
        self, plural: str, namespace: str | None, limit: int | None = None
    ) -> dict[str, Any]:
        """The list as the API server sends it (items, metadata with resourceVersion and,
        with a `limit`, continue and remainingItemCount)."""
        paging = {"limit": limit} if limit is not None else {}
        if namespace is None:
            found = self._call(self.custom.list_cluster_custom_object, GROUP, VERSION, plural,
                               **paging)
        else:
            found = self._call(self.custom.list_namespaced_custom_object, GROUP, VERSION,
                               namespace, plural, **paging)
        return cast(dict[str, Any], found)

    def runs(self, periodic: Mapping[str, Any]) -> builtins.list[dict[str, Any]]:
        """The ScheduledTasks a PeriodicTask created: its label, and (as the engine
        requires) its controller ownerReference."""
        meta = periodic["metadata"]
        with _request():
            found = cast(dict[str, Any], self.custom.list_namespaced_custom_object(
                GROUP, VERSION, meta["namespace"], SCHEDULED_PLURAL,
                label_selector=f"{PARENT_LABEL}={meta['name']}",
                _request_timeout=REQUEST_TIMEOUT,
            ))
        return [item for item in found["items"]
                if controller_uid(item.get("metadata") or {}) == meta.get("uid")]

    def delete(self, plural: str, namespace: str, name: str) -> None:
        self._call(self.custom.delete_namespaced_custom_object, GROUP, VERSION, namespace,
                   plural, name)

    def snapshot(
        self, plural: str, namespace: str | None
    ) -> tuple[builtins.list[dict[str, Any]], str]:
        """Every object of a kind (namespace None: all namespaces) and the list's
        resourceVersion, to watch from."""
        if namespace is None:
            found = self._call(self.custom.list_cluster_custom_object, GROUP, VERSION, plural)
        else:
            found = self._call(self.custom.list_namespaced_custom_object, GROUP, VERSION,
                               namespace, plural)
        return found["items"], str(found["metadata"]["resourceVersion"])

    def watch(
        self, plural: str, namespace: str | None, resource_version: str
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(ADDED|MODIFIED|DELETED, object) after `resource_version`, until the API server
        ends the watch. Raises Rejected (410 Gone: list again) or Unreachable."""
        method: Callable[..., Any]
        args: tuple[str, ...]
        if namespace is None:
            method, args = self.custom.list_cluster_custom_object, (GROUP, VERSION, plural)
        else:
            method = self.custom.list_namespaced_custom_object
            args = (GROUP, VERSION, namespace, plural)
        stream = watch.Watch().stream(method, *args, resource_version=resource_version,
                                      timeout_seconds=WATCH_SECONDS,
                                      _request_timeout=WATCH_SECONDS + REQUEST_TIMEOUT)
        with _request():
            for event in stream:
                if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    yield event["type"], event["object"]

    def events(self, namespace: str, kind: str, name: str) -> builtins.list[dict[str, Any]]:
        """The Events about one object, oldest first, as `kubectl describe` lists them."""
        found = self._call(self.core.list_namespaced_event, namespace,
                           field_selector=f"involvedObject.kind={kind},"
                           f"involvedObject.name={name}")
        items = self.api_client.sanitize_for_serialization(found.items)
        return sorted(items, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime")
                                               or ""))
