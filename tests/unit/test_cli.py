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
