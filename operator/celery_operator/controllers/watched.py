"""What an engine keeps per watched object: its latest body and its parsed spec."""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

from celery_operator.api import InvalidSpec

from .kubeio import resource_version

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


@dataclass(eq=False)
class Watched(Generic[SpecT]):
    """One watched object. `held` is its latest body, or that body packed: its JSON,
    zlib-compressed, a sixth of the memory of the decoded dicts and the parsed spec
    (tracemalloc: ~0.5 KiB against ~3.1 KiB for a pending ScheduledTask; ~15 us to
    pack). An engine packs objects that have nothing to do for a while (`pack`); the
    next read of `body` decodes it again (~8 us), the spec is parsed again when next
    asked for."""

    held: dict[str, Any] | bytes
    spec: SpecT | InvalidSpec | None = None
    spec_generation: int | None = None  # the generation `spec` was parsed from
    packed_phase: str | None = None  # status.phase while packed (counted without decoding)
    packed_version: int = 0  # resourceVersion while packed (a watch echo is told from it)

    @property
    def body(self) -> dict[str, Any]:
        held = self.held
        if isinstance(held, bytes):
            held = self.held = orjson.loads(zlib.decompress(held))
        return held

    @body.setter
    def body(self, value: dict[str, Any]) -> None:
        self.held = value

    @property
    def packed(self) -> bool:
        return isinstance(self.held, bytes)

    @property
    def version(self) -> int:
        """resource_version of the body, read without unpacking it."""
        if isinstance(self.held, bytes):
            return self.packed_version
        return resource_version(self.held)

    @property
    def phase(self) -> str | None:
        if isinstance(self.held, bytes):
            return self.packed_phase
        phase = self.status.get("phase")
        return str(phase) if phase is not None else None

    def pack(self) -> None:
        """Hold the body as JSON until it is read again. A body JSON cannot hold as it
        is (an integer beyond 64 bits, a lone surrogate) stays as it is."""
        if isinstance(self.held, bytes):
            return
        try:
            # Compressed, also for the size of the allocation: orjson's own output
            # buffer is 4 KiB whatever the length (tracemalloc), zlib's is exact.
            packed = zlib.compress(orjson.dumps(self.held), 1)
        except orjson.JSONEncodeError:
            return
        self.packed_phase, self.packed_version = self.phase, self.version
        self.held, self.spec, self.spec_generation = packed, None, None

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
