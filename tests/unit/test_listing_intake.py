"""A restart's list: pages decoded as json would, objects taken in as pages arrive (one
failing object logged, the rest taken), a list that expires taken in again."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections import Counter
from typing import Any, cast

import pytest
from kopf._cogs.structs import references

from celery_operator.controllers import listing
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


def _page(names: list[str]) -> bytes:
    return zlib.compress(json.dumps({
        "kind": "ScheduledTaskList", "apiVersion": "celeryoperator.dev/v1alpha1",
        "items": [{"metadata": {"namespace": "ns", "name": n}} for n in names],
        "metadata": {"resourceVersion": "9"},
    }).encode())


def test_a_list_that_expires_while_taken_in_is_taken_in_again_and_counted_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """The API server refuses a continue token once etcd compacted its revision (410):
    what was taken in stays, the list is read again, the ledger hears the whole list."""
    attempts: list[int] = []

    async def fetch_pages(settings: Any, resource: Any, namespace: Any, logger: Any,
                          on_page: Any) -> str:
        attempts.append(1)
        on_page(_page(["a", "b"]))
        await asyncio.sleep(0)
        if len(attempts) == 1:
            raise listing.ListExpired("The provided continue parameter is too old")
        on_page(_page(["c"]))
        return "9"

    monkeypatch.setattr(listing, "_fetch_pages", fetch_pages)
    monkeypatch.setattr(listing, "RELIST_DELAY_SECONDS", 0.0)
    taken: list[tuple[str, str]] = []
    counts: Counter[str] = Counter()
    resource = references.Resource("celeryoperator.dev", "v1alpha1", "scheduledtasks")
    version = asyncio.run(listing._take_in_list(
        cast(Any, None), resource, None, None,
        lambda raw: taken.append((raw["kind"], raw["metadata"]["name"])), counts))
    assert version == "9" and len(attempts) == 2
    assert taken == [("ScheduledTask", n) for n in ("a", "b", "a", "b", "c")]
    assert counts == Counter({"ns": 3})  # the whole list's, not the expired attempt's
    assert "expired before its last page was read" in caplog.text
