"""A start takes each PeriodicTask's children from its own ScheduledTask watch.

Each parent used to LIST its children once per process start: with 10,000 parents among
100,000 ScheduledTasks those LISTs kept the API server busy for minutes (bench/scale.py
at issue 17's size). Now a parent's first reconcile waits until every ScheduledTask of
the first list has been taken in, and the watch has told it its children.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from celery_operator.api import SCHEDULED_PLURAL, format_time
from celery_operator.api.names import PARENT_LABEL
from celery_operator.devstack import KubeEnv

from .conftest import StartOperator, Tasks, wait_for

PARENTS = 4
# ScheduledTasks beside the children, created while the operator is down: taking them in
# after the restart lasts long enough that every parent's first reconcile comes first.
# Named to sort after the children (a list comes in name order): a child taken in wakes
# its parent, so the children must not be the list's last objects.
FILLERS = 2000
WOKEN = re.compile(r"(\d+) PeriodicTasks of namespace \S+ waited for its ScheduledTasks")
LIST_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def _scheduledtask_lists(kube: KubeEnv) -> int:
    """LIST requests for ScheduledTasks the API server has answered (its own counter)."""
    total = 0.0
    for line in kube.kubectl("get", "--raw", "/metrics").stdout.splitlines():
        sample = LIST_SAMPLE.match(line)
        if sample and 'verb="LIST"' in sample["labels"] and (
                f'resource="{SCHEDULED_PLURAL}"' in sample["labels"]):
            total += float(sample["value"])
    return int(total)


def _skipped(periodic: Tasks) -> list[int]:
    return [int((periodic.get(f"p{i}").get("status") or {}).get("skippedRuns", 0))
            for i in range(PARENTS)]


def _parents_skipping(start_operator: StartOperator, periodic: Tasks) -> None:
    """PARENTS PeriodicTasks that each skip runs, and a stopped operator."""
    operator = start_operator()
    # Every 2 s, one run at a time, on a queue no worker reads: the first run stays
    # active and every later fire time is skipped — by an operator that knows that run.
    for i in range(PARENTS):
        periodic.create(f"p{i}", {
            "schedule": {"interval": "2s"}, "concurrencyPolicy": "Forbid",
            "task": {"name": "demo.add", "args": [i, 1], "queue": "nobody-consumes"},
        })
    wait_for(lambda: min(_skipped(periodic)) >= 1, 30, "a skipped run of each parent")
    operator.stop()


def test_a_restart_knows_every_parents_active_run_without_listing_children(
    kube: KubeEnv, start_operator: StartOperator, tasks: Tasks, periodic: Tasks,
) -> None:
    _parents_skipping(start_operator, periodic)
    before, lists = _skipped(periodic), _scheduledtask_lists(kube)
    start_operator()
    wait_for(lambda: all(s > b for s, b in zip(_skipped(periodic), before, strict=True)),
             30, "a skipped run of each parent after the restart")
    # One LIST of ScheduledTasks: the restarted operator's own (one page), none per parent.
    assert _scheduledtask_lists(kube) - lists == 1
    runs = sorted(t["metadata"]["labels"][PARENT_LABEL]
                  for t in tasks.list())
    assert runs == [f"p{i}" for i in range(PARENTS)]  # still the one run each


def test_parents_waiting_for_a_long_list_are_woken_when_it_is_in(
    start_operator: StartOperator, tasks: Tasks, periodic: Tasks,
) -> None:
    """Parents that reconcile while the ScheduledTask list is still being taken in wait
    for it and are woken as soon as it is in — not at the 120 s fallback, when they
    would list their children themselves."""
    _parents_skipping(start_operator, periodic)
    later = format_time(datetime.now(UTC) + timedelta(days=1))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: tasks.create(f"z{i:04d}", {
            "task": {"name": "demo.add", "args": [i, 1], "queue": "nobody-consumes"},
            "eta": later,
        }), range(FILLERS)))
    before = _skipped(periodic)
    operator = start_operator()
    wait_for(lambda: all(s > b for s, b in zip(_skipped(periodic), before, strict=True)),
             30, "a skipped run of each parent after the restart")
    # Each parent waited (the wake-up was needed), and was woken by the one wake-up.
    assert [int(n) for n in WOKEN.findall(operator.log_tail(100_000))] == [PARENTS]
    runs = sorted(t["metadata"]["labels"][PARENT_LABEL]
                  for t in tasks.list() if PARENT_LABEL in t["metadata"].get("labels", {}))
    assert runs == [f"p{i}" for i in range(PARENTS)]  # still the one run each
