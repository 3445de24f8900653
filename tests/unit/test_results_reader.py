"""ResultReader's polls: decode only what is new, never ask again for a final state."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from celery_operator.api.celery_state import STARTED, SUCCESS, UNREADABLE, TaskState
from celery_operator.dispatch.results import ResultReader
from celery_operator.dispatch.results.meta import parse_meta


class DictStore:
    """A result store over a plain dict; counts what is asked and decoded. As Redis, it
    returns every id; with `changes_only`, as a database, only what differs from what
    the reader holds."""

    available = True
    batch = 2

    def __init__(self, *, changes_only: bool = False) -> None:
        self.records: dict[str, bytes] = {}
        self.asked: list[list[str]] = []
        self.parsed: list[str] = []
        self.changes_only = changes_only

    def fetch(self, task_ids: Sequence[str], seen: Mapping[str, Any]) -> Mapping[str, Any]:
        self.asked.append(list(task_ids))
        found = {i: self.records.get(i) for i in task_ids}
        if self.changes_only:
            return {i: raw for i, raw in found.items() if raw != seen.get(i)}
        return found

    def parse(self, task_id: str, raw: Any) -> TaskState:
        self.parsed.append(task_id)
        return parse_meta(task_id, raw)

    def check(self) -> None: ...
    def mark_revoked(self, task_id: str) -> None: ...
    def close(self) -> None: ...


def _reader(*, changes_only: bool = False) -> tuple[ResultReader, DictStore]:
    reader = ResultReader(None)
    store = DictStore(changes_only=changes_only)
    reader.store = store
    return reader, store


def _meta(status: str, result: Any = None) -> bytes:
    return json.dumps({"status": status, "result": result}).encode()


def test_a_final_state_is_not_asked_for_again() -> None:
    reader, store = _reader()
    store.records["a"] = _meta(SUCCESS, 1)
    store.records["b"] = _meta(STARTED)
    reader.read(["a", "b", "c"])
    store.asked.clear()
    states = reader.read(["a", "b", "c"])
    assert store.asked == [["b", "c"]]
    assert states["a"] == TaskState(task_id="a", status=SUCCESS, result=1)
    assert states["b"] is not None and states["b"].status == STARTED
    assert states["c"] is None


@pytest.mark.parametrize("changes_only", [False, True])
def test_an_unchanged_record_is_not_decoded_again_and_a_changed_one_is(
    changes_only: bool,
) -> None:
    reader, store = _reader(changes_only=changes_only)
    store.records["a"] = _meta(STARTED)
    store.records["b"] = _meta(STARTED)
    reader.read(["a", "b"])
    store.parsed.clear()
    store.records["b"] = _meta(SUCCESS, 2)
    states = reader.read(["a", "b"])
    assert store.parsed == ["b"]
    assert states["b"] == TaskState(task_id="b", status=SUCCESS, result=2)
    assert states["a"] is not None and states["a"].status == STARTED


def test_an_id_no_longer_asked_for_is_forgotten() -> None:
    reader, store = _reader()
    store.records["a"] = _meta(SUCCESS, 1)
    reader.read(["a"])
    reader.read(["b"])
    store.asked.clear()
    reader.read(["a"])
    assert store.asked == [["a"]]


def test_queries_stay_one_per_batch_of_ids_not_final() -> None:
    reader, store = _reader()
    for i in "abcde":
        store.records[i] = _meta(STARTED)
    reader.read(list("abcde"))
    assert store.asked == [["a", "b"], ["c", "d"], ["e"]]


def test_an_unreadable_record_stays_unreadable_until_it_changes() -> None:
    reader, store = _reader()
    store.records["a"] = b"\x80\x04garbage"
    first = reader.read(["a"])["a"]
    second = reader.read(["a"])["a"]
    assert first is not None and second == first and first.status == UNREADABLE
    store.records["a"] = _meta(SUCCESS, 3)
    assert reader.read(["a"])["a"] == TaskState(task_id="a", status=SUCCESS, result=3)


def test_what_a_store_leaves_out_keeps_its_state_and_a_record_gone_is_none() -> None:
    reader, store = _reader(changes_only=True)
    store.records["a"] = _meta(STARTED)
    store.records["b"] = _meta(STARTED)
    first = reader.read(["a", "b", "c"])
    del store.records["b"]
    states = reader.read(["a", "b", "c"])
    assert states["a"] is not None and states["a"] == first["a"]
    assert states["a"].status == STARTED
    assert states["b"] is None and states["c"] is None
    store.records["c"] = _meta(SUCCESS, 4)
    assert reader.read(["c"])["c"] == TaskState(task_id="c", status=SUCCESS, result=4)


def test_an_id_forgotten_by_the_reader_is_read_in_full_when_asked_again() -> None:
    reader, store = _reader(changes_only=True)
    store.records["a"] = _meta(STARTED)
    reader.read(["a"])
    reader.read(["b"])  # "a" is no longer tracked: forgotten
    state = reader.read(["a"])["a"]
    assert state is not None and state.status == STARTED
