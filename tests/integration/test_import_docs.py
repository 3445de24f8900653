"""docs/migrating.md, followed literally against the real control plane and the operator.

The doc's `python file=…` blocks are written to a working directory, its `shell` blocks
run line by line with bash (celery-operator and kubectl on PATH, the test cluster's
kubeconfig, a django-celery-beat database made by the real package in a real PostgreSQL
as $DATABASE_URL), the report and manifest it shows are compared with what the importer
printed, and the PeriodicTasks must exist in the cluster with the schedules the sources
had, each accepted by the running operator (status.schedule).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from celery_operator.devstack import KubeEnv
from celery_operator.devstack.postgresserver import PostgresServer
from tests.integration.conftest import StartOperator, wait_for
from tests.integration.test_import_sources import ROOT, ROWS_SCRIPT, START

pytestmark = pytest.mark.integration

DOC = ROOT / "docs" / "migrating.md"
_BLOCK = re.compile(r"^```(\w+)(?: file=(\S+))?\n(.*?)^```$", re.M | re.S)
NAMESPACE = "shop"  # the doc's


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A django-celery-beat database holding the rows of tests/data/django_beat_rows.py."""
    server = PostgresServer(tmp_path_factory.mktemp("postgres-docs")).start()
    try:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"),
                                                            str(ROOT)])}
        subprocess.run([sys.executable, str(ROWS_SCRIPT), server.url, START.isoformat(), "1"],
                       env=env, check=True, capture_output=True, timeout=120)
        yield server.url
    finally:
        server.stop()


def _blocks() -> list[tuple[str, str | None, str]]:
    return [(m.group(1), m.group(2), m.group(3)) for m in _BLOCK.finditer(DOC.read_text())]


def test_migrating_md_walks_from_beat_and_django_celery_beat_to_applied_manifests(
    kube: KubeEnv, database: str, tmp_path: Path, start_operator: StartOperator
) -> None:
    blocks = _blocks()
    for _, name, text in (b for b in blocks if b[1]):
        path = tmp_path / str(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()  # the user's package
        path.write_text(text)
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                 str(kube.kubectl_path.parent), os.environ["PATH"]]),
        "KUBECONFIG": str(kube.kubeconfig),
        "PYTHONPATH": str(ROOT / "operator"),
        "DATABASE_URL": database,
    }
    reports: list[str] = []
    for kind, _, text in blocks:
        if kind != "shell":
            continue
        for line in text.splitlines():
            result = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env,
                                    capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, (line, result.stderr)
            if line.startswith("celery-operator import"):
                reports.append(result.stderr)

    # What the doc shows is what the importer printed.
    texts = [text for kind, _, text in blocks if kind == "text"]
    assert texts[0] == reports[0]
    shown = yaml.safe_load(next(text for kind, _, text in blocks if kind == "yaml"))
    printed = list(yaml.safe_load_all((tmp_path / "schedule.yaml").read_text()))
    assert shown == printed[0]
    assert "import: 6 converted, 2 skipped" in reports[1]

    start_operator("--namespace", NAMESPACE)
    expected = {
        # from the beat_schedule
        "send-weekly-report": "0 7 * * 1",
        "clean-sessions": "every 30m",
        # from django-celery-beat
        "weekday-report": "30 7 * * 1-5",
        "hourly-sync": "0 * * * *",
        "monthly-invoice": "0 9 1 * *",
        "poll": "every 10m",
        "poll-once": "every 10m",
    }

    def schedules() -> dict[str, str | None]:
        out = kube.kubectl("get", "periodictasks", "-n", NAMESPACE, "-o", "json").stdout
        return {item["metadata"]["name"]: item.get("status", {}).get("schedule")
                for item in json.loads(out)["items"]}

    wait_for(lambda: schedules() == expected, 60, "the operator to accept every schedule")
    clocked = json.loads(kube.kubectl("get", "scheduledtask", "new-year", "-n", NAMESPACE,
                                      "-o", "json").stdout)
    assert clocked["spec"]["eta"] == "2030-01-01T12:00:00Z"
    zones = json.loads(kube.kubectl("get", "periodictasks", "-n", NAMESPACE, "-o",
                                    "json").stdout)["items"]
    assert {i["metadata"]["name"]: i["spec"]["schedule"].get("timeZone") for i in zones} == {
        "send-weekly-report": "Europe/Berlin",
        "clean-sessions": "UTC",
        "weekday-report": "Europe/Berlin",
        "hourly-sync": "Europe/Berlin",
        "monthly-invoice": "America/New_York",
        "poll": "UTC",
        "poll-once": "UTC",
    }
