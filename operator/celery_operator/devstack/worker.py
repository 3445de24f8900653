"""Real `celery worker` processes for the demo app."""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from celery_operator.devstack.processes import ManagedProcess, wait_until

_names = itertools.count(1)


class CeleryWorker:
    """`celery -A celery_operator.devstack.demo_app worker`, started and stopped by pid."""

    def __init__(
        self,
        broker_url: str,
        backend_url: str,
        *,
        queues: Sequence[str] = ("celery",),
        concurrency: int = 2,
        events: bool = True,
        extra_env: Mapping[str, str] | None = None,
        workdir: Path | None = None,
        app: str = "celery_operator.devstack.demo_app",
        pool: str = "prefork",
        execution_log: Path | None = None,
    ) -> None:
        """`execution_log`: a file every task start (or guard drop) is appended to; it
        survives Redis restarts (see demo_app.read_executions)."""
        self.name = f"demo{next(_names)}-{os.getpid()}@localhost"
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="celery-operator-worker-"))
        argv = [
            sys.executable, "-m", "celery", "-A", app, "worker",
            "--loglevel=INFO",
            f"--hostname={self.name}",
            f"--queues={','.join(queues)}",
            f"--concurrency={concurrency}",
            f"--pool={pool}",
            "--without-mingle",
            "--without-gossip",
        ]
        if events:
            argv.append("--task-events")
        env = {
            **os.environ,
            "CELERY_BROKER_URL": broker_url,
            "CELERY_RESULT_BACKEND": backend_url,
            **(extra_env or {}),
        }
        if execution_log is not None:
            env["DEMO_EXECUTION_LOG"] = str(execution_log)
        self.process = ManagedProcess(
            "celery-worker", argv, env=env, log_path=self.workdir / f"{self.name}.log"
        )

    def start(self, timeout: float = 60.0) -> CeleryWorker:
        self.process.start()
        wait_until(self._ready, timeout, interval=0.2, what=f"worker {self.name} ready")
        return self

    def _ready(self) -> bool:
        if not self.process.running():
            raise RuntimeError(f"celery worker exited:\n{self.process.log_tail()}")
        return " ready." in self.process.log_tail(200)

    def stop(self) -> None:
        self.process.stop(grace=15.0)

    def kill(self) -> None:
        self.process.kill()
