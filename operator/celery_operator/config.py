"""Operator settings from flags and environment (broker URLs come from the environment,
so a chart can take them from a Secret; they are never logged with their password)."""

from __future__ import annotations

import os
import re
import secrets
import socket
from dataclasses import dataclass, field
from urllib.parse import unquote

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def operator_namespace() -> str:
    """Where the operator runs (ClusterCeleryApps keep their Secrets there): POD_NAMESPACE
    (the chart sets it), else the pod's service account namespace, else "default"."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE) as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


def default_identity() -> str:
    """Who holds the leader Lease and writes claims: `<pod name>_<pod uid>` (POD_NAME,
    POD_UID from the chart's downward API, as client-go's controllers name themselves),
    else `<hostname>_<random>`, unique per process outside a pod too."""
    name = os.environ.get("POD_NAME") or socket.gethostname()
    suffix = os.environ.get("POD_UID") or secrets.token_hex(4)
    return f"{name}_{suffix}"


@dataclass(frozen=True)
class OperatorConfig:
    # The implicit cluster default app (--broker-url/--result-backend); None: apps only.
    broker_url: str | None
    result_backend_url: str | None
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    metrics_port: int | None = 8000
    liveness_endpoint: str | None = "http://0.0.0.0:8080/healthz"
    dispatch_lead_seconds: float = 2.0
    claim_lease_seconds: float = 15.0
    claim_rate: float = 50.0  # claims per second assumed when a burst is due at once
    finish_rate: float = 100.0  # final status writes per second at most
    # Runs kept in status: how long an outcome may wait for the next claim to carry it.
    run_outcome_wait_seconds: float = 60.0
    poll_interval_seconds: float = 1.0
    listen_events: bool = True
    # Post Scheduled, Dispatched and Succeeded Events for every ScheduledTask.
    routine_task_events: bool = False
    kubeconfig: str | None = None
    identity: str = field(default_factory=default_identity)
    operator_namespace: str = field(default_factory=operator_namespace)
    # One leader per Lease (in operator_namespace); off: every process acts.
    leader_election: bool = True
    lease_name: str = "celery-operator"
    lease_duration_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0
    retry_period_seconds: float = 2.0


# Query parameters whose value is a secret (kombu/redis-py accept e.g. ?password=).
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|auth|credential|api_?key|private", re.I)
# kombu's failover list "url1;url2": split only where the next URL begins, so a ';'
# inside a password stays where it is.
_NEXT_URL = re.compile(r";(?=[A-Za-z][A-Za-z0-9+.-]*://)")


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_urls_in(text: str) -> str:
    """`text` with every URL in it passed through redact_url (for log lines)."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def redact_url(url: str) -> str:
    """The URL with every password replaced by ***, for logs: the userinfo password (also
    unencoded, with '@', ':' or '/' in it), secret-looking query parameters, and each URL
    of a ';'-separated failover list. When in doubt it hides more, never less."""
    return ";".join(_redact_one(part) for part in _NEXT_URL.split(url))


def _redact_one(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    # The host follows the *last* '@': everything before it is userinfo, whatever it
    # holds (a password may contain '@', ':' or '/'). An '@' after the host (in a query
    # value) makes the host look like userinfo too: hidden, which errs the safe way.
    userinfo, at, hostpart = rest.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        rest = f"{user}:***@{_redact_query(hostpart)}"
    else:  # no password (a user name alone is not a secret)
        rest = _redact_query(rest)
    return f"{scheme}{sep}{rest}"


def _redact_query(rest: str) -> str:
    head, q, query = rest.partition("?")
    if not q:
        return rest
    query, hash_, fragment = query.partition("#")
    params = []
    for param in query.split("&"):
        name, eq, value = param.partition("=")
        if eq and value and _SECRET_PARAM.search(unquote(name)):
            value = "***"
        params.append(f"{name}{eq}{value}")
    return f"{head}?{'&'.join(params)}{hash_}{fragment}"
