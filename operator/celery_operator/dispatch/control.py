"""Revoke: a broadcast to the workers (they keep revoked ids in memory)."""

from __future__ import annotations

from celery import Celery


def revoke(app: Celery, task_id: str, *, terminate: bool, signal: str) -> None:
    """Ask every worker to drop `task_id`, and to kill it with `signal` if `terminate`."""
    app.control.revoke(task_id, terminate=terminate, signal=signal)


def consumed_queues(app: Celery, timeout: float = 1.0) -> set[str]:
    """Names of the queues some live worker consumes (empty: no worker answered)."""
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    return {
        str(queue.get("name"))
        for queues in replies.values()
        for queue in queues or []
        if isinstance(queue, dict)
    }
