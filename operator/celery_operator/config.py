"""Operator settings from flags and environment (broker URLs come from the environment,
so a chart can take them from a Secret; they are never logged with their password)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class OperatorConfig:
    broker_url: str
    result_backend_url: str
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    metrics_port: int | None = 8000
    liveness_endpoint: str | None = "http://0.0.0.0:8080/healthz"
    dispatch_lead_seconds: float = 2.0
    claim_lease_seconds: float = 15.0
    claim_rate: float = 50.0  # claims per second assumed when a burst is due at once
    poll_interval_seconds: float = 1.0
    listen_events: bool = True
    kubeconfig: str | None = None
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")


def redact_url(url: str) -> str:
    """The URL with its password replaced by ***, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
