"""The metrics behind the alerts, moved by the engines' real code paths: the missed-run
and retry counts from real plans, reconcile errors from the due-time queue, and task-name
labels bounded like queue labels."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY

from celery_operator import metrics
from celery_operator.controllers.duequeue import DueQueue
from celery_operator.controllers.periodicengine import missed_runs_added
from celery_operator.controllers.taskengine import retries_recorded
from celery_operator.scheduling.periodic_plan import PeriodicObserved, plan_periodic

from .merge_patch import merge
from .test_duequeue import Clock, run, settle
from .test_periodic_plan import m, ran_at_10m
from .test_task_lifecycle import FAILURE, T0, Task, dispatch, new, s


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_task_labels_keep_the_first_hundred_names_and_fold_the_rest_into_other() -> None:
    names = [f"shop.tasks.t{uuid.uuid4().hex}" for _ in range(metrics.TASK_LABELS_MAX + 5)]
    labels = [metrics.task_label(n) for n in names]
    kept = [label for label in labels if label != metrics.OTHER_QUEUE]
    assert len(kept) <= metrics.TASK_LABELS_MAX  # other tests may have labelled some first
    assert labels[-5:] == [metrics.OTHER_QUEUE] * 5
    assert kept == names[:len(kept)]


def test_missed_runs_added_is_what_the_plan_adds_to_status_missed_runs() -> None:
    p = ran_at_10m()

    def observed() -> PeriodicObserved:
        return PeriodicObserved(
            name=p.name, generation=p.generation, created=p.created, spec=p.spec(),
            status=p.status, annotations={}, children=list(p.children.values()), now=m(55),
        )

    obs = observed()
    step = plan_periodic(obs, p.cfg)  # back at 55m: 20, 30, 40 and 50 were missed
    assert missed_runs_added(obs, step) == 3
    assert step.status is not None
    p.status = merge(p.status, step.status)
    again = observed()
    assert missed_runs_added(again, plan_periodic(again, p.cfg)) == 0  # counted once


def _retries(task: Task, at_seconds: float, **observed: object) -> int:
    before = dict(task.status)
    return retries_recorded(before, task.step(T0 + s(at_seconds), **observed).status)


def test_each_celery_retry_and_each_new_attempt_counts_once() -> None:
    task = new(retry={"limit": 1, "backoff": {"initialSeconds": 10}})
    dispatch(task, T0)
    started = T0 + s(1)
    assert _retries(task, 3, backend=task.backend("STARTED", worker="w1"),
                    started_hint=started) == 0
    retry2 = task.backend("RETRY", worker="w1", retries=2, result=FAILURE)
    assert _retries(task, 4, backend=retry2, started_hint=started) == 2  # seen late: both
    assert _retries(task, 5, backend=retry2, started_hint=started) == 0  # read again
    assert _retries(task, 6, backend=task.backend("FAILURE", result=FAILURE, date_done=T0),
                    started_hint=started) == 1  # spec.retry: attempt 2 in 10 s
    assert task.phase == "Retrying"
    assert _retries(task, 7) == 0  # a restart while waiting


def test_a_reconcile_that_raises_counts_one_reconcile_error_per_failure() -> None:
    before = _value("celery_operator_reconcile_errors_total")

    async def main(clock: Clock) -> None:
        failures = 2

        async def reconcile(key: str) -> None:
            nonlocal failures
            if failures:
                failures -= 1
                raise RuntimeError("broken object")

        queue = DueQueue(reconcile, clock)
        queue.start()
        queue.now("a")
        await settle(3600)  # retried with backoff until it went through
        assert failures == 0
        await queue.stop()

    run(main)
    assert _value("celery_operator_reconcile_errors_total") - before == 2


def test_no_label_of_the_operator_carries_a_url_or_a_password() -> None:
    """Every label is a name the operator chose or a capped object/queue/task name;
    broker URLs (with their passwords) live only in Secrets and redacted messages."""
    allowed = {"queue", "app", "outcome", "verb", "resource", "task", "namespace", "reason",
               "le"}
    for family in REGISTRY.collect():
        if not family.name.startswith("celery_operator_"):
            continue
        for sample in family.samples:
            assert set(sample.labels) <= allowed, (family.name, sample.labels)
            for value in sample.labels.values():
                assert "://" not in value and "@" not in value, (family.name, value)


def test_a_deleted_app_leaves_no_unreachable_or_depth_series_behind() -> None:
    metrics.APP_UNREACHABLE.labels(app="shop/gone").set(1)
    metrics.BROKER_QUEUE_DEPTH.labels(app="shop/gone", queue="reports").set(7)
    metrics.APP_UNREACHABLE.labels(app="shop/kept").set(1)
    metrics.forget_app("shop/gone")
    assert REGISTRY.get_sample_value("celery_operator_app_unreachable",
                                     {"app": "shop/gone"}) is None
    assert REGISTRY.get_sample_value("celery_operator_broker_queue_depth",
                                     {"app": "shop/gone", "queue": "reports"}) is None
    assert _value("celery_operator_app_unreachable", app="shop/kept") == 1.0
