"""Count what the Redis broker itself received, per Celery task id.

`BrokerTap` holds a `MONITOR` connection to the test redis-server in a thread and decodes
every LPUSH/RPUSH into the broker's database: kombu's Redis transport delivers a message
to a queue with LPUSH of a JSON envelope whose `headers.id` is the Celery task id
(protocol 2). A push whose headers say `redelivered` is kombu putting back an unacked
message (visibility timeout, warm shutdown), not a new publish: counted apart.

What the tap sees does not depend on the operator's or the worker's own account, so a
duplicate the worker guard dropped still shows up here. The tap reconnects within a few
milliseconds when the server goes away (a restart), and its counts span restarts.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from typing import Any

_PUSH_COMMANDS = (b'"lpush"', b'"rpush"')
_ESCAPES = {
    ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("a"): b"\a", ord("b"): b"\b",
    ord("\\"): b"\\", ord('"'): b'"',
}


def parse_monitor_line(line: bytes) -> tuple[int | None, list[bytes]]:
    """`1733.1 [0 127.0.0.1:5000] "LPUSH" "q" "{...}"` → (0, [b"LPUSH", b"q", b"{...}"]).

    Redis quotes every argument with sdscatrepr: \\", \\\\, \\n, \\r, \\t, \\a, \\b and
    \\xHH for other unprintable bytes. The database is None for lines without one."""
    start = line.find(b"[")
    end = line.find(b"] ", start)
    if start < 0 or end < 0:
        return None, []
    source = line[start + 1:end].split(b" ", 1)[0]
    db = int(source) if source.isdigit() else None
    return db, _split_args(line[end + 2:])


def _split_args(text: bytes) -> list[bytes]:
    args: list[bytes] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] != ord('"'):
            i += 1
            continue
        i += 1
        arg = bytearray()
        while i < n and text[i] != ord('"'):
            if text[i] == ord("\\") and i + 1 < n:
                code = text[i + 1]
                if code == ord("x") and i + 3 < n:
                    arg.append(int(text[i + 2:i + 4], 16))
                    i += 4
                    continue
                arg += _ESCAPES.get(code, bytes([code]))
                i += 2
                continue
            arg.append(text[i])
            i += 1
        args.append(bytes(arg))
        i += 1
    return args


def task_id_of(payload: bytes) -> tuple[str | None, bool]:
    """(task id, redelivered) of one kombu Redis message; (None, False) if it is not one."""
    try:
        message: Any = json.loads(payload)
    except ValueError:
        return None, False
    if not isinstance(message, dict):
        return None, False
    headers = message.get("headers") or {}
    properties = message.get("properties") or {}
    task_id = headers.get("id") or properties.get("correlation_id")
    redelivered = bool(headers.get("redelivered"))
    return (str(task_id) if task_id else None), redelivered


class BrokerTap:
    """Per task id: messages pushed onto broker queues (`published`), and unacked ones
    kombu put back (`restored`). Start it before anything publishes; `sync()` before
    reading counts, so every command the server executed so far has been decoded."""

    def __init__(self, host: str, port: int, db: int = 0) -> None:
        self.host = host
        self.port = port
        self.db = db
        self._published: Counter[str] = Counter()
        self._restored: Counter[str] = Counter()
        self._queues: dict[str, set[bytes]] = {}
        self._sessions: dict[str, list[int]] = {}
        self._markers: set[bytes] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._attached = threading.Event()
        self._connections = 0
        self._thread = threading.Thread(target=self._run, name="broker-tap", daemon=True)
        self.error: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> BrokerTap:
        self._thread.start()
        self.wait_attached(timeout)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> BrokerTap:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def connections(self) -> int:
        """How many MONITOR sessions were opened (1 + reconnects after restarts)."""
        return self._connections

    def wait_attached(self, timeout: float = 10.0, after: int = 0) -> None:
        """Wait until a MONITOR session numbered above `after` is open."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._attached.is_set() and self._connections > after:
                return
            self._raise_if_failed()
            time.sleep(0.005)
        raise TimeoutError(f"broker tap not attached to {self.host}:{self.port} in {timeout} s")

    def sync(self, timeout: float = 10.0) -> None:
        """Send a marker through the server and wait until the tap has decoded it: every
        command executed before this call is then counted."""
        marker = f"broker-tap-sync-{uuid.uuid4().hex}".encode()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=2) as sock:
                    sock.sendall(b"ECHO " + marker + b"\r\n")
                    sock.recv(128)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        while time.monotonic() < deadline:
            with self._lock:
                if marker in self._markers:
                    self._markers.discard(marker)
                    return
            self._raise_if_failed()
            time.sleep(0.01)
        raise TimeoutError(f"broker tap did not see its sync marker in {timeout} s")

    # -- counts ----------------------------------------------------------------------

    def published(self, task_id: str) -> int:
        with self._lock:
            return self._published[task_id]

    def published_of(self, task_ids: Iterable[str]) -> dict[str, int]:
        with self._lock:
            return {i: self._published[i] for i in task_ids}

    def restored(self, task_id: str) -> int:
        with self._lock:
            return self._restored[task_id]

    def all_published(self) -> Counter[str]:
        with self._lock:
            return Counter(self._published)

    def sessions_of(self, task_id: str) -> list[int]:
        """For each publish of the task id, in order, the MONITOR session that saw it
        (1 before the first server restart, 2 after it, ...): which server got it."""
        with self._lock:
            return list(self._sessions.get(task_id, []))

    def queues_of(self, task_id: str) -> set[str]:
        """The Redis list keys the task id was pushed onto (queue name, maybe + priority)."""
        with self._lock:
            return {q.decode(errors="replace") for q in self._queues.get(task_id, set())}

    # -- the thread ------------------------------------------------------------------

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise RuntimeError("broker tap failed") from self.error

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                # The server went away (a restart): reconnect at once.
                with contextlib.suppress(OSError):
                    self._monitor_once()
                self._attached.clear()
                if not self._stop.is_set():
                    time.sleep(0.005)
        except BaseException as exc:  # surfaced to the test by _raise_if_failed
            self.error = exc
            raise

    def _monitor_once(self) -> None:
        with socket.create_connection((self.host, self.port), timeout=1) as sock:
            sock.settimeout(0.2)
            sock.sendall(b"MONITOR\r\n")
            buffer = b""
            while not self._stop.is_set():
                try:
                    chunk = sock.recv(1 << 20)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                buffer += chunk
                *lines, buffer = buffer.split(b"\r\n")
                for line in lines:
                    self._handle(line)

    def _handle(self, line: bytes) -> None:
        if line == b"+OK" and not self._attached.is_set():
            self._connections += 1
            self._attached.set()
            return
        if line.startswith(b"-"):
            raise RuntimeError(f"MONITOR refused: {line.decode(errors='replace')}")
        if b"broker-tap-sync-" in line:
            marker = line[line.find(b"broker-tap-sync-"):].split(b'"', 1)[0]
            with self._lock:
                self._markers.add(marker)
            return
        head = line.find(b"] ")
        if head < 0 or not line[head + 2:head + 9].lower().startswith(_PUSH_COMMANDS):
            return
        db, args = parse_monitor_line(line)
        if db != self.db or len(args) < 3:
            return
        key = args[1]
        for payload in args[2:]:
            task_id, redelivered = task_id_of(payload)
            if task_id is None:
                continue
            with self._lock:
                if redelivered:
                    self._restored[task_id] += 1
                    continue
                self._published[task_id] += 1
                self._sessions.setdefault(task_id, []).append(self._connections)
                self._queues.setdefault(task_id, set()).add(key)
