"""What an engine keeps per watched object: its latest body and its parsed spec."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from celery_operator.api import InvalidSpec

SpecT = TypeVar("SpecT")

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SHORT = 16  # strings up to this length are interned: names of phases, reasons, queues


def slim(body: Mapping[str, Any], previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A copy of `body` without what the engines never read but would hold for every
    object: `metadata.managedFields` (half of a decoded body) and kubectl's copy of the
    last applied manifest. A deep copy with interned keys and short strings: every
    decoded body repeats the same few dozen keys and values ("status", "Ready", "True")
    in strings of its own, and kept parts would share memory pages with the dropped
    parts and the rest of their LIST chunk, pinning those pages (handlers.py lists in
    chunks for the same reason).

    `previous`: this object's last copy. What is equal in it is taken as is, not copied
    again: most updates change the status only (the copy was most of a standby's own
    work per watch event). Copies share those parts: nobody changes a copy in place."""
    before = previous or {}
    meta = body.get("metadata")
    out = {sys.intern(k): _kept(v, before.get(k)) for k, v in body.items() if k != "metadata"}
    if isinstance(meta, Mapping):
        old = before.get("metadata")
        old_meta: Mapping[str, Any] = old if isinstance(old, Mapping) else {}
        kept = {sys.intern(k): _kept(v, old_meta.get(k)) for k, v in meta.items()
                if k != "managedFields"}
        annotations = kept.get("annotations")
        if isinstance(annotations, dict) and LAST_APPLIED in annotations:
            del annotations[LAST_APPLIED]  # a fresh copy: the previous one never has it
        out["metadata"] = kept
    return out


def _kept(value: Any, old: Any) -> Any:
    """A copy of `value` that takes what equals `old` (the same part of the previous
    copy) from it: a status that gained a condition or a history entry copies that."""
    if old is None:
        return _compact(value)
    if old == value:  # compared in C, far cheaper than copying
        return old
    if isinstance(value, Mapping) and isinstance(old, Mapping):
        return {sys.intern(k): _kept(v, old.get(k)) for k, v in value.items()}
    if isinstance(value, list) and isinstance(old, list):
        return [_kept(v, old[i] if i < len(old) else None) for i, v in enumerate(value)]
    return _compact(value)


def _compact(value: Any) -> Any:
    if isinstance(value, str):
        return sys.intern(value) if len(value) <= SHORT else value
    if isinstance(value, Mapping):
        return {sys.intern(k): _compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


@dataclass
class Watched(Generic[SpecT]):
    body: dict[str, Any]
    spec: SpecT | InvalidSpec | None = None
    spec_generation: int | None = None  # the generation `spec` was parsed from

    @property
    def meta(self) -> Mapping[str, Any]:
        return self.body.get("metadata") or {}

    @property
    def status(self) -> Mapping[str, Any]:
        return self.body.get("status") or {}

    def parsed(self, parse: Callable[[Mapping[str, Any]], SpecT]) -> SpecT | InvalidSpec:
        """The spec, parsed once per generation (an invalid one as its InvalidSpec)."""
        generation = int(self.meta.get("generation") or 0)
        if self.spec is None or self.spec_generation != generation:
            try:
                self.spec = parse(self.body.get("spec") or {})
            except InvalidSpec as exc:
                self.spec = exc
            self.spec_generation = generation
        return self.spec
