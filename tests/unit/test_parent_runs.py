"""Runs kept in a PeriodicTask's status: the patches folded into one write."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from celery_operator.controllers.parentruns import (
    compact_ended,
    compose_patches,
    ended,
    foldable,
    merge_patch,
    parent_patch_foldable,
    run_body,
    run_item,
    run_uid,
)
from celery_operator.scheduling.task_lifecycle import task_id_for
from celery_operator.scheduling.task_model import TASK_ID_NAMESPACE


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386's MergePatch, as the spec writes it (what the API server does)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


KEYS = st.sampled_from(["phase", "claim", "runs", "a", "b"])
JSON: Any = st.recursive(
    st.none() | st.integers(0, 3) | st.text(max_size=2),
    lambda inner: st.dictionaries(KEYS, inner, max_size=3), max_leaves=8)
PATCH = st.dictionaries(KEYS, JSON, max_size=4)
# A stored document holds no nulls (a merge patch's null removes).
STORED: Any = st.recursive(
    st.integers(0, 3) | st.text(max_size=2),
    lambda inner: st.dictionaries(KEYS, inner, max_size=3), max_leaves=8)
DOC = st.dictionaries(KEYS, STORED, max_size=4)


@given(DOC, PATCH, PATCH)
def test_one_composed_write_does_what_the_two_writes_would(
    doc: dict[str, Any], first: dict[str, Any], then: dict[str, Any]
) -> None:
    # Folding a run's outcome into the next claim must leave the same status behind.
    assert merge(doc, compose_patches(first, then)) == merge(merge(doc, first), then)


@given(DOC, PATCH)
def test_the_local_merge_is_the_api_servers(doc: dict[str, Any], patch: dict[str, Any]) -> None:
    assert merge_patch(doc, patch) == merge(doc, patch)


def test_what_waits_and_what_is_written_at_once() -> None:
    # A run's claim, Queued confirm and retry wait are written at once; the rest may wait.
    assert [foldable({"phase": p}) for p in (
        "Dispatching", "Queued", "Retrying", "Succeeded", "Failed", "Started", "Scheduled",
    )] == [False, False, False, True, True, True, True]
    status = {"observedGeneration": 3}
    assert parent_patch_foldable(status, {"recentRuns": [], "observedGeneration": 3})
    assert not parent_patch_foldable(status, {"recentRuns": [], "observedGeneration": 4})
    assert not parent_patch_foldable(status, {"lastHandledRunRequest": "x"})


def test_a_runs_task_id_is_its_parents_uid_and_name_and_never_an_objects() -> None:
    parent = {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "generation": 2,
                           "resourceVersion": "77"}}
    body = run_body(parent, "p-60", {"scheduledTime": "1970-01-01T00:01:00Z",
                                     "status": {"phase": "Queued"}}, {"task": {"name": "t"}})
    assert body["metadata"]["uid"] == run_uid("u-1", "p-60") == "u-1/run/p-60"
    # The id the design documents (an upgrade that changed it would publish runs again).
    assert task_id_for(body["metadata"]["uid"], 1) == str(
        uuid.uuid5(TASK_ID_NAMESPACE, "u-1/run/p-60/1"))
    assert (body["metadata"]["creationTimestamp"], body["metadata"]["resourceVersion"],
            body["status"]) == ("1970-01-01T00:01:00Z", "77", {"phase": "Queued"})


def test_an_ended_run_keeps_its_outcome_and_drops_what_served_dispatch() -> None:
    written = {"phase": "Started", "dueTime": "t0", "taskId": "id", "attempt": 1,
               "claim": {"holder": "op", "time": "t0"}, "brokerRunId": "r",
               "conditions": [{"type": "Ready"}], "observedGeneration": 2,
               "attempts": [{"attempt": 1}], "queuedTime": "t1", "startTime": "t2"}
    final = {"phase": "Succeeded", "completionTime": "t3", "result": 4, "worker": "w",
             "conditions": [{"type": "Ready", "status": "True"}], "attempts": [{}]}
    assert ended(final) and not ended(written) and not ended({"phase": "Invalid"})
    assert merge(written, compact_ended(written, final)) == {
        "phase": "Succeeded", "dueTime": "t0", "taskId": "id", "attempt": 1,
        "startTime": "t2", "completionTime": "t3", "result": 4, "worker": "w"}


def test_a_run_kept_in_status_is_due_at_its_exact_fire_time() -> None:
    at = datetime(2026, 1, 1, 0, 0, 1, 500000, tzinfo=UTC)
    assert run_item(at, False) == {"scheduledTime": "2026-01-01T00:00:01.5Z"}
    assert run_item(at.replace(microsecond=0), True) == {
        "scheduledTime": "2026-01-01T00:00:01Z", "manual": True}
