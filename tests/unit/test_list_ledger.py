"""When every object of a namespace's first list has been taken in (controllers/listing)."""

from __future__ import annotations

from collections import Counter

from celery_operator.controllers.listing import ListLedger

PLURAL = "scheduledtasks"


def test_a_namespace_is_complete_once_each_listed_object_was_handled() -> None:
    ledger = ListLedger()
    assert not ledger.complete(PLURAL, "a")  # not listed yet
    ledger.listed(PLURAL, None, Counter({"a": 2, "b": 1}))  # one list of every namespace
    assert ledger.complete(PLURAL, "empty")  # listed, with nothing in it
    ledger.handled(PLURAL, "a")
    ledger.handled(PLURAL, "b")
    assert (ledger.complete(PLURAL, "a"), ledger.complete(PLURAL, "b")) == (False, True)
    ledger.handled(PLURAL, "a")
    assert ledger.complete(PLURAL, "a")


def test_a_relist_does_not_move_the_goal_and_lists_are_per_namespace_or_for_all() -> None:
    ledger = ListLedger()
    ledger.listed(PLURAL, "a", Counter({"a": 1}))
    ledger.listed(PLURAL, "a", Counter({"a": 5}))  # a later relist of the same
    assert not ledger.complete(PLURAL, "b")  # its own list has not come
    ledger.handled(PLURAL, "a")
    assert ledger.complete(PLURAL, "a")
    assert not ledger.complete("periodictasks", "a")


def test_a_lists_own_metadata_is_read_from_its_end_or_from_the_whole_page() -> None:
    from celery_operator.controllers.listing import _list_meta

    item = '{"metadata":{"name":"a","resourceVersion":"7"},"spec":{}}'
    last = f'{{"apiVersion":"v1","items":[{item}],"kind":"L","metadata":{{"continue":"c",' \
           '"resourceVersion":"9"}}\n'
    first = f'{{"kind":"L","metadata":{{"resourceVersion":"9"}},"items":[{item}]}}'
    tail_item = '{"items":[{"spec":{},"metadata":{"resourceVersion":"7"}}],' \
                '"metadata":{"resourceVersion":"9"},"kind":"L"}'
    assert _list_meta(last.encode()) == {"continue": "c", "resourceVersion": "9"}
    assert _list_meta(first.encode()) == {"resourceVersion": "9"}
    head_meta = '{"metadata":{"resourceVersion":"9"},' \
                '"items":[{"spec":{},"metadata":{"resourceVersion":"7"}}]}'
    assert _list_meta(tail_item.encode()) == {"resourceVersion": "9"}  # never an item's
    assert _list_meta(head_meta.encode()) == {"resourceVersion": "9"}


def test_the_intake_is_arriving_while_listed_objects_keep_being_handled() -> None:
    now = [100.0]
    ledger = ListLedger(clock=lambda: now[0])
    assert not ledger.arriving(PLURAL, within=10)  # nothing handled yet
    ledger.handled(PLURAL, "a")
    now[0] += 9.9
    assert ledger.arriving(PLURAL, within=10)
    now[0] += 0.2
    assert not ledger.arriving(PLURAL, within=10)


def test_listeners_hear_of_each_namespace_once_it_is_complete_and_of_each_whole_list() -> None:
    ledger = ListLedger()
    heard: list[str | None] = []
    ledger.on_complete(PLURAL, heard.append)
    ledger.handled(PLURAL, "a")  # taken in before the list is known whole: not yet
    assert heard == []
    ledger.listed(PLURAL, None, Counter({"a": 2, "b": 1}))
    assert heard == [None]  # waiters look again: "empty" is complete from here on
    ledger.handled(PLURAL, "a")
    ledger.handled(PLURAL, "b")
    ledger.handled(PLURAL, "a")  # a later event of the same namespace: told once only
    ledger.listed(PLURAL, None, Counter({"a": 9}))  # a relist tells nothing
    assert heard == [None, "a", "b"]
