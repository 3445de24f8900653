"""What an engine keeps per watched object: its latest body and its parsed spec."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from celery_operator.api import InvalidSpec

SpecT = TypeVar("SpecT")

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `body` without what the engines never read but would hold for every
    object: `metadata.managedFields` (half of a decoded body) and kubectl's copy of the
    last applied manifest. Shallow: nested values are shared, not copied."""
    out = dict(body)
    meta = out.get("metadata")
    if not isinstance(meta, Mapping):
        return out
    annotations = meta.get("annotations") or {}
    applied = LAST_APPLIED in annotations
    if "managedFields" in meta or applied:
        meta = {k: v for k, v in meta.items() if k != "managedFields"}
        if applied:
            meta["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
        out["metadata"] = meta
    return out


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
