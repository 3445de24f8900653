"""The operator as a real process (`celery-operator run`), for tests, the demo and benchmarks."""

from __future__ import annotations

import itertools
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from celery_operator.devstack.processes import ManagedProcess, free_port, wait_until

_count = itertools.count(1)


class OperatorProcess:
    def __init__(
        self,
        kubeconfig: Path,
        broker_url: str,
        backend_url: str,
        *,
        workdir: Path,
        extra_args: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
        name: str | None = None,
        lease: str | None = None,
    ) -> None:
        """`lease`: campaign for this leader Lease (in namespace "default", or the
        POD_NAMESPACE of `extra_env`); None: no leader election, the process always acts
        (tests of two operators racing on conditional writes, single-process stacks)."""
        self.name = name or f"operator{next(_count)}"
        self.metrics_port = free_port()
        self.health_port = free_port()
        argv = [
            sys.executable, "-m", "celery_operator", "run",
            "--broker-url", broker_url,
            "--result-backend", backend_url,
            "--metrics-port", str(self.metrics_port),
            "--liveness", f"http://127.0.0.1:{self.health_port}/healthz",
            *(["--lease-name", lease] if lease else ["--no-leader-election"]),
            *extra_args,
        ]
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), **(extra_env or {})}
        self.process = ManagedProcess(
            self.name, argv, env=env, log_path=workdir / f"{self.name}.log"
        )

    def start(self, timeout: float = 60.0) -> OperatorProcess:
        self.process.start()
        wait_until(self.healthy, timeout, interval=0.2, what=f"{self.name} /healthz")
        return self

    def healthy(self) -> bool:
        if not self.process.running():
            raise RuntimeError(f"{self.name} exited:\n{self.process.log_tail(80)}")
        try:
            url = f"http://127.0.0.1:{self.health_port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())

    def stop(self) -> None:
        self.process.stop(grace=15.0)

    def signal(self, sig: int) -> None:
        """SIGSTOP / SIGCONT (a frozen process), SIGTERM (a graceful stop)."""
        self.process.signal(sig)

    def leader(self) -> bool:
        """Its `celery_operator_leader` gauge."""
        return "celery_operator_leader 1.0" in self.metrics()

    def kill(self) -> None:
        """SIGKILL: a crash, no cleanup handlers run."""
        self.process.kill()

    def log_tail(self, lines: int = 60) -> str:
        return self.process.log_tail(lines)
