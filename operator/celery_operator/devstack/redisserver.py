"""A real redis-server on a free loopback port, without persistence."""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

from celery_operator.devstack.processes import ManagedProcess, free_port, wait_until


class RedisServer:
    """`redis-server` with no RDB/AOF: a restart comes back empty, like a lost cache node."""

    def __init__(self, workdir: Path | None = None, port: int | None = None) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="celery-operator-redis-"))
        self.port = port or free_port()
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def db_url(self, db: int) -> str:
        return f"{self.url}/{db}"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if not binary:
            raise FileNotFoundError("redis-server not found: apt-get install redis-server")
        self.process = ManagedProcess(
            "redis-server",
            [
                binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
                "--protected-mode", "yes",
            ],
            log_path=self.workdir / "redis.log",
        ).start()
        wait_until(self._ping, 20, interval=0.05, what="redis PING")
        return self

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def restart_empty(self) -> None:
        """Stop and start on the same port: all keys (queues, results) are gone."""
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
