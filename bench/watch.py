"""A light watch of one namespace's ScheduledTasks (or another kind of ours): when each
was first seen, locally.

`metadata.creationTimestamp` has a resolution of one second; the local time an ADDED
event arrives is a better clock for "when was the child created". Only ADDED lines are
parsed (MODIFIED ones are skipped on a string test), so the watch costs little CPU.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, cast

import urllib3
from kubernetes import client

from celery_operator.api import GROUP, SCHEDULED_PLURAL, VERSION


@dataclass(frozen=True)
class Seen:
    name: str
    uid: str
    at: float  # local time.time() the ADDED event arrived
    annotations: dict[str, str]
    labels: dict[str, str]


class AddedWatch:
    def __init__(self, api: client.ApiClient, namespace: str,
                 plural: str = SCHEDULED_PLURAL) -> None:
        self.api = client.ApiClient(api.configuration)  # its own connection pool
        self.namespace = namespace
        self.plural = plural
        self.seen: dict[str, Seen] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="added-watch")
        self._response: Any = None
        self.errors = 0

    def __enter__(self) -> AddedWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._response is not None:
            with contextlib.suppress(Exception):
                self._response.shutdown()
        self._thread.join(timeout=10)

    def _list_version(self) -> str:
        resp = client.CustomObjectsApi(self.api).list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, self.plural, limit=1, _preload_content=False
        )
        return str(json.loads(cast(Any, resp).data)["metadata"]["resourceVersion"])

    def _run(self) -> None:
        version = self._list_version()
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/{self.plural}"
        while not self._stop.is_set():
            params = self.api.param_serialize(
                "GET", path, auth_settings=["BearerToken"],
                query_params=[("watch", "true"), ("resourceVersion", version),
                              ("timeoutSeconds", "300"), ("allowWatchBookmarks", "true")],
            )
            try:
                self._response = self.api.call_api(*params, _request_timeout=(10, 30)).response
                version = self._consume(self._response, version)
            except urllib3.exceptions.ReadTimeoutError:
                continue  # quiet for 30 s: watch again from where we were
            except Exception:
                if self._stop.is_set():
                    return
                self.errors += 1
                time.sleep(0.5)
                with contextlib.suppress(Exception):
                    version = self._list_version()  # lost our place: start from now

    def _consume(self, resp: Any, version: str) -> str:
        buffer = b""
        for chunk in resp.stream(65536):
            now = time.time()
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.startswith(b'{"type":"ADDED"'):
                    obj = json.loads(line)["object"]
                    meta = obj["metadata"]
                    version = meta.get("resourceVersion", version)
                    self.seen.setdefault(meta["name"], Seen(
                        meta["name"], meta["uid"], now, meta.get("annotations") or {},
                        meta.get("labels") or {},
                    ))
                elif line.startswith(b'{"type":"BOOKMARK"'):
                    version = json.loads(line)["object"]["metadata"]["resourceVersion"]
                elif line.startswith(b'{"type":"ERROR"'):
                    raise RuntimeError(line[:200].decode(errors="replace"))
            if self._stop.is_set():
                break
        return version
