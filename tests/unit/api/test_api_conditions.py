"""metav1.Condition helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from celery_operator.api import READY, STALLED, get_condition, is_condition_true, set_condition

T0 = datetime(2030, 1, 1, 12, 0, 0, 500_000, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def _set(conditions: list[dict[str, Any]], **kw: Any) -> list[dict[str, Any]]:
    args: dict[str, Any] = {
        "type": READY,
        "status": "True",
        "reason": "Succeeded",
        "message": "the task succeeded",
        "generation": 3,
        "now": T0,
    }
    args.update(kw)
    return set_condition(conditions, **args)


def test_new_condition_is_appended_with_all_fields() -> None:
    assert _set([]) == [
        {
            "type": "Ready",
            "status": "True",
            "observedGeneration": 3,
            "lastTransitionTime": "2030-01-01T12:00:00Z",
            "reason": "Succeeded",
            "message": "the task succeeded",
        }
    ]


def test_same_status_keeps_the_transition_time() -> None:
    first = _set([])
    second = _set(first, reason="StillFine", message="changed", generation=4, now=T1)
    assert second[0]["lastTransitionTime"] == "2030-01-01T12:00:00Z"
    assert (second[0]["reason"], second[0]["message"], second[0]["observedGeneration"]) == (
        "StillFine",
        "changed",
        4,
    )


def test_status_change_moves_the_transition_time() -> None:
    second = _set(_set([]), status="False", reason="TaskFailed", now=T1)
    assert second[0]["lastTransitionTime"] == "2030-01-01T12:05:00Z"


def test_input_is_not_modified_and_order_is_kept() -> None:
    stalled = _set([], type=STALLED, status="False", reason="SpecValid")
    both = _set(stalled)
    before = [dict(c) for c in both]
    after = _set(both, type=STALLED, status="True", reason="InvalidSpec", now=T1)
    assert both == before
    assert [c["type"] for c in after] == ["Stalled", "Ready"]
    assert after[0]["status"] == "True"
    assert after[1] == both[1]


def test_generation_none_omits_observed_generation() -> None:
    assert "observedGeneration" not in _set([], generation=None)[0]


def test_long_messages_are_cut_to_the_api_limit() -> None:
    assert len(_set([], message="x" * 40_000)[0]["message"]) == 32768


@pytest.mark.parametrize("status", ["true", "Yes", ""])
def test_bad_status_raises(status: str) -> None:
    with pytest.raises(ValueError, match="status"):
        _set([], status=status)


@pytest.mark.parametrize("reason", ["", "not camel", "Trailing,", "1Digit"])
def test_bad_reason_raises(reason: str) -> None:
    with pytest.raises(ValueError, match="reason"):
        _set([], reason=reason)


def test_get_condition() -> None:
    conditions = _set(_set([], type=STALLED, status="False", reason="Fine"))
    ready = get_condition(conditions, READY)
    assert ready is not None and ready["status"] == "True"
    assert get_condition(conditions, "Reconciling") is None
    assert get_condition(None, READY) is None
    assert is_condition_true(conditions, READY)
    assert not is_condition_true(conditions, STALLED)
    assert not is_condition_true([], READY)
