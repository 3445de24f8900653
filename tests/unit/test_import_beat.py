"""`celery-operator import beat`: a user's Celery app in, manifests and a report out."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from celery_operator.api.periodic import parse_periodic_task_spec
from celery_operator.cli import main
from celery_operator.importer.naming import NAME_MAX_LENGTH, object_names

APP_SOURCE = """
from datetime import datetime, timedelta, timezone
from celery import Celery
from celery.schedules import crontab, schedule

class Every(schedule):
    pass

app = Celery("proj", set_as_current=False)
app.conf.timezone = "Europe/Berlin"
app.conf.beat_schedule = {
    "Send report": {
        "task": "reports.send",
        "schedule": crontab(minute=30, hour=7, day_of_week="mon-fri"),
        "args": (1, [2, 3]),
        "kwargs": {"to": "ops"},
        "options": {"queue": "reports", "routing_key": "r.send", "exchange": "ex",
                    "priority": 5, "headers": {"team": "ops"}, "expires": 3600,
                    "time_limit": 60, "soft_time_limit": 50},
    },
    "cleanup": {"task": "app.cleanup", "schedule": 300.0},
    "daily": {"task": "app.daily", "schedule": timedelta(days=1)},
    "until-new-year": {"task": "app.ny", "schedule": 90,
                       "options": {"expires": datetime(2030, 1, 1, tzinfo=timezone.utc)}},
    "custom": {"task": "app.custom", "schedule": Every(10)},
    "both-days": {"task": "app.b", "schedule": crontab(day_of_week=1, day_of_month=1)},
    "relative": {"task": "app.r", "schedule": 3600, "relative": True},
    "serializer": {"task": "app.s", "schedule": 60, "options": {"serializer": "json"}},
    "half-second-expiry": {"task": "app.h", "schedule": 60, "options": {"expires": 0.5}},
    "cleanup!": {"task": "app.other_cleanup", "schedule": 60},
}
"""


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A user's Celery app module, importable from the current directory as `celery -A`."""
    name = f"proj_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP_SOURCE)
    monkeypatch.chdir(tmp_path)
    yield name
    sys.modules.pop(name, None)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[Any], str]:
    code = main(["import", *argv])
    out, err = capsys.readouterr()
    return code, [doc for doc in yaml.safe_load_all(out) if doc], err


def _by_source(manifests: list[Any]) -> dict[str, Any]:
    return {
        m["metadata"]["annotations"]["celeryoperator.dev/imported-from"]: m for m in manifests
    }


