"""A real RabbitMQ node (Debian's rabbitmq-server) on free loopback ports, all its own.

Never the system service: the node has its own name, Erlang cookie (HOME), epmd port,
distribution port, AMQP port and data/log/config files in a temp dir, so it neither
touches nor is touched by any other node on the machine (another test's, the package's).
"""

from __future__ import annotations

import re
import shutil
import socket
import tempfile
from pathlib import Path

from celery_operator.devstack.processes import ManagedProcess, free_port, wait_until

SERVER_SCRIPT = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
# The Erlang applications of the server and its plugins, one folder each (name-version).
PLUGINS_DIR = SERVER_SCRIPT.resolve().parent.parent / "plugins"
BOOT_APPS = ("rabbit", "rabbitmq_prelaunch")
# The AMQP 0-9-1 protocol header; a node that is up answers with Connection.Start.
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD = 1
# Erlang defaults tuned for a short-lived test node on a small shared machine: one
# scheduler per core is plenty, and no busy-waiting schedulers stealing CPU from others.
ERL_ARGS = "+sbwt none +sbwtdcpu none +sbwtdio none"
# How often a channel checks its consumers' timeouts (and emits stats), in ms.
CHANNEL_TICK_MS = 1000


class RabbitMQServer:
    """`rabbitmq-server` with durable data under `workdir`: `restart` keeps it (like a
    pod restart on its volume), `restart_empty` wipes it (like a lost volume)."""

    def __init__(
        self,
        workdir: Path | None = None,
        port: int | None = None,
        consumer_timeout: float | None = None,
    ) -> None:
        """`consumer_timeout`: seconds a consumer may hold an unacknowledged message
        before the node closes its channel (None: RabbitMQ's default, 30 min). The node
        checks it every second (RabbitMQ's default: once a minute), so the channel is
        closed right when the timeout passes, not up to a minute later."""
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="celery-operator-rabbitmq-"))
        self.port = port or free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.consumer_timeout = consumer_timeout
        self.nodename = f"celop-{self.port}@localhost"
        self.process: ManagedProcess | None = None
        self.epmd: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "mnesia"

    def start(self, timeout: float = 60.0) -> RabbitMQServer:
        if not SERVER_SCRIPT.exists():
            raise FileNotFoundError(
                f"{SERVER_SCRIPT} not found: apt-get install rabbitmq-server"
            )
        self._write_config()
        self._start_epmd()
        self.process = ManagedProcess(
            "rabbitmq-server", [str(SERVER_SCRIPT)], env=self._env(),
            log_path=self.workdir / "rabbitmq.log", cwd=self.workdir,
        ).start()
        wait_until(self._ready, timeout, interval=0.1, what=f"rabbitmq {self.nodename}")
        return self

    def _start_epmd(self) -> None:
        """Our own epmd in the foreground, so it is stopped with the node: the one Erlang
        would start itself daemonizes and outlives every test."""
        if self.epmd is not None and self.epmd.running():
            return
        self.epmd = ManagedProcess(
            "epmd", ["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            env={"PATH": "/usr/bin:/bin"}, log_path=self.workdir / "epmd.log",
        ).start()
        wait_until(lambda: _listening(self.epmd_port), 10, interval=0.05, what="epmd")

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            "listeners.ssl = none",
            "loopback_users = none",
            # Memory and disk alarms would block publishers on a busy shared machine.
            "vm_memory_high_watermark.relative = 0.9",
            "disk_free_limit.absolute = 1MB",
            "log.console = true",
            "log.file = false",
        ]
        if self.consumer_timeout is not None:
            lines.append(f"consumer_timeout = {int(self.consumer_timeout * 1000)}")
        (self.workdir / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        (self.workdir / "enabled_plugins").write_text("[].\n")
        (self.workdir / "advanced.config").write_text(
            f"[{{rabbit, [{{channel_tick_interval, {CHANNEL_TICK_MS}}}]}}].\n"
        )
        (self.workdir / "rabbitmq-env.conf").write_text("")
        self._link_boot_apps()

    def _link_boot_apps(self) -> None:
        """A plugins folder with only the applications the broker boots: the node scans
        every application in it at start, and the package ships ~60 (a second or two)."""
        folder = self.workdir / "plugins"
        if folder.exists():
            return
        folder.mkdir()
        for app in boot_apps(PLUGINS_DIR):
            (folder / app.name).symlink_to(app)

    def _env(self) -> dict[str, str]:
        w = self.workdir
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(w),  # Erlang keeps the node's cookie in $HOME/.erlang.cookie
            "LANG": "C.UTF-8",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(w / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(w / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(w / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(w / "enabled_plugins"),
            "RABBITMQ_PLUGINS_DIR": str(w / "plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.data_dir),
            "RABBITMQ_LOG_BASE": str(w / "log"),
            "RABBITMQ_PID_FILE": str(w / "rabbitmq.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": ERL_ARGS,
        }

    def _ready(self) -> bool:
        assert self.process is not None
        if not self.process.running():
            raise RuntimeError(f"rabbitmq-server exited:\n{self.process.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(AMQP_HEADER)
                return s.recv(1)[:1] == bytes([FRAME_METHOD])
        except OSError:
            return False

    def restart(self) -> None:
        """Stop and start on the same ports with the same data: durable queues and their
        persistent messages come back."""
        self._stop_node()
        self.start()

    def restart_empty(self) -> None:
        """Stop, wipe the node's data (queues, messages, users), start empty."""
        self._stop_node()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.start()

    def _stop_node(self) -> None:
        if self.process is not None:
            self.process.stop(grace=30.0)

    def stop(self) -> None:
        self._stop_node()
        if self.epmd is not None:
            self.epmd.stop()


def boot_apps(plugins: Path) -> list[Path]:
    """The folders of BOOT_APPS and every application they depend on (their .app files'
    `applications` and `included_applications`), found in `plugins`."""
    folders = {p.name.rsplit("-", 1)[0]: p for p in plugins.iterdir() if p.is_dir()}
    needed: dict[str, Path] = {}
    todo = list(BOOT_APPS)
    while todo:
        name = todo.pop()
        if name in needed or name not in folders:
            continue  # OTP's own applications (kernel, ssl, ...) are not plugins
        needed[name] = folders[name]
        for app_file in (folders[name] / "ebin").glob("*.app"):
            text = app_file.read_text(errors="replace")
            for key in ("applications", "included_applications"):
                if match := re.search(r"\{" + key + r",\s*\[([^\]]*)\]", text):
                    todo += [a.strip() for a in match.group(1).split(",") if a.strip()]
    return sorted(needed.values())


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
