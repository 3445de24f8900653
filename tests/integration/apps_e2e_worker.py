"""The Celery app of the apps end-to-end workers: the demo app, plus the task that
docs/install.md's "Several teams, several apps" section schedules (reports.tasks.monthly).

Run as `celery -A tests.integration.apps_e2e_worker worker` from the repository root."""

from __future__ import annotations

from celery_operator.devstack.demo_app import app

__all__ = ["app", "monthly"]


@app.task(name="reports.tasks.monthly")
def monthly(month: str) -> str:
    return f"report {month}"
