"""A PeriodicTask that keeps its runs in status (runObjects: Never), as the fault tests
use it: a run every 2 s, and the per-task-id count of publishes and executions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery_operator.devstack.demo_app import read_executions
from celery_operator.scheduling.task_lifecycle import task_id_for

from .broker_tap import BrokerTap
from .conftest import Tasks


def runs_of(periodic: Tasks, name: str) -> dict[str, Any]:
    return dict((periodic.get(name).get("status") or {}).get("runs") or {})


def phase_of(run: dict[str, Any]) -> str | None:
    return (run.get("status") or {}).get("phase")


class EveryTwoSeconds:
    """A `demo.add` run every 2 s on `queue`, its runs kept in status (100 of them)."""

    def __init__(self, periodic: Tasks, name: str, queue: str) -> None:
        self.periodic, self.name = periodic, name
        created = periodic.create(name, {
            "schedule": {"interval": "2s"},
            "task": {"name": "demo.add", "args": [1, 1], "queue": queue},
            "runObjects": "Never",
            "successfulRunsHistoryLimit": 100,
        })
        self.uid = created["metadata"]["uid"]

    def runs(self) -> dict[str, Any]:
        return runs_of(self.periodic, self.name)

    def succeeded(self) -> set[str]:
        return {n for n, r in self.runs().items() if phase_of(r) == "Succeeded"}

    def unfinished(self) -> set[str]:
        return {n for n, r in self.runs().items() if phase_of(r) != "Succeeded"}

    def task_id(self, run: str) -> str:
        return task_id_for(f"{self.uid}/run/{run}", 1)

    def assert_each_ran_once(self, runs: set[str], broker_tap: BrokerTap,
                             execution_logs: list[Path]) -> None:
        """Each run's task id published once (the broker tap) and executed once (the
        workers' logs, none dropped by a guard); nothing executed that is not a run."""
        ids = {self.task_id(name): name for name in runs}
        broker_tap.sync()
        published = broker_tap.published_of(ids)
        seen = read_executions(*execution_logs)
        assert {ids[i]: (published[i], seen.runs[i], seen.dropped[i]) for i in ids} == {
            name: (1, 1, 0) for name in runs}
        assert set(seen.runs) <= {self.task_id(n) for n in self.runs()}
