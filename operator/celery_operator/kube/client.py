"""Conditional status writes, deletes and Events for our custom objects.

The `kubernetes` client is synchronous; callers run these in threads. Every write is
counted by verb so benchmarks can hold the operator to its write budget.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from celery_operator import metrics
from celery_operator.api import GROUP, VERSION

logger = logging.getLogger(__name__)


class Conflict(Exception):
    """The object changed since we read it (409/422 on a resourceVersion precondition)."""


class Gone(Exception):
    """The object no longer exists (404), or was replaced by one with another uid."""


class Rejected(Exception):
    """The API server refused the request itself, and sending it again will not help:
    400 (malformed), 403 (forbidden), 422 (invalid: a schema limit or CEL rule), or 404
    on a create (the namespace is gone). The step ends with a condition and an Event.

    `message` is the API server's own message (it names the field), without our URL."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


FINAL_STATUSES = frozenset({400, 403, 422})


def api_message(exc: ApiException) -> str:
    """The `message` of the Status object the API server returned (else its reason)."""
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or exc.reason or "")


def rejected(exc: ApiException) -> Rejected:
    return Rejected(int(exc.status or 0), str(exc.reason or ""), api_message(exc))


# Both engines' kube and Event threads (32 + 24 + 2 + 2): no discarded connections.
POOL_SIZE = 64


def load_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """In-cluster config when running in a pod, else the kubeconfig."""
    if kubeconfig is None:
        try:
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)
            cfg.connection_pool_maxsize = POOL_SIZE
            return client.ApiClient(cfg)
        except config.ConfigException:
            pass
    cfg = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    cfg.connection_pool_maxsize = POOL_SIZE
    return client.ApiClient(cfg)


def credentials_problem(kubeconfig: str | None = None) -> str | None:
    """Why no API-server credentials can be loaded (None: they can). Credentials that
    will never load (no service account, no or a broken kubeconfig) make the operator
    exit at once, with this line, instead of kopf retrying them every minute."""
    try:
        api = load_api_client(kubeconfig)
    except (config.ConfigException, OSError, ValueError, TypeError) as exc:
        return f"no usable Kubernetes credentials (in-cluster or kubeconfig): {exc}"
    try:
        # /version is open to every authenticated user: only a refused credential fails.
        client.VersionApi(api).get_code(_request_timeout=5)
    except ApiException as exc:
        if exc.status == 401:
            return ("the API server refuses these Kubernetes credentials (401 Unauthorized): "
                    "a wrong or expired token or client certificate")
    except Exception:
        return None  # not reachable now: kopf retries with backoff until it is
    finally:
        api.close()
    return None


