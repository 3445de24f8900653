"""`python -m bench` (make bench): every scenario on the embedded stack, then the report.

    python -m bench                      # full run (< 30 min): bench/results/<date>.json,
                                         # docs/performance.md and docs/img/*.png
    BENCH_QUICK=1 python -m bench        # small N, one repeat, Redis only (< 5 min); writes
                                         # bench/results/local/ only (not committed)
    python -m bench --only burst,writes  # some scenarios (also to bench/results/local/)
    BENCH_PROFILE=1 python -m bench ...  # py-spy record of the operator in burst (N >= 1000)
                                         # and throughput (.venv/bin/pip install py-spy)

Budgets are read from the report, never enforced: the exit status is 0 unless a
scenario raised.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import time
import traceback
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from . import (
    burst,
    churn,
    failover,
    interval,
    measure,
    periodic,
    report,
    resultreads,
    retention,
    scale,
    settings,
    spread,
    throughput,
    writecost,
    writes,
)
from .settings import Sizes
from .stack import Stack, log


class Scenario(Protocol):
    def run(self, stack: Stack, sizes: Sizes) -> dict[str, Any]: ...


class Variants:
    """A scenario run with only some of its variants (`Sizes` field -> labels)."""

    def __init__(self, scenario: Scenario, **only: Any) -> None:
        self.scenario = scenario
        self.only = only

    def run(self, stack: Stack, sizes: Sizes) -> dict[str, Any]:
        return self.scenario.run(stack, replace(sizes, **self.only))


class OnBroker:
    """A scenario run with the stack's broker switched (e.g. to RabbitMQ); its native
    baseline sends to that broker too, in the same run."""

    def __init__(self, scenario: Scenario, broker: str, burst_size: int | None = None) -> None:
        self.scenario = scenario
        self.broker = broker
        self.burst_size = burst_size

    def run(self, stack: Stack, sizes: Sizes) -> dict[str, Any]:
        if self.burst_size is not None:
            sizes = replace(sizes, burst_sizes=tuple(
                n for n in sizes.burst_sizes if n == self.burst_size) or sizes.burst_sizes[:1])
        with stack.on_broker(self.broker):
            return {"broker": self.broker, **self.scenario.run(stack, sizes)}


# In the order: 1 burst ... 7 churn; then the broker dimension (burst, spread and
# throughput on RabbitMQ), 8 result reads per backend (issue 13), failover (issue 16) and
# 10 retention: finished objects under a steady rate (issue 17).
SCENARIOS: dict[str, Scenario] = {
    "burst": burst,
    "spread": spread,
    "throughput": throughput,
    "writes": writes,
    "scale": scale,
    "periodic": periodic,
    "churn": churn,
    # The broker's share is seen at 1,000, its budget's size (a quick run: its smallest).
    "burst-amqp": OnBroker(burst, "amqp", burst_size=1000),
    "spread-amqp": OnBroker(spread, "amqp"),
    "throughput-amqp": OnBroker(throughput, "amqp"),
    "resultreads": resultreads,
    "failover": failover,
    "retention": retention,
    "writecost": writecost,
    "scale-100k": scale.Large,
    "interval-10k": interval,
    "interval-10k-never": interval.RunsInStatus,
    "interval-10k-never-wait": interval.RunsInStatusOutcomesWait,
    "churn-separate-store": Variants(churn, churn_variants=("guard-separate-store",)),
}
# Too long for a smoke run: the RabbitMQ variants would double its time, and a SIGKILL
# failover waits out the 15 s lease. Full runs, or `--only`.
FULL_RUN_ONLY = frozenset({"burst-amqp", "failover"})
# Asked for by name only: issue 17's sizes (`--only scale-100k,interval-10k`, ~18 + ~17
# min), together longer than the whole full run may take (45 min); and what has no budget
# of its own or repeats one: spread and throughput on RabbitMQ (~5 min; the RabbitMQ burst
# stays), churn with the guard's claims in a store that survives (~2.6 min).
ON_REQUEST = frozenset({"scale-100k", "interval-10k", "interval-10k-never",
                        "interval-10k-never-wait", "spread-amqp",
                        "throughput-amqp", "churn-separate-store"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help=f"comma-separated subset of {list(SCENARIOS)}")
    parser.add_argument("--quick", action="store_true", help="same as BENCH_QUICK=1")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, data)")
    args = parser.parse_args(argv)
    sizes = settings.QUICK if args.quick else settings.current()
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or [
        s for s in SCENARIOS if s not in ON_REQUEST and not (sizes.quick and s in FULL_RUN_ONLY)]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")

    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": sizes.mode,
        "partial": chosen != [s for s in SCENARIOS if s not in ON_REQUEST],
        "sizes": asdict(sizes),
        "machine": report.machine_info(),
        "scenarios": {},
        "durations_seconds": {},
        "errors": {},
    }
    busy0, own0, began = measure.machine_busy_seconds(), measure.own_cpu_seconds(), time.time()
    log(f"{sizes.mode} run of {', '.join(chosen)}")
    stack = Stack()
    try:
        with stack:
            results["versions"] = report.versions()
            for name in chosen:
                started = time.time()
                log(f"--- scenario {name}")
                try:
                    results["scenarios"][name] = SCENARIOS[name].run(stack, sizes)
                except Exception as exc:
                    log(f"scenario {name} failed: {exc!r}")
                    results["errors"][name] = traceback.format_exc(limit=8)
                results["durations_seconds"][name] = round(time.time() - started, 1)
                log(f"--- scenario {name} took {results['durations_seconds'][name]:.0f} s")
    finally:
        wall = time.time() - began
        busy = measure.machine_busy_seconds() - busy0
        own = measure.own_cpu_seconds() - own0
        results["load"] = {
            "wall_seconds": round(wall, 1),
            "machine_busy_cpu_seconds": round(busy, 1),
            "bench_cpu_seconds": round(own, 1),
            "other_cpu_seconds": round(max(busy - own, 0.0), 1),
            "other_share_of_machine": round(max(busy - own, 0.0) / (wall * results["machine"][
                "nproc"]), 3) if wall else None,
        }
        if not args.keep:
            with contextlib.suppress(OSError):
                shutil.rmtree(stack.workdir)
        else:
            log(f"work dir kept: {stack.workdir}")
    paths = report.write(results)
    for path in paths:
        log(f"wrote {path}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
