"""A real PostgreSQL server in a temporary directory, on its own port (Debian's binaries).

Never the system service: `initdb` makes a fresh cluster in a directory of its own,
`postgres` listens on 127.0.0.1 and on a unix socket in that directory, and stop() ends it.
PostgreSQL refuses to run as root, so under root the binaries run as the `postgres` user
that Debian's package creates (via setpriv), in a directory of /tmp handed to that user
(a test's tmp_path sits below directories only root may enter); stop() removes it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from celery_operator.devstack.processes import ManagedProcess, free_port, wait_until

DEFAULT_BIN_DIR = Path("/usr/lib/postgresql/15/bin")
_SERVICE_USER = "postgres"


class PostgresServer:
    """`postgres` with one password-protected superuser and one database, `database`."""

    def __init__(
        self,
        workdir: Path | None = None,
        port: int | None = None,
        *,
        bin_dir: Path = DEFAULT_BIN_DIR,
        user: str = "celery",
        password: str = "celery-test-password",
        database: str = "celery",
    ) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="celery-operator-postgres-"))
        self.port = port or free_port()
        self.bin_dir = bin_dir
        self.user = user
        self.password = password
        self.database = database
        self.process: ManagedProcess | None = None
        self.cluster_dir = self.workdir
        self._own_cluster_dir = False

    @property
    def data_dir(self) -> Path:
        return self.cluster_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.cluster_dir

    @property
    def url(self) -> str:
        """SQLAlchemy/libpq URL of `database` over TCP."""
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def _binary(self, name: str) -> str:
        path = self.bin_dir / name
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: apt-get install postgresql (PostgreSQL 15 binaries)"
            )
        return str(path)

    def _as_service_user(self, argv: Sequence[str]) -> list[str]:
        if os.geteuid() != 0:
            return list(argv)
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise FileNotFoundError("setpriv not found (util-linux): needed to run as postgres")
        return [setpriv, f"--reuid={_SERVICE_USER}", f"--regid={_SERVICE_USER}",
                "--init-groups", "--", *argv]

    def _run(self, argv: Sequence[str], **env: str) -> None:
        result = subprocess.run(
            self._as_service_user(argv),
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            cwd=self.cluster_dir,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({result.returncode}): {result.stderr.strip()}")

    def start(self) -> PostgresServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0 and not self._own_cluster_dir:
            owner = pwd.getpwnam(_SERVICE_USER)
            self.cluster_dir = Path(tempfile.mkdtemp(prefix="celery-operator-postgres-"))
            self._own_cluster_dir = True
            os.chown(self.cluster_dir, owner.pw_uid, owner.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            password_file = self.cluster_dir / "password"
            password_file.write_text(self.password + "\n")
            if os.geteuid() == 0:
                os.chown(password_file, owner.pw_uid, owner.pw_gid)
            self._run([
                self._binary("initdb"), "-D", str(self.data_dir), "-U", self.user,
                f"--pwfile={password_file}", "--auth=scram-sha-256", "--encoding=UTF8",
                "--locale=C", "--no-sync",
            ])
            password_file.unlink()
        self.process = ManagedProcess(
            "postgres",
            self._as_service_user([
                self._binary("postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                "-k", str(self.socket_dir), "-c", "listen_addresses=127.0.0.1",
                "-c", "fsync=off", "-c", "full_page_writes=off",
            ]),
            log_path=self.workdir / "postgres.log",
        ).start()
        wait_until(self._ready, 60, interval=0.1, what="postgres accepting connections")
        self._create_database()
        return self

    def _ready(self) -> bool:
        if self.process is not None and not self.process.running():
            raise RuntimeError(f"postgres exited:\n{self.process.log_tail()}")
        result = subprocess.run(
            [self._binary("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            check=False,
        )
        return result.returncode == 0

    def _create_database(self) -> None:
        if self.database == "postgres":
            return
        result = subprocess.run(
            [self._binary("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
             "-d", "postgres", "-tAc",
             f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"],
            capture_output=True, text=True, env={**os.environ, "PGPASSWORD": self.password},
            check=True,
        )
        if result.stdout.strip() != "1":
            subprocess.run(
                [self._binary("createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                 "-U", self.user, self.database],
                env={**os.environ, "PGPASSWORD": self.password}, check=True,
                capture_output=True,
            )

    def restart(self) -> None:
        """Stop and start on the same port and data (unlike Redis here, it persists)."""
        self.stop(remove=False)
        self.start()

    def stop(self, *, remove: bool = True) -> None:
        """Stop the server; `remove` also deletes the cluster directory made under root."""
        if self.process is not None:
            self.process.stop()
        if remove and self._own_cluster_dir:
            shutil.rmtree(self.cluster_dir, ignore_errors=True)
            self._own_cluster_dir = False
