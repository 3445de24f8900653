"""fit_status: every status patch fits the CRD's size limits, and the table is the CRD's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from api_crd_schema import schema_at, walk
from hypothesis import given
from hypothesis import strategies as st

from celery_operator.api import PERIODIC_PLURAL, SCHEDULED_PLURAL
from celery_operator.api.limits import STATUS_LIMITS, fit_status

KINDS = {SCHEDULED_PLURAL: "ScheduledTask", PERIODIC_PLURAL: "PeriodicTask"}
KEYWORDS = ("maxLength", "maxItems", "maxProperties")


def crd_status_limits(kind: str) -> dict[str, tuple[str, int]]:
    found: dict[str, tuple[str, int]] = {}
    for path, sub in walk(schema_at(kind, "status")):
        for keyword in KEYWORDS:
            if keyword in sub:
                assert path not in found, f"{path} has two limits"
                found[path] = (keyword, sub[keyword])
    return found


@pytest.mark.parametrize("plural", sorted(KINDS))
def test_the_table_is_exactly_the_crd_status_limits(plural: str) -> None:
    assert dict(STATUS_LIMITS[plural]) == crd_status_limits(KINDS[plural])


def violations(schema: Mapping[str, Any], value: Any, path: str = "status") -> list[str]:
    """Every place where `value` breaks a size limit of `schema`."""
    found: list[str] = []
    if isinstance(value, str) and len(value) > schema.get("maxLength", len(value)):
        found.append(path)
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", len(value)):
            found.append(path)
        for index, item in enumerate(value):
            found += violations(schema.get("items", {}), item, f"{path}[{index}]")
    if isinstance(value, dict):
        if len(value) > schema.get("maxProperties", len(value)):
            found.append(path)
        properties = schema.get("properties", {})
        for key, item in value.items():
            sub = properties.get(key, schema.get("additionalProperties"))
            if isinstance(sub, Mapping):
                found += violations(sub, item, f"{path}.{key}")
    return found


def test_overlong_values_are_cut_at_every_depth() -> None:
    patch = {
        "phase": "Failed",
        "worker": "w" * 300,
        "taskId": None,
        "error": {"type": "E" * 300, "message": "m" * 5000, "traceback": "start\n" + "t" * 20000},
        "attempts": [
            {"attempt": n, "worker": "x" * 256, "error": {"type": "T", "message": "y" * 2000}}
            for n in range(1, 26)
        ],
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "R" * 2000, "message": "z" * 40000}
        ],
        "result": "r" * 100_000,
    }
    fitted = fit_status(SCHEDULED_PLURAL, patch)
    assert violations(schema_at("ScheduledTask", "status"), fitted) == []
    assert fitted["worker"] == "w" * 254 + "…"
    assert fitted["taskId"] is None
    assert fitted["error"]["message"] == "m" * 4095 + "…"
    # A traceback keeps its end, where the error is.
    assert fitted["error"]["traceback"] == "…" + "t" * 16383
    assert [a["attempt"] for a in fitted["attempts"]] == list(range(6, 26))
    assert fitted["attempts"][0]["error"]["message"] == "y" * 1023 + "…"
    assert fitted["conditions"][0]["reason"] == "R" * 1023 + "…"
    assert len(fitted["conditions"][0]["message"]) == 32768
    # Not limited by the CRD (status.result is capped by its own helper): untouched.
    assert fitted["result"] == patch["result"]
    assert fitted["phase"] == "Failed"


def test_periodic_task_patches_are_cut() -> None:
    patch = {
        "lastHandledRunRequest": "2030-01-01T00:00:00Z" + "x" * 300,
        "recentRuns": [{"name": f"run-{n}", "phase": "Succeeded"} for n in range(30)],
        "active": [{"name": "a" * 300}],
        "nextScheduleTimes": [f"2030-01-01T00:00:{n:02d}Z" for n in range(12)],
    }
    fitted = fit_status(PERIODIC_PLURAL, patch)
    assert violations(schema_at("PeriodicTask", "status"), fitted) == []
    assert len(fitted["lastHandledRunRequest"]) == 256
    assert fitted["lastHandledRunRequest"].endswith("…")
    assert [r["name"] for r in fitted["recentRuns"]] == [f"run-{n}" for n in range(10, 30)]
    assert fitted["nextScheduleTimes"] == patch["nextScheduleTimes"][2:]
    assert fitted["active"] == [{"name": "a" * 252 + "…"}]


def test_a_patch_within_the_limits_comes_back_equal_and_the_input_is_not_changed() -> None:
    patch = {"worker": "w1", "attempts": [{"attempt": 1, "worker": "w" * 300}], "error": None}
    original = {"worker": "w1", "attempts": [{"attempt": 1, "worker": "w" * 300}], "error": None}
    fitted = fit_status(SCHEDULED_PLURAL, patch)
    assert patch == original
    assert fitted["attempts"][0]["worker"] == "w" * 254 + "…"
    small = {"worker": "w1", "attempts": [{"attempt": 1}], "error": None, "conditions": []}
    assert fit_status(SCHEDULED_PLURAL, small) == small


def _string(schema: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    limit = schema.get("maxLength", 300)
    sizes = st.integers(0, limit + 5) | st.just(limit) | st.just(limit + 1)
    # A short random head, padded to the drawn length (Hypothesis draws no huge texts).
    return st.tuples(st.text(max_size=5), sizes).map(lambda p: (p[0] + "é" * p[1])[: p[1]])


def from_schema(schema: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Values shaped like `schema`, often over its size limits, with None here and there."""
    if "properties" in schema:
        fields = {k: from_schema(v) for k, v in schema["properties"].items()}
        shaped: st.SearchStrategy[Any] = st.fixed_dictionaries({}, optional=fields)
    elif schema.get("type") == "array":
        most = schema.get("maxItems", 5) + 3
        shaped = st.lists(from_schema(schema["items"]), max_size=most)
    elif schema.get("type") == "string":
        shaped = _string(schema)
    else:
        shaped = st.integers(0, 5) | st.booleans()
    return st.none() | shaped


_STATUS = {kind: from_schema(schema_at(kind, "status")) for kind in KINDS.values()}


@pytest.mark.parametrize("kind", sorted(KINDS.values()))
@given(data=st.data())
def test_any_patch_fits_after_fit_status(kind: str, data: st.DataObject) -> None:
    plural = next(p for p, k in KINDS.items() if k == kind)
    patch = data.draw(_STATUS[kind]) or {}
    assert violations(schema_at(kind, "status"), fit_status(plural, patch)) == []


def test_maps_keep_their_first_entries_and_cut_their_values() -> None:
    # No status map has a maxProperties today; the walker handles one when it comes.
    from celery_operator.api.limits import _fit, _prefixes

    limits = {"labels": ("maxProperties", 2), "labels{}": ("maxLength", 3)}
    prefixes = _prefixes(SCHEDULED_PLURAL) | {"labels", "labels{}"}
    fitted = _fit({"a": "long", "b": "ok", "c": "x"}, "labels", limits, prefixes)
    assert fitted == {"a": "lo…", "b": "ok"}