class KubeClient:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        try:
            obj = cast(dict[str, Any], self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name
            ))
        except ApiException as exc:
            if exc.status == 404:
                raise Gone(f"{plural} {namespace}/{name} not found") from exc
            if exc.status in FINAL_STATUSES:
                raise rejected(exc) from exc
            raise
        return obj

    def patch_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        *,
        resource_version: str | None,
        uid: str | None = None,
    ) -> dict[str, Any]:
        """Merge-patch `.status`; with `resource_version`, only if nobody wrote since."""
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version is not None or uid is not None:
            meta: dict[str, Any] = {}
            if resource_version is not None:
                meta["resourceVersion"] = resource_version
            if uid is not None:
                meta["uid"] = uid
            body["metadata"] = meta
        metrics.API_WRITES.labels(verb="patch", resource=f"{plural}/status").inc()
        try:
            obj = cast(dict[str, Any], self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, body
            ))
        except ApiException as exc:
            # A merge patch carrying metadata.resourceVersion fails with 409 when the
            # object moved on; 422 is the API server refusing the content (never retried).
            if exc.status == 409 and resource_version is not None:
                raise Conflict(f"{plural} {namespace}/{name} changed: {exc.reason}") from exc
            if exc.status == 404:
                raise Gone(f"{plural} {namespace}/{name} not found") from exc
            if exc.status == 409 and uid is not None:
                raise Gone(f"{plural} {namespace}/{name} was replaced") from exc
            if exc.status in FINAL_STATUSES:
                raise rejected(exc) from exc
            raise
        return obj

    def patch(
        self, plural: str, namespace: str, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch an object we own (children: never objects that come from Git)."""
        metrics.API_WRITES.labels(verb="patch", resource=plural).inc()
        try:
            obj = cast(dict[str, Any], self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, dict(body)
            ))
        except ApiException as exc:
            if exc.status == 404:
                raise Gone(f"{plural} {namespace}/{name} not found") from exc
            if exc.status in FINAL_STATUSES:
                raise rejected(exc) from exc
            raise
        return obj

    def list(self, plural: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        found = cast(dict[str, Any], self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, label_selector=label_selector
        ))
        return cast(list[dict[str, Any]], found["items"])

    def delete(self, plural: str, namespace: str, name: str, *, uid: str | None = None) -> None:
        """Delete, optionally only the object with this uid; a missing object is fine."""
        body = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid=uid) if uid else None,
            propagation_policy="Background",
        )
        metrics.API_WRITES.labels(verb="delete", resource=plural).inc()
        try:
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, body=body
            )
        except ApiException as exc:
            if exc.status in FINAL_STATUSES:
                raise rejected(exc) from exc
            if exc.status not in (404, 409):
                raise

    def create(self, plural: str, namespace: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """Create; None when an object of that name exists already (AlreadyExists)."""
        metrics.API_WRITES.labels(verb="create", resource=plural).inc()
        try:
            obj = cast(dict[str, Any], self.custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, dict(body)
            ))
        except ApiException as exc:
            if exc.status == 409:
                return None
            if exc.status in FINAL_STATUSES or exc.status == 404:
                raise rejected(exc) from exc
            raise
        return obj

    def post_event(
        self,
        obj: Mapping[str, Any],
        *,
        type_: str,
        reason: str,
        message: str,
        component: str = "celery-operator",
    ) -> None:
        """A core/v1 Event about `obj` (best effort: an Event is never worth a crash)."""
        meta = obj.get("metadata", {})
        now = datetime.now(UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                generate_name=f"{meta.get('name', 'object')}.", namespace=meta.get("namespace")
            ),
            involved_object=client.V1ObjectReference(
                api_version=obj.get("apiVersion", f"{GROUP}/{VERSION}"),
                kind=obj.get("kind"),
                name=meta.get("name"),
                namespace=meta.get("namespace"),
                uid=meta.get("uid"),
                resource_version=meta.get("resourceVersion"),
            ),
            type=type_,
            reason=reason,
            message=message[:1024],
            source=client.V1EventSource(component=component),
            reporting_component=component,
            reporting_instance=component,
            first_timestamp=now,
            last_timestamp=now,
            event_time=None,
            count=1,
        )
        metrics.API_WRITES.labels(verb="create", resource="events").inc()
        try:
            # A cluster-scoped object's Events live in "default" (as a Node's do).
            self.core.create_namespaced_event(meta.get("namespace") or "default", event)
        except Exception as exc:
            logger.warning("could not post event %s on %s: %s", reason, meta.get("name"), exc)

    # --- CeleryApp / ClusterCeleryApp: Secrets and namespaces are only ever read by `get`.

    def get_secret(self, namespace: str, name: str) -> dict[str, str]:
        """The Secret's data, decoded; a value that is not UTF-8 text is left out.
        Raises Gone (404), Rejected (403: the operator may not read it)."""
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise Gone(f"Secret {namespace}/{name} not found") from exc
            if exc.status in FINAL_STATUSES:
                raise rejected(exc) from exc
            raise
        decoded: dict[str, str] = {}
        for key, value in (secret.data or {}).items():
            try:
                decoded[key] = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                continue
        return decoded

    def get_namespace_labels(self, name: str) -> dict[str, str]:
        """The namespace's labels. Raises Gone (404) or Rejected (403)."""
        try:
            ns = self.core.read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                raise Gone(f"namespace {name} not found") from exc
            if exc.status in FINAL_STATUSES:
                raise rejected(exc) from exc
            raise
        return dict((ns.metadata.labels if ns.metadata else None) or {})

    def list_objects(
        self, plural: str, namespace: str | None
    ) -> builtins.list[dict[str, Any]]:
        """Every object of a kind: in one namespace, or (namespace None) cluster-wide,
        which is also how cluster-scoped kinds are listed."""
        if namespace is None:
            found = self.custom.list_cluster_custom_object(GROUP, VERSION, plural)
        else:
            found = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
        return cast(builtins.list[dict[str, Any]], cast(dict[str, Any], found)["items"])

    def patch_app_status(
        self,
        plural: str,
        namespace: str | None,
        name: str,
        status: Mapping[str, Any],
        *,
        uid: str | None = None,
    ) -> dict[str, Any]:
        """Merge-patch the status of a CeleryApp (namespace) or ClusterCeleryApp (None).
        The operator is its only writer: no resourceVersion precondition, only the uid
        (never write onto an object recreated under the same name)."""
        body: dict[str, Any] = {"status": dict(status)}
        if uid is not None:
            body["metadata"] = {"uid": uid}
        metrics.API_WRITES.labels(verb="patch", resource=f"{plural}/status").inc()
        try:
            if namespace is None:
                obj = self.custom.patch_cluster_custom_object_status(
                    GROUP, VERSION, plural, name, body
                )
            else:
                obj = self.custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, plural, name, body
                )
        except ApiException as exc:
            if exc.status == 404 or (exc.status == 409 and uid is not None):
                raise Gone(f"{plural} {namespace or ''}/{name} is gone") from exc
            if exc.status in FINAL_STATUSES:
                raise rejected(exc) from exc
            raise
        return cast(dict[str, Any], obj)
