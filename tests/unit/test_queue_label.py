"""The `queue` metric label is user input: bounded, so a tenant cannot grow the series."""

from __future__ import annotations

from celery_operator.metrics import QueueLabels


def test_queue_labels_keep_the_first_names_and_fold_the_rest_into_other() -> None:
    labels = QueueLabels(2)
    assert [labels.label(q) for q in ("a", None, "b", "a", "celery", "c")] == [
        "a", "celery", "other", "a", "celery", "other"]
