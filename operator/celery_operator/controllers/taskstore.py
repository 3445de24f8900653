"""Where a ScheduledTask's status is kept, as the task engine sees it.

The engine plans from a body (metadata, spec, status) and hands each status write, delete
and Event to the store of that task. Today every task is its own ScheduledTask object
(`TaskObjects`); Proposal A (docs/design.md) keeps a periodic run in its PeriodicTask's
status instead, through a store of its own, with the engine's state machine unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from celery_operator.api import SCHEDULED_PLURAL

from .kubeio import KubeIO
from .ports import Kube


class TaskStore(Protocol):
    async def write_status(
        self, body: Mapping[str, Any], patch: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any] | None]:
        """A merge patch of the status, conditional on the version in `body`: as
        KubeIO.write_status, (WRITTEN, new body), (CONFLICT, body now) or (GONE, None).
        Raises kube.client.Rejected when the API server refuses it."""
        ...

    async def delete(self, body: Mapping[str, Any]) -> None:
        """Delete the task (ttlSecondsAfterFinished). Raises Rejected as above."""
        ...

    def post_event(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        ...


class TaskObjects:
    """Tasks that are ScheduledTask objects of their own."""

    def __init__(self, io: KubeIO, kube: Kube) -> None:
        self.io = io
        self.kube = kube

    async def write_status(
        self, body: Mapping[str, Any], patch: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any] | None]:
        return await self.io.write_status(SCHEDULED_PLURAL, body, patch)

    async def delete(self, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        await self.io.call(self.kube.delete, SCHEDULED_PLURAL, meta["namespace"], meta["name"],
                           uid=meta.get("uid"))

    def post_event(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self.io.post_event(body, type_, reason, message)
