"""Periodic runs kept in their PeriodicTask's status (spec.runObjects: Never).

Each run is an entry of the parent's `status.runs`, keyed by run name: its fire time and
the status its ScheduledTask would have. The task engine plans and carries out such a
run exactly as a ScheduledTask object (claim, publish, sent mark, results, takeover,
revoke), from a body made here; its writes come back here and become writes of the
parent's status — one per run: the claim, with the parent's own news folded in, while
the run's outcome waits for the next write (at most the engine's `outcome_wait`, a minute
by default). With no claim coming within it, the outcome is written at once, in one write
with the parent's view of its runs (active, recentRuns, lastSuccessfulTime).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from celery_operator.api import FINISHED_PHASES, Phase, format_time
from celery_operator.api.names import PARENT_LABEL

RUNS = "runs"
# A run's outcome and the parent's view of it wait this long for the next run's claim
# (the default of the operator's --run-outcome-wait).
OUTCOME_WAIT = timedelta(seconds=60)
# Writes that may wait for the next run's claim: nothing is lost if they never come (the
# task engine finds the outcome in the result store again after a restart). Scheduled
# too: until its claim, a run lives in memory only (a restart plans it again). Started
# too: in a burst most runs look started for a while (no results are read in its quiet
# window), and written at once it was one more write for most runs (bench, 2.5 a run).
FOLDABLE_PHASES = frozenset({p.value for p in FINISHED_PHASES}
                            | {Phase.STARTED.value, Phase.SCHEDULED.value})


def run_uid(parent_uid: str, name: str) -> str:
    """A run's uid as the task engine knows it (and derives its task id from:
    uuid5("<parent uid>/run/<name>/<attempt>"), never a ScheduledTask's: uids hold no '/')."""
    return f"{parent_uid}/run/{name}"


def is_run_uid(uid: str) -> bool:
    return "/run/" in uid


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch: what the API server does with our status patches."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping):
            before = out.get(key)
            out[key] = merge_patch(before if isinstance(before, Mapping) else {}, value)
        else:
            out[key] = value
    return out


def run_body(parent: Mapping[str, Any], name: str, item: Mapping[str, Any],
             spec: Mapping[str, Any]) -> dict[str, Any]:
    """The body the task engine plans a run from: the run's status, the spec a child
    would get, created at its fire time, at the parent's generation and version."""
    meta = parent.get("metadata") or {}
    revoke = item.get("revoke")
    generation = int(meta.get("generation") or 0) * 2
    if isinstance(revoke, Mapping):
        spec = {**spec, "revoke": dict(revoke)}
        # The engine parses a spec once per generation: a revoke is a new one (and a
        # revoke is never taken back, so this only grows with the parent's).
        generation += 1
    return {
        "metadata": {
            "name": name,
            "namespace": meta.get("namespace"),
            "uid": run_uid(str(meta.get("uid")), name),
            "generation": generation,
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": item.get("scheduledTime"),
            "labels": {PARENT_LABEL: meta.get("name")},
        },
        "spec": spec,
        "status": dict(item.get("status") or {}),
    }


def run_item(scheduled: datetime, manual: bool) -> dict[str, Any]:
    item: dict[str, Any] = {"scheduledTime": format_time(scheduled, fraction=True)}
    if manual:
        item["manual"] = True
    return item


# What a finished run keeps: its outcome as history, `kubectl celery history` and `result`
# show it. The rest (claim, broker run id, conditions, attempts...) served dispatch only,
# and every write and watch event carries the whole parent: half its size was the kept
# runs' statuses, a third its managedFields entries for them.
FINISHED_KEEPS = frozenset({
    "phase", "dueTime", "taskId", "attempt", "startTime", "completionTime", "worker",
    "result", "resultTruncated", "error", "retries",
})
ENDED = frozenset(p.value for p in FINISHED_PHASES) - {Phase.INVALID.value}


def ended(status: Mapping[str, Any]) -> bool:
    """A run the task engine has nothing more to do for (Invalid may become valid)."""
    return status.get("phase") in ENDED


def compact_ended(status: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`patch` (a run's finishing write) plus the removal of what an ended run no longer
    needs, from `status` as written before it."""
    merged = merge_patch(status, patch)
    return {**{k: None for k in merged if k not in FINISHED_KEEPS},
            **{k: v for k, v in patch.items() if k in FINISHED_KEEPS}}


def foldable(patch: Mapping[str, Any]) -> bool:
    return patch.get("phase") in FOLDABLE_PHASES


class RunWriter(Protocol):
    async def write_run(self, body: Mapping[str, Any], patch: Mapping[str, Any]
                        ) -> tuple[str, dict[str, Any] | None]: ...

    def post_run_event(self, body: Mapping[str, Any], type_: str, reason: str,
                       message: str) -> None: ...


class RunsInParent:
    """The task engine's store (controllers.taskstore.TaskStore) for such runs."""

    def __init__(self, writer: RunWriter) -> None:
        self.writer = writer

    async def write_status(
        self, body: Mapping[str, Any], patch: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any] | None]:
        return await self.writer.write_run(body, patch)

    async def delete(self, body: Mapping[str, Any]) -> None:
        """Runs carry no ttlSecondsAfterFinished: the history limits drop them."""

    def post_event(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self.writer.post_run_event(body, type_, reason, message)


def compose_patches(first: Mapping[str, Any], then: Mapping[str, Any]) -> dict[str, Any]:
    """One merge patch that does what `first` and then `then` do (a null deletes)."""
    out = dict(first)
    for key, value in then.items():
        before = out.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            out[key] = compose_patches(before, value)
        else:
            out[key] = value
    return out


# What a parent's own status patch may wait with: the view of its runs and schedule. A
# changed spec (observedGeneration), a handled run request or a revoke are written at once.
PARENT_FOLDABLE = frozenset({
    "active", "recentRuns", "lastSuccessfulTime", "nextScheduleTimes", "conditions",
    "lastScheduleTime", "totalRuns", "missedRuns", "skippedRuns", "observedGeneration",
})


def parent_patch_foldable(status: Mapping[str, Any], patch: Mapping[str, Any]) -> bool:
    if not set(patch) <= PARENT_FOLDABLE:
        return False
    return "observedGeneration" not in patch or (
        patch["observedGeneration"] == status.get("observedGeneration"))
