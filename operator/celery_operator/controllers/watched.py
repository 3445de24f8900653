"""What an engine keeps per watched object: its latest body and its parsed spec."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from celery_operator.api import InvalidSpec

SpecT = TypeVar("SpecT")


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
