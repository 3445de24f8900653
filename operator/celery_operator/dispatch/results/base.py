"""What every result backend module gives the reader: one batched fetch, one decoder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from celery_operator.api.celery_state import TaskState

# A task id no task has: reading it proves the result backend answers.
PROBE_ID = "celery-operator-probe"


class ResultBackendError(Exception):
    """The result backend cannot be read (unreachable, refused, no table). The message
    is one line naming the backend by its redacted URL and the cause."""


class ResultStore(Protocol):
    # False: this backend keeps no results the operator can read (rpc://, none); the
    # states then come from worker events alone.
    available: bool
    # Ids per query: a poll of more tasks than this makes more than one query.
    batch: int

    def fetch(self, task_ids: Sequence[str], seen: Mapping[str, Any]) -> Mapping[str, Any]:
        """What changed for these ids, in ONE query: the raw record of an id, or None
        where it has none. `seen` is the raw record the caller holds per id (from an
        earlier fetch); an id left out keeps it (unchanged), or has no record if it has
        none. A store that cannot tell what changed returns every id. Raises
        ResultBackendError."""
        ...

    def parse(self, task_id: str, raw: Any) -> TaskState:
        """Decode one raw record; raises meta.Unreadable with a short reason."""
        ...

    def check(self) -> None:
        """Raises ResultBackendError when the backend cannot be read."""
        ...

    def mark_revoked(self, task_id: str) -> None:
        """Record durably that `task_id` is revoked, where the worker guard looks."""
        ...

    def is_revoked(self, task_id: str) -> bool:
        """Whether a revoke of `task_id` is recorded (by this process or another)."""
        ...

    def mark_sent(self, task_id: str, run_id: str) -> bool:
        """Record durably that `task_id` went out to the broker lifetime `run_id`. False:
        this backend keeps no marks (the publish must be confirmed in status at once)."""
        ...

    def sent(self, task_ids: Sequence[str], run_id: str) -> set[str]:
        """The ids among `task_ids` marked sent to the broker lifetime `run_id`."""
        ...

    def close(self) -> None: ...
