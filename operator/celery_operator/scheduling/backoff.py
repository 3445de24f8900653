"""Capped exponential backoff per key, for every path that retries something that failed.

Pure (no clock inside): callers ask for the delay after a failure and add it to their
own `now`. A success forgets the key, so the next failure starts small again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from celery_operator.scheduling.duetime import retry_delay


@dataclass
class Backoff:
    """Delays initial, initial·factor, … up to maximum (seconds) per failing key."""

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 600.0
    _failures: dict[str, int] = field(default_factory=dict)

    def failed(self, key: str) -> timedelta:
        """Record one more consecutive failure of `key`; the delay before the next try."""
        count = self._failures.get(key, 0) + 1
        self._failures[key] = count
        return retry_delay(
            count + 1, initial_seconds=self.initial, factor=self.factor, max_seconds=self.maximum
        )

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        """Consecutive failures of `key` so far (0: none, or it succeeded since)."""
        return self._failures.get(key, 0)