def test_beat_entries_become_periodic_tasks_with_every_option(
    app_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, manifests, err = _run(
        capsys, "beat", "--app", f"{app_module}:app", "-n", "prod", "--spec-app", "billing"
    )
    assert code == 0
    found = _by_source(manifests)
    report = found["beat: Send report"]
    assert report["kind"] == "PeriodicTask"
    assert report["metadata"]["namespace"] == "prod"
    assert report["spec"] == {
        "schedule": {"cron": "30 7 * * 1-5", "timeZone": "Europe/Berlin"},
        "task": {
            "name": "reports.send",
            "args": [1, [2, 3]],
            "kwargs": {"to": "ops"},
            "queue": "reports",
            "exchange": "ex",
            "routingKey": "r.send",
            "priority": 5,
            "headers": {"team": "ops"},
            "timeLimit": 60,
            "softTimeLimit": 50,
        },
        "expires": 3600,
        "app": {"kind": "CeleryApp", "name": "billing"},
    }
    assert found["beat: cleanup"]["spec"]["schedule"] == {"interval": "5m"}
    assert found["beat: daily"]["spec"]["schedule"] == {"interval": "24h"}
    assert found["beat: until-new-year"]["spec"]["expires"] == "2030-01-01T00:00:00Z"
    for manifest in manifests:
        parse_periodic_task_spec(manifest["spec"])
    assert "import: 5 converted, 5 skipped" in err


def test_what_cannot_be_converted_is_skipped_with_its_reason(
    app_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, manifests, err = _run(capsys, "beat", "--app", f"{app_module}:app")
    assert {m["metadata"]["annotations"]["celeryoperator.dev/imported-from"] for m in manifests}
    assert f"skipped 'custom': custom schedule class {app_module}.Every has no " in err
    assert "skipped 'both-days': crontab: day_of_month and day_of_week are both restricted" in err
    assert "skipped 'relative': relative=True with an interval of 3600s" in err
    assert "skipped 'serializer': options serializer have no PeriodicTask field" in err
    assert "skipped 'half-second-expiry': options.expires 0.5: only whole seconds" in err


def test_names_are_valid_stable_and_renames_are_reported(
    app_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, first, err = _run(capsys, "beat", "--app", f"{app_module}:app")
    _, second, _ = _run(capsys, "beat", "--app", f"{app_module}:app")
    names = {m["metadata"]["annotations"]["celeryoperator.dev/imported-from"]:
             m["metadata"]["name"] for m in first}
    assert names == {m["metadata"]["annotations"]["celeryoperator.dev/imported-from"]:
                     m["metadata"]["name"] for m in second}
    # "cleanup" and "cleanup!" both want "cleanup": both get a hash suffix.
    assert names["beat: cleanup"].startswith("cleanup-")
    assert names["beat: cleanup!"].startswith("cleanup-")
    assert names["beat: cleanup"] != names["beat: cleanup!"]
    assert names["beat: Send report"] == "send-report"
    assert "changed 'Send report': renamed to send-report" in err
    assert f"changed 'cleanup': renamed to {names['beat: cleanup']}" in err


def test_object_names_do_not_depend_on_the_other_entries() -> None:
    alone = object_names(["Nightly Report"])
    together = object_names(["Nightly Report", "weekly", "nightly-report"])
    assert alone == {"Nightly Report": "nightly-report"}
    assert together["nightly-report"] != together["Nightly Report"]
    long = object_names(["x" * 80])["x" * 80]
    assert len(long) == NAME_MAX_LENGTH and long == object_names(["x" * 80])["x" * 80]
    assert object_names(["!!!"])["!!!"] == "entry"


def test_output_dir_gets_one_file_per_entry(
    app_module: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "manifests"
    code, printed, _ = _run(capsys, "beat", "--app", f"{app_module}:app", "-o", str(out))
    assert code == 0 and printed == []
    files = sorted(out.glob("*.yaml"))
    assert len(files) == 5
    for path in files:
        manifest = yaml.safe_load(path.read_text())
        assert path.name == f"{manifest['metadata']['name']}.yaml"


def test_an_app_that_fails_to_import_prints_the_exception_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"broken_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("import no_such_module_here\n")
    monkeypatch.chdir(tmp_path)
    code, manifests, err = _run(capsys, "beat", "--app", f"{name}:app")
    assert code == 1 and manifests == []
    assert "ModuleNotFoundError: No module named 'no_such_module_here'" in err
    assert f"celery-operator import: cannot load the Celery app '{name}:app'" in err


def test_django_settings_module_is_read_with_its_celery_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"settings_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent("""
        from celery.schedules import crontab
        TIME_ZONE = "Europe/Paris"
        CELERY_TIMEZONE = "America/New_York"
        CELERY_BEAT_SCHEDULE = {
            "digest": {"task": "mail.digest", "schedule": crontab(minute=0, hour=8)},
        }
    """))
    monkeypatch.chdir(tmp_path)
    try:
        code, manifests, _ = _run(capsys, "beat", "--settings", name)
    finally:
        sys.modules.pop(name, None)
    assert code == 0
    assert [m["spec"]["schedule"] for m in manifests] == [
        {"cron": "0 8 * * *", "timeZone": "America/New_York"}
    ]


def test_spec_app_kind_is_checked(app_module: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, manifests, err = _run(
        capsys, "beat", "--app", f"{app_module}:app", "--spec-app", "Cluster/x"
    )
    assert code == 1 and manifests == []
    assert "--spec-app 'Cluster/x': the kind must be one of CeleryApp, ClusterCeleryApp" in err
