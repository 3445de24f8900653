"""Measuring: percentiles, process RSS/CPU from /proc, Prometheus text, operator logs."""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
QUANTILE_POINTS = 50  # a distribution is kept as this many quantiles (+ p99, max)


def json_loads(data: bytes | str) -> Any:
    return json.loads(data)


# ---- statistics ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not values:
        return math.nan
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def summary(values: Sequence[float]) -> dict[str, Any]:
    """n, p50/p95/p99/max/min/mean (seconds) and a compact quantile curve for plots."""
    if not values:
        return {"n": 0}
    data = sorted(values)
    curve = [percentile(data, 100.0 * i / QUANTILE_POINTS) for i in range(QUANTILE_POINTS + 1)]
    return {
        "n": len(data),
        "p50": percentile(data, 50),
        "p95": percentile(data, 95),
        "p99": percentile(data, 99),
        "max": data[-1],
        "min": data[0],
        "mean": statistics.fmean(data),
        "curve": [round(v, 5) for v in curve],
    }


STATS = ("p50", "p95", "p99", "max", "min", "mean")


def median_summary(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The median over repeats of each statistic (and of each curve point)."""
    runs = [r for r in runs if r.get("n")]
    if not runs:
        return {"n": 0}
    out: dict[str, Any] = {"n": int(statistics.median(r["n"] for r in runs)),
                           "repeats": len(runs)}
    for key in STATS:
        out[key] = statistics.median(r[key] for r in runs)
    curves = [r["curve"] for r in runs if r.get("curve")]
    if curves:
        out["curve"] = [statistics.median(points) for points in zip(*curves, strict=True)]
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not math.isfinite(a) or not math.isfinite(b) or b == 0:
        return None
    return a / b


# ---- processes ----------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (from /proc/stat)."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in parts]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    """CPU of this process and every child it has reaped (workers, operators, servers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Sampler:
    """Samples `fn()` every `interval` s in a thread: [(time, value), ...]."""

    def __init__(self, fn: Callable[[], Any], interval: float) -> None:
        self.fn = fn
        self.interval = interval
        self.samples: list[tuple[float, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="sampler")

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.time(), self.fn()))
            except Exception as exc:  # a sample that fails is just missing
                self.samples.append((time.time(), exc))
            self._stop.wait(self.interval)

    def values(self) -> list[tuple[float, Any]]:
        return [(t, v) for t, v in self.samples if not isinstance(v, Exception)]


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.25,
             what: str = "") -> bool:
    """Poll until true; False (not an exception) after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# ---- Prometheus text ------------------------------------------------------------------------


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called `name` (a counter's `_total` included) with its labels.

    Only that sample's lines are parsed: the API server's whole text (megabytes of
    histograms under load) took the parser seconds, longer than a sampler's interval."""
    lines = [line for line in text.splitlines()
             if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " ")]
    out = []
    for family in text_string_to_metric_families("\n".join(lines) + "\n"):
        for s in family.samples:
            if s.name == name:
                out.append((dict(s.labels), float(s.value)))
    return out


def metric_value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for got, value in samples(text, name):
        if all(got.get(k) == v for k, v in labels.items()):
            total += value
    return total


