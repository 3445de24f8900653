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
