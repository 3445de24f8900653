"""Redis as a broker (kombu's Redis transport): identity is the server's run_id."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

# Smallest limit Redis accepts for one value (proto-max-bulk-len): a message below it
# is never refused as too large, so smaller ones never ask the server.
REDIS_MIN_BULK_LIMIT = 1024 * 1024


class RedisBroker:
    required_transport_options: Mapping[str, Any] = {}
    publish_options: Mapping[str, Any] = {}
    routes_readable = True

    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=10)

    def identity(self) -> str:
        """Redis's run_id: it changes when the server restarts, and with it every queue
        may be gone (no persistence), so messages published before need publishing again."""
        return str(self._redis.info("server")["run_id"])

    def queue_depth(self, queue: str) -> int:
        """Messages waiting in a Redis-transport queue (its list key)."""
        return int(self._redis.llen(queue))

    def queue_consumers(self, queue: str) -> int | None:
        return None  # a BRPOP client is not listed per key: ask the workers instead

    def too_large(self, size: int) -> str | None:
        """Redis drops the connection on a value over proto-max-bulk-len: that looks like
        an outage, so only a big message asks the server for its limit."""
        if size < REDIS_MIN_BULK_LIMIT:
            return None
        try:
            value: Any = self._redis.config_get("proto-max-bulk-len")["proto-max-bulk-len"]
            limit = int(value.decode() if isinstance(value, bytes) else value)
        except Exception:  # down, or CONFIG refused: then it is an outage as far as we know
            return None
        if size < limit:
            return None
        return f"the message ({size} bytes) is larger than the broker accepts ({limit} bytes)"

    def close(self) -> None:
        self._redis.close()