def apiserver_requests(text: str) -> Counter[tuple[str, str, str]]:
    """apiserver_request_total summed by (verb, resource, subresource)."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for labels, value in samples(text, "apiserver_request_total"):
        key = (labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))
        counts[key] += int(value)
    return counts


WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY", "CREATE", "UPDATE")


def request_delta(
    before: Counter[tuple[str, str, str]], after: Counter[tuple[str, str, str]]
) -> dict[str, float]:
    """Requests made between two snapshots, keyed "VERB resource[/subresource]"."""
    delta: dict[str, float] = {}
    for key in set(before) | set(after):
        diff = after.get(key, 0) - before.get(key, 0)
        if diff:
            verb, resource, sub = key
            delta[f"{verb} {resource}{'/' + sub if sub else ''}"] = diff
    return dict(sorted(delta.items()))


OUR_RESOURCES = ("scheduledtasks", "periodictasks", "events")


def writes_only(delta: Mapping[str, float], ours: bool = True) -> dict[str, float]:
    """Write requests; with `ours`, only to our kinds and Events (the API server renews
    its own identity Lease every 10 s: that is not the operator)."""
    out = {}
    for key, value in delta.items():
        verb, _, resource = key.partition(" ")
        if verb.upper() not in WRITE_VERBS:
            continue
        if ours != (resource.split("/", 1)[0] in OUR_RESOURCES):
            continue
        out[key] = value
    return out


def histogram_buckets(text: str, name: str) -> dict[str, float]:
    """Cumulative bucket counts of a histogram by `le`."""
    return {labels["le"]: value for labels, value in samples(text, name + "_bucket")}


def operator_writes(text: str) -> dict[str, float]:
    """celery_operator_api_writes_total by "verb resource"."""
    return {
        f"{labels['verb']} {labels['resource']}": value
        for labels, value in samples(text, "celery_operator_api_writes_total")
    }


# ---- operator log ---------------------------------------------------------------------------

_PUBLISHED = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO \S+: published (\S+?)/(\S+) attempt (\d+) "
    r"as (\S+) \(eta ([^,]+),"
)


def published_times(log_paths: Iterable[Path]) -> dict[str, float]:
    """Task id -> time of its first publish, from the operator's INFO lines
    ("published ns/name attempt N as <id> (eta ...)"; logged after send_task returned)."""
    first: dict[str, float] = {}
    for path in log_paths:
        if not path.exists():
            continue
        with path.open(errors="replace") as fh:
            for line in fh:
                if " published " not in line:
                    continue
                m = _PUBLISHED.match(line)
                if m is None:
                    continue
                # asctime is local time with milliseconds.
                at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                first.setdefault(m.group(5), at)
    return first


def publish_counts(log_paths: Iterable[Path]) -> Counter[str]:
    """How many times each task id was published (republishes after a crash included)."""
    counts: Counter[str] = Counter()
    for path in log_paths:
        if not path.exists():
            continue
        with path.open(errors="replace") as fh:
            for line in fh:
                m = _PUBLISHED.match(line) if " published " in line else None
                if m is not None:
                    counts[m.group(5)] += 1
    return counts


def started_times(redis_client: Any, task_ids: Sequence[str], prefix: str) -> dict[str, float]:
    """Task id -> worker start time recorded by the demo app (time.time() as text)."""
    out: dict[str, float] = {}
    for i in range(0, len(task_ids), 1000):
        chunk = task_ids[i : i + 1000]
        for task_id, raw in zip(chunk, redis_client.mget([prefix + t for t in chunk]),
                                strict=True):
            if raw is not None:
                out[task_id] = float(raw)
    return out


def run_counts(redis_client: Any, task_ids: Sequence[str], prefix: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in range(0, len(task_ids), 1000):
        chunk = task_ids[i : i + 1000]
        for task_id, raw in zip(chunk, redis_client.mget([prefix + t for t in chunk]),
                                strict=True):
            out[task_id] = int(raw) if raw is not None else 0
    return out


def count_present(redis_client: Any, task_ids: Sequence[str], prefix: str) -> int:
    return len(started_times(redis_client, task_ids, prefix))


# ---- CPU by component ---------------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def tree_cpu_seconds(pid: int, kids: Mapping[int, list[int]] | None = None) -> float:
    """CPU of a process and its live descendants (a prefork worker's pool included)."""
    kids = kids if kids is not None else _children_map()
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += cpu_seconds(current)
        except (OSError, IndexError, ValueError):
            continue
        todo.extend(kids.get(current, []))
    return total


class CpuWindow:
    """CPU seconds each named process tree used between `start()` and `stop()`."""

    def __init__(self, pids: Mapping[str, int | None]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid}
        self.pids["bench"] = os.getpid()  # this process alone, not its children
        self._t0 = 0.0
        self._before: dict[str, float] = {}
        self._busy0 = 0.0
        self.result: dict[str, Any] = {}

    def _read(self) -> dict[str, float]:
        kids = _children_map()
        return {
            name: cpu_seconds(pid) if name == "bench" else tree_cpu_seconds(pid, kids)
            for name, pid in self.pids.items()
        }

    def start(self) -> CpuWindow:
        self._t0 = time.time()
        self._busy0 = machine_busy_seconds()
        self._before = self._read()
        return self

    def stop(self) -> dict[str, Any]:
        after = self._read()
        wall = time.time() - self._t0
        used = {name: round(after[name] - self._before.get(name, 0.0), 2) for name in after}
        busy = machine_busy_seconds() - self._busy0
        self.result = {
            "wall_seconds": round(wall, 2),
            "cpu_seconds": used,
            "machine_busy_seconds": round(busy, 2),
            "other_processes_seconds": round(max(busy - sum(used.values()), 0.0), 2),
            "cores": os.cpu_count(),
        }
        return self.result
