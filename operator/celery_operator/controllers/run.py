"""`celery-operator run`: kopf's operator loop with our handlers and settings."""

from __future__ import annotations

import asyncio
import logging

import kopf
from prometheus_client import start_http_server

from celery_operator.config import OperatorConfig
from celery_operator.controllers import handlers  # noqa: F401  (registers the handlers)


def run_operator(config: OperatorConfig) -> None:
    if config.metrics_port:
        start_http_server(config.metrics_port, addr="0.0.0.0")
    memo = kopf.Memo(config=config)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    asyncio.run(
        kopf.operator(
            clusterwide=not config.namespaces,
            namespaces=list(config.namespaces),
            liveness_endpoint=config.liveness_endpoint,
            memo=memo,
            standalone=True,
        )
    )
