"""The in-memory cache the watches feed and the pages read (pure, thread-safe)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

Key = tuple[str, str]  # (namespace, name)
R = TypeVar("R")


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class Cache(Generic[R]):
    """One kind's objects by (namespace, name), each with a row derived once per change,
    so a page over 10,000 objects only sorts and slices rows."""

    def __init__(self, row_of: Callable[[Mapping[str, Any]], R]) -> None:
        self._row_of = row_of
        self._objects: dict[Key, dict[str, Any]] = {}
        self._rows: dict[Key, R] = {}
        self._next: tuple[dict[Key, dict[str, Any]], dict[Key, R]] = ({}, {})
        self._lock = threading.Lock()
        self.synced = False  # a whole list arrived
        self.expected: int | None = None  # while the first list arrives: its length
        self.problem: str | None = None  # why the watch is not running, for the page

    def fill(self, objects: Iterable[dict[str, Any]], *, first: bool, last: bool,
             remaining: int | None = None) -> None:
        """One page of a list. Until the first whole list, every page shows as it arrives
        (the page says how many are still coming); a later list (the watch could not
        resume) is gathered and shown whole, so no page ever loses objects meanwhile."""
        fresh = {key_of(obj): obj for obj in objects}
        rows = {key: self._row_of(obj) for key, obj in fresh.items()}
        with self._lock:
            if first:
                self._next = ({}, {})
            gathered, gathered_rows = self._next
            gathered.update(fresh)
            gathered_rows.update(rows)
            if last:
                self._next = ({}, {})
                self.synced, self.problem, self.expected = True, None, None
            elif not self.synced:
                self.expected = len(gathered) + remaining if remaining is not None else None
            if last or not self.synced:
                self._objects, self._rows = gathered, gathered_rows

    def replace(self, objects: Iterable[dict[str, Any]]) -> None:
        """A whole list at once."""
        self.fill(objects, first=True, last=True)

    def loaded(self) -> tuple[int, int | None]:
        """How many objects are cached, and how many the first list will bring."""
        with self._lock:
            return len(self._objects), self.expected

    def apply(self, event: str, obj: dict[str, Any]) -> Key:
        key = key_of(obj)
        row = None if event == "DELETED" else self._row_of(obj)
        with self._lock:
            if row is None:
                self._objects.pop(key, None)
                self._rows.pop(key, None)
            else:
                self._objects[key], self._rows[key] = obj, row
        return key

    def get(self, key: Key) -> dict[str, Any] | None:
        with self._lock:
            return self._objects.get(key)

    def objects(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._objects.values())

    def rows(self) -> list[R]:
        with self._lock:
            return list(self._rows.values())
