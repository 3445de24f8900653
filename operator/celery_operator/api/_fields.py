"""Typed reads from a raw (JSON-like) mapping that collect field-path errors.

Private to the api package: parsers read every field through a `Reader`, which records a
FieldError and returns None on a wrong type, so one pass reports every problem at once.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any

from celery_operator.api.bounds import JSON_DEPTH_MAX, TIME_END, TIME_MIN, TIME_RANGE_MESSAGE
from celery_operator.api.errors import FieldError, InvalidSpec
from celery_operator.api.timefmt import TimeOutOfRange, parse_time

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_NO_SLIPS: Mapping[str, str] = MappingProxyType({})
TIME_MESSAGE = "must be an RFC 3339 date-time such as 2030-01-01T09:00:00Z"


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def describe(value: object) -> str:
    """The JSON type name of a value, for "must be X, not Y" messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, Sequence):
        return "array"
    return type(value).__name__


class Reader:
    """Reads fields of one raw object, recording errors instead of raising."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def raise_if_invalid(self) -> None:
        if self.errors:
            raise InvalidSpec(self.errors)

    def _get(self, raw: Mapping[str, Any], key: str, path: str, required: bool) -> Any:
        value = raw.get(key)
        if value is None and required:
            self.error(join(path, key), "Required value")
        return value

    def mapping(
        self, raw: Mapping[str, Any], key: str, path: str, *, required: bool = False
    ) -> Mapping[str, Any] | None:
        value = self._get(raw, key, path, required)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.error(join(path, key), f"must be an object, not {describe(value)}")
            return None
        odd = [k for k in value if not isinstance(k, str)]
        if odd:
            self.error(
                join(path, key), f"Invalid value: key {odd[0]!r}: object keys must be strings"
            )
            return None
        return value

    def sequence(
        self, raw: Mapping[str, Any], key: str, path: str, *, required: bool = False
    ) -> Sequence[Any] | None:
        value = self._get(raw, key, path, required)
        if value is None:
            return None
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            self.error(join(path, key), f"must be an array, not {describe(value)}")
            return None
        return value

    def string(
        self,
        raw: Mapping[str, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        pattern: re.Pattern[str] | None = None,
        pattern_message: str = "",
        choices: Sequence[str] = (),
    ) -> str | None:
        value = self._get(raw, key, path, required)
        if value is None:
            return None
        field = join(path, key)
        if not isinstance(value, str):
            self.error(field, f"must be a string, not {describe(value)}")
            return None
        if required and not value:
            self.error(field, "Required value")
            return None
        if choices and value not in choices:
            supported = ", ".join(f'"{c}"' for c in choices)
            self.error(field, f'Unsupported value: "{value}": supported values: {supported}')
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.error(field, f'Invalid value: "{value}": {pattern_message}')
            return None
        return value

    def boolean(self, raw: Mapping[str, Any], key: str, path: str, *, default: bool) -> bool:
        value = raw.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(join(path, key), f"must be a boolean, not {describe(value)}")
            return default
        return value

    def integer(
        self,
        raw: Mapping[str, Any],
        key: str,
        path: str,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        value = raw.get(key)
        if value is None:
            return None
        field = join(path, key)
        # JSON numbers decode to float when written as 3.0; accept those, refuse 3.5.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(field, f"must be an integer, not {describe(value)}")
            return None
        return value if self._in_range(field, value, minimum, maximum, False) else None

    def number(
        self,
        raw: Mapping[str, Any],
        key: str,
        path: str,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        exclusive_minimum: bool = False,
    ) -> float | None:
        value = raw.get(key)
        if value is None:
            return None
        field = join(path, key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(field, f"must be a number, not {describe(value)}")
            return None
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            self.error(field, "must be a finite number")
            return None
        return (
            number if self._in_range(field, number, minimum, maximum, exclusive_minimum) else None
        )

    def _in_range(
        self,
        field: str,
        value: float,
        minimum: float | None,
        maximum: float | None,
        exclusive_minimum: bool,
    ) -> bool:
        shown = int(value) if float(value).is_integer() and abs(value) < 2**53 else value
        if minimum is not None:
            low = int(minimum) if float(minimum).is_integer() else minimum
            if exclusive_minimum and value <= minimum:
                self.error(field, f"Invalid value: {shown}: must be greater than {low}")
                return False
            if value < minimum:
                self.error(field, f"Invalid value: {shown}: must be greater than or equal to {low}")
                return False
        if maximum is not None and value > maximum:
            high = int(maximum) if float(maximum).is_integer() else maximum
            self.error(field, f"Invalid value: {shown}: must be less than or equal to {high}")
            return False
        return True

    def time(self, raw: Mapping[str, Any], key: str, path: str) -> datetime | None:
        value = raw.get(key)
        if value is None:
            return None
        field = join(path, key)
        if not isinstance(value, str):
            self.error(field, f"must be an RFC 3339 date-time string, not {describe(value)}")
            return None
        return self.time_text(field, value)

    def time_text(self, field: str, value: str) -> datetime | None:
        """Parse a date-time string found at `field`, within the years the CRD allows."""
        try:
            parsed = parse_time(value)
        except TimeOutOfRange:
            parsed = None
        except ValueError:
            self.error(field, f'Invalid value: "{value}": {TIME_MESSAGE}')
            return None
        if parsed is None or not TIME_MIN <= parsed < TIME_END:
            self.error(field, f'Invalid value: "{value}": {TIME_RANGE_MESSAGE}')
            return None
        return parsed

    def no_other_keys(
        self,
        raw: Mapping[str, Any],
        path: str,
        known: Collection[str],
        slips: Mapping[str, str] = _NO_SLIPS,
    ) -> None:
        """Record every key of `raw` (found at `path`) that is not a field: a known slip
        with its message, any other with the field it resembles, if one does."""
        for key in raw:
            if key in known:
                continue
            if key in slips:
                self.error(join(path, key), f"Forbidden: {slips[key]}")
                continue
            near = resembles(str(key), known)
            hint = f", did you mean {near}?" if near else ""
            self.error(join(path, str(key)), f"Forbidden: unknown field{hint}")

    def json_value(self, value: Any, path: str) -> bool:
        """Check that `value` (found at `path`) is plain JSON; record the first problem."""
        problem = json_problem(value, path)
        if problem is not None:
            self.error(*problem)
        return problem is None


def _folded(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def resembles(key: str, known: Collection[str]) -> str | None:
    """The field `key` was probably meant to be: the same but for case and '_'/'-'
    (day_of_week, dayofweek -> dayOfWeek), else a close spelling (qeueu -> queue)."""
    same = [k for k in known if _folded(k) == _folded(key)]
    if same:
        return same[0]
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.75)
    return close[0] if close else None


def json_problem(value: Any, path: str) -> tuple[str, str] | None:
    """(path, message) of the first part of `value` that is not plain JSON, or None.

    Plain JSON: None, booleans, 64-bit integers, finite floats, strings, lists/tuples and
    string-keyed mappings, nested at most JSON_DEPTH_MAX deep. Iterative, so deep junk
    cannot exhaust the stack.
    """
    pending: list[tuple[Any, str, int]] = [(value, path, 0)]
    while pending:
        item, where, depth = pending.pop()
        if item is None or isinstance(item, bool | str):
            continue
        if isinstance(item, int):
            if not _INT64_MIN <= item <= _INT64_MAX:
                return where, "Invalid value: integer out of range: must fit in 64 bits"
            continue
        if isinstance(item, float):
            if item != item or item in (float("inf"), float("-inf")):
                return where, "must be a finite number"
            continue
        if not isinstance(item, Mapping | list | tuple):
            return where, f"must be a JSON value, not {type(item).__name__}"
        if depth >= JSON_DEPTH_MAX:
            return where, f"Too deep: may not nest more than {JSON_DEPTH_MAX} levels"
        if isinstance(item, Mapping):
            for key in item:
                if not isinstance(key, str):
                    return where, f"Invalid value: key {key!r}: object keys must be strings"
            children = [(v, join(where, k), depth + 1) for k, v in item.items()]
        else:
            children = [(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(item)]
        pending.extend(reversed(children))
    return None
