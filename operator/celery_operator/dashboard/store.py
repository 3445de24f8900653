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
        self._lock = threading.Lock()
        self.synced = False  # a whole list arrived
        self.expected: int | None = None  # while only a first page is here: the list's length
        self.problem: str | None = None  # why the watch is not running, for the page

    def _rows_of(self, objects: Iterable[dict[str, Any]]
                 ) -> tuple[dict[Key, dict[str, Any]], dict[Key, R]]:
        fresh = {key_of(obj): obj for obj in objects}
        return fresh, {key: self._row_of(obj) for key, obj in fresh.items()}

    def preview(self, objects: Iterable[dict[str, Any]], remaining: int | None) -> None:
        """The first page of the first list, shown until the whole list replaces it (the
        pages say how many are still coming)."""
        fresh, rows = self._rows_of(objects)
        with self._lock:
            if not self.synced:
                self._objects, self._rows = fresh, rows
                self.expected = len(fresh) + remaining if remaining is not None else None

    def replace(self, objects: Iterable[dict[str, Any]]) -> None:
        """A whole list."""
        fresh, rows = self._rows_of(objects)
        with self._lock:
            self._objects, self._rows = fresh, rows
            self.synced, self.problem, self.expected = True, None, None

    def loaded(self) -> tuple[int, int | None]:
        """How many objects are cached, and how many the first list brings (None: all
        there are, or not known)."""
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
