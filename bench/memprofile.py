"""Where the operator's memory goes: the operator under tracemalloc, holding many objects.

    python -m bench.memprofile [--future 5000] [--finished 5000] [--periodic 1000]

Starts the stack, creates the objects (future ScheduledTasks, finished ones with a copied
Succeeded status, hourly PeriodicTasks), runs `celery-operator run` under tracemalloc
(`python -m bench.memprofile serve ...`), waits until it is idle, and asks it (SIGUSR1)
to write its largest allocation sites. tracemalloc itself costs memory and time, so
RSS here is not the benchmark's RSS; the split by allocation site is what counts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

OUT_ENV = "BENCH_MEMPROFILE_OUT"


def _dump(*_: Any) -> None:
    out = Path(os.environ.get(OUT_ENV, "memprofile.txt"))
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    lines = []
    total = sum(s.size for s in snapshot.statistics("filename"))
    lines.append(f"traced total {total / 1024 / 1024:.1f} MiB")
    lines.append("\n-- by file")
    for stat in snapshot.statistics("filename")[:25]:
        lines.append(f"{stat.size / 1024 / 1024:8.1f} MiB {stat.count:9d}  {stat.traceback[0]}")
    lines.append("\n-- by line")
    for stat in snapshot.statistics("lineno")[:30]:
        lines.append(f"{stat.size / 1024 / 1024:8.1f} MiB {stat.count:9d}  {stat.traceback[0]}")
    lines.append("\n-- by traceback (largest 12)")
    for stat in snapshot.statistics("traceback")[:12]:
        lines.append(f"{stat.size / 1024 / 1024:8.1f} MiB {stat.count:9d}")
        lines.extend(f"      {frame}" for frame in stat.traceback.format()[-14:])
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out)


def serve(argv: list[str]) -> int:
    """The operator itself, traced: `python -m bench.memprofile serve run --broker-url ...`."""
    tracemalloc.start(16)
    signal.signal(signal.SIGUSR1, _dump)
    from celery_operator.cli import main as operator_main

    return operator_main(argv)


def profile(future: int, finished: int, periodic: int, keep: bool = False) -> int:
    from .stack import Stack, log

    stack = Stack()
    try:
        _traced_run(stack, future, finished, periodic)
    finally:
        if keep:
            log(f"work dir kept: {stack.workdir}")
        else:
            shutil.rmtree(stack.workdir, ignore_errors=True)
    return 0


def _traced_run(stack: Any, future: int, finished: int, periodic: int) -> None:
    from . import measure, scale, workload
    from .stack import log, scope

    with stack, scope(stack, "memprofile") as sc:
        sc.worker(scale.QUEUE, concurrency=2)
        ns = stack.namespace("mem")
        _, template = scale._empty_and_template(stack, sc, ns)
        scale._finished(stack, ns, template, finished)
        minute = (time.gmtime().tm_min + 30) % 60
        stack.create_many(ns, "periodictasks", [scale._periodic(ns, i, minute)
                                                for i in range(periodic)])
        due = time.time() + 7200
        stack.create_many(ns, "scheduledtasks", [
            workload.scheduled_task(ns, f"later{i:05d}", scale.QUEUE, due + i)
            for i in range(future)])
        out = sc.dir / "memprofile.txt"
        st0 = workload.status_patches(stack)
        proc = sc.process(
            "operator-traced",
            [sys.executable, "-m", "bench.memprofile", "serve", "run",
             "--broker-url", stack.broker_url, "--result-backend", stack.backend_url,
             "--namespace", ns, "--metrics-port", "0", "--liveness", ""],
            env={"KUBECONFIG": str(stack.kube.kubeconfig), OUT_ENV: str(out)},
        )
        log("operator under tracemalloc started; waiting until it has written every status")
        measure.wait_for(lambda: workload.status_patches(stack) - st0 >= future, 900, 2.0)
        cpu = measure.cpu_seconds(proc.pid or 0)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:  # until idle: under 0.3 CPU-s in 5 s
            time.sleep(5)
            now = measure.cpu_seconds(proc.pid or 0)
            if now - cpu < 0.3:
                break
            cpu = now
        rss = measure.rss_bytes(proc.pid or 0) / 1024 / 1024
        proc.signal(signal.SIGUSR1)
        measure.wait_for(out.exists, 300, 1.0)
        text = out.read_text() if out.exists() else "(no dump written)"
        print(f"RSS under tracemalloc: {rss:.0f} MB (objects: {future} future, {finished} "
              f"finished ScheduledTasks, {periodic} PeriodicTasks)\n{text}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["serve"]:
        return serve(args[1:])
    parser = argparse.ArgumentParser(prog="python -m bench.memprofile",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--future", type=int, default=5000)
    parser.add_argument("--finished", type=int, default=5000)
    parser.add_argument("--periodic", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    ns = parser.parse_args(args)
    return profile(ns.future, ns.finished, ns.periodic, ns.keep)


if __name__ == "__main__":
    raise SystemExit(main())
