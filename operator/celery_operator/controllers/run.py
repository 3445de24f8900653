"""`celery-operator run`: kopf's operator loop with our handlers and settings."""

from __future__ import annotations

import asyncio
import logging
import sys

import kopf
from prometheus_client import start_http_server

from celery_operator.config import OperatorConfig
from celery_operator.controllers import handlers, listing  # noqa: F401  (registers the handlers)
from celery_operator.controllers.memories import Unremembered

# The API server stores JSON nested up to 10,000 levels deep; kopf decodes every watch
# event with json.loads, which recurses once per level. At Python's default limit (1,000)
# one deeply nested manifest made the watcher raise and kopf stop the whole operator.
# The model refuses such a spec (api: JSON depth at most 32) once it can be read at all.
RECURSION_LIMIT = 25_000


def run_operator(config: OperatorConfig) -> None:
    sys.setrecursionlimit(max(sys.getrecursionlimit(), RECURSION_LIMIT))
    if config.metrics_port:
        start_http_server(config.metrics_port, addr="0.0.0.0")
    listing.install()
    memo = kopf.Memo(config=config)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    asyncio.run(
        kopf.operator(
            clusterwide=not config.namespaces,
            namespaces=list(config.namespaces),
            liveness_endpoint=config.liveness_endpoint,
            memo=memo,
            memories=Unremembered(),
            standalone=True,
        )
    )
