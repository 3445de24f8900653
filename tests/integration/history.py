"""Every status a namespace's ScheduledTasks went through, from a watch.

The operator writes its decision to publish into status *before* publishing (claim →
publish → confirm), so the status history says how many publishes of a task id the
design allows:

- one for the first claim;
- one more per takeover: a later claim (new `status.claim.time`) of the same task id
  while nobody confirmed it (an operator died around its publish);
- one more per republish: `status.brokerRunId` changed from one run id to another (the
  broker restarted empty before a worker took the task).

A watch delivers every change, and resumes from the last resourceVersion when the
connection breaks. A restarted API server may no longer serve that resourceVersion (410
Gone: its watch cache starts afresh); the recorder then lists again and counts a gap.
What it missed in a gap can only make it allow fewer publishes, never more: a test
judged on an incomplete history fails, it never passes because of one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, watch
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from celery_operator.api import GROUP, SCHEDULED_PLURAL, VERSION


@dataclass
class Allowance:
    """What the status history of one task id permits the broker to have received."""

    claims: set[str] = field(default_factory=set)  # distinct claim times
    run_ids: list[str] = field(default_factory=list)  # brokerRunId values, in order

    @property
    def takeovers(self) -> int:
        return max(len(self.claims) - 1, 0)

    @property
    def republishes(self) -> int:
        return max(len(self.run_ids) - 1, 0)

    @property
    def publishes(self) -> int:
        """At most this many publishes: a claim or republish written just before the
        operator died may never have reached the broker."""
        return 1 + self.takeovers + self.republishes


class StatusHistory:
    """Watches ScheduledTasks of one namespace in a thread; per task id, the claims and
    broker run ids its statuses carried."""

    def __init__(self, api_client: ApiClient, namespace: str) -> None:
        self.api = client.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.gaps = 0  # watches that could not resume (410 Gone): history incomplete
        self._allowances: dict[str, Allowance] = {}
        self._versions: dict[str, str] = {}  # object name -> last resourceVersion seen
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-history", daemon=True)
        self._resource_version = ""
        self.error: BaseException | None = None

    def start(self) -> StatusHistory:
        self._list()
        self._thread.start()
        return self

    def _list(self) -> None:
        listing: dict[str, Any] = self.api.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, SCHEDULED_PLURAL
        )
        for obj in listing["items"]:
            self._record(obj)
        self._resource_version = str(listing["metadata"]["resourceVersion"])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def allowance(self, task_id: str) -> Allowance:
        with self._lock:
            found = self._allowances.get(task_id, Allowance())
            return Allowance(set(found.claims), list(found.run_ids))

    def allowances(self, task_ids: Iterable[str]) -> dict[str, Allowance]:
        return {i: self.allowance(i) for i in task_ids}

    def wait_caught_up(self, objects: Iterable[dict[str, Any]], timeout: float = 30.0) -> None:
        """Wait until the watch has seen each of these objects at its resourceVersion."""
        wanted = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in objects}
        deadline = time.monotonic() + timeout
        while True:
            if self.error is not None:
                raise RuntimeError("status history watch failed") from self.error
            with self._lock:
                behind = {n for n, rv in wanted.items() if self._versions.get(n) != rv}
            if not behind:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"watch did not catch up with {sorted(behind)[:5]}")
            time.sleep(0.1)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._watch_once()
                except ApiException as exc:
                    if exc.status == 410:
                        self._resync()
                    else:
                        time.sleep(0.2)
                except Exception:  # the API server restarting: resume from the last RV
                    time.sleep(0.2)
        except BaseException as exc:
            self.error = exc
            raise

    def _watch_once(self) -> None:
        stream = watch.Watch().stream(
            self.api.list_namespaced_custom_object, GROUP, VERSION, self.namespace,
            SCHEDULED_PLURAL, resource_version=self._resource_version, timeout_seconds=5,
            _request_timeout=15,
        )
        for event in stream:
            obj = event["object"]
            if event["type"] == "ERROR":
                if obj.get("code") == 410:
                    self._resync()
                return
            self._record(obj)
            self._resource_version = str(obj["metadata"]["resourceVersion"])
            if self._stop.is_set():
                return

    def _resync(self) -> None:
        with self._lock:
            self.gaps += 1
        try:
            self._list()
        except Exception:  # not served yet: the next watch attempt fails and resyncs again
            time.sleep(0.2)

    def _record(self, obj: dict[str, Any]) -> None:
        status = obj.get("status") or {}
        task_id = status.get("taskId")
        with self._lock:
            self._versions[obj["metadata"]["name"]] = str(obj["metadata"]["resourceVersion"])
            if not task_id:
                return
            allowance = self._allowances.setdefault(str(task_id), Allowance())
            claim = status.get("claim") or {}
            if status.get("phase") == "Dispatching" and claim.get("time"):
                allowance.claims.add(str(claim["time"]))
            run_id = status.get("brokerRunId")
            if run_id and (not allowance.run_ids or allowance.run_ids[-1] != run_id):
                allowance.run_ids.append(str(run_id))
