"""Logging: JSON lines for clusters, plain text for people; never a URL's password.

Libraries log and raise with URLs in the text (a failing connection, a config dump):
every line, its exception included, has the passwords of URLs in it replaced by ***.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from celery_operator.config import redact_urls_in


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact_urls_in(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = redact_urls_in(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact_urls_in(super().format(record))


def setup_logging(fmt: str = "text", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("kubernetes.client.rest", "urllib3", "celery", "kombu", "amqp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
