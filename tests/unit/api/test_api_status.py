"""Status helpers keep values within the CRD's limits."""

from __future__ import annotations

import json

from celery_operator.api import FINISHED_PHASES, Phase
from celery_operator.api.status import (
    ATTEMPT_ERROR_MESSAGE_MAX_LENGTH,
    ERROR_MESSAGE_MAX_LENGTH,
    TRACEBACK_MAX_LENGTH,
    attempt_error,
    capped_result,
    keep_last,
    task_error,
    truncate,
)


def test_phases() -> None:
    assert Phase("Succeeded") is Phase.SUCCEEDED
    assert Phase.QUEUED == "Queued"
    assert str(Phase.QUEUED) == "Queued"
    assert {p.value for p in FINISHED_PHASES} == {
        "Succeeded",
        "Failed",
        "Revoked",
        "Expired",
        "Invalid",
    }


def test_truncate() -> None:
    assert truncate("abc", 3) == "abc"
    assert truncate("abcdef", 4) == "abc…"
    assert truncate("abcdef", 4, keep_end=True) == "…def"


def test_task_error_is_cut_to_the_limits() -> None:
    traceback = "Traceback:\n" + "line\n" * 10_000 + "ValueError: boom"
    error = task_error("ValueError", "m" * 10_000, traceback)
    assert len(error["message"]) == ERROR_MESSAGE_MAX_LENGTH
    assert len(error["traceback"]) == TRACEBACK_MAX_LENGTH
    assert error["traceback"].endswith("ValueError: boom")
    assert "traceback" not in task_error("KeyError", "k")
    assert len(attempt_error("E", "m" * 5000)["message"]) == ATTEMPT_ERROR_MESSAGE_MAX_LENGTH


def test_small_results_are_kept() -> None:
    assert capped_result({"a": [1, None, "x"]}) == ({"a": [1, None, "x"]}, False)
    assert capped_result(None) == (None, False)


def test_large_results_become_truncated_json_text() -> None:
    value = {"data": "é" * 10_000}
    result, truncated = capped_result(value, max_bytes=101)
    assert truncated
    assert isinstance(result, str)
    assert len(result.encode()) <= 101
    assert json.dumps(value, ensure_ascii=False).replace(" ", "").startswith(result)


def test_non_json_numbers_are_not_stored_as_json() -> None:
    result, truncated = capped_result([float("nan")])
    assert (result, truncated) == ("[NaN]", True)


def test_keep_last() -> None:
    assert keep_last([1, 2, 3], 2) == [2, 3]
    assert keep_last([1, 2, 3], 5) == [1, 2, 3]
    assert keep_last([1, 2, 3], 0) == []
