"""Spec errors that name the offending field, in the API server's `path: message` style."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One problem with one field, e.g. `spec.schedule.timeZone: unknown time zone "X"`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidSpec(ValueError):
    """A spec the operator cannot run; `errors` lists every problem found, in field order."""

    errors: tuple[FieldError, ...]

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors = tuple(errors)
        if not self.errors:
            raise ValueError("InvalidSpec needs at least one FieldError")
        super().__init__(str(self))

    def __str__(self) -> str:
        return "; ".join(f"{e.path}: {e.message}" for e in self.errors)

    def __reduce__(self) -> tuple[type[InvalidSpec], tuple[tuple[FieldError, ...]]]:
        return (InvalidSpec, (self.errors,))
