"""A listed page: decoded as json would, each object taken in even if one fails."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import pytest
from kopf._cogs.structs import references

from celery_operator.controllers.listing import _decode, _list_meta, _take_in


def test_a_page_decodes_as_json_would() -> None:
    raw = json.dumps({"items": [{"spec": {"task": {"args": [2**63 - 1, -(2**63), 1.5,
                                                             "é", None, True]}}}],
                      "metadata": {"resourceVersion": "7", "continue": "x"}}).encode()
    assert _decode(raw) == json.loads(raw)
    assert _list_meta(raw) == {"resourceVersion": "7", "continue": "x"}


def test_an_escaped_lone_surrogate_is_kept_not_refused() -> None:
    raw = b'{"items": [{"spec": {"task": {"args": ["\\ud800"]}}}]}'
    assert _decode(raw)["items"][0]["spec"]["task"]["args"] == ["\ud800"]


def test_an_object_that_fails_to_be_taken_in_is_logged_and_the_rest_are_taken(
    caplog: pytest.LogCaptureFixture,
) -> None:
    items = [{"metadata": {"namespace": "ns", "name": f"t{i}"}} for i in range(250)]
    taken: list[str] = []

    def intake(raw: dict[str, Any]) -> None:
        if raw["metadata"]["name"] == "t7":
            raise ValueError("broken")
        taken.append(raw["metadata"]["name"])

    resource = references.Resource("celeryoperator.dev", "v1alpha1", "scheduledtasks")
    asyncio.run(_take_in(resource, cast(Any, items), intake))
    assert taken == [f"t{i}" for i in range(250) if i != 7]
    assert "listed scheduledtasks ns/t7 could not be taken in" in caplog.text
