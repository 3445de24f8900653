from __future__ import annotations

import subprocess
import sys

import pytest

from celery_operator.cli import main


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "run" in out and "demo" in out


def test_python_dash_m_works() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "celery_operator", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    assert "celery-operator" in proc.stdout


@pytest.mark.parametrize("value", ["-1", "3601"])
def test_a_run_outcome_wait_out_of_range_is_refused_naming_the_flag(
    value: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.delenv("CELERY_RESULT_BACKEND", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--run-outcome-wait", value])
    assert exit_info.value.code == 2
    assert f"--run-outcome-wait (or RUN_OUTCOME_WAIT_SECONDS) must be 0 to 3600 seconds, " \
        f"not {float(value):g}" in capsys.readouterr().err
