"""How big the scenarios are: the full run (`make bench`) and BENCH_QUICK=1."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    quick: bool
    burst_sizes: tuple[int, ...]
    burst_repeats_small: int  # repeats for 100 < N <= 1000 (the budgets' size)
    burst_repeats_large: int  # repeats for other N: 10,000 (2.5 min), 100 (no budget)
    spread_tasks: int
    spread_window: float  # seconds over which the spread tasks are due
    throughput_tasks: int
    writes_tasks: int
    scale_future: int
    scale_finished: int
    scale_periodic: int
    scale_steady_seconds: float
    periodic_count: int
    periodic_minutes: int  # runs in status (runObjects: Never), the budget's side
    periodic_always_minutes: int  # run objects (runObjects: Always), shown beside it
    churn_tasks: int
    churn_window: float
    churn_variants: tuple[str, ...]  # labels of churn.VARIANTS to run
    writes_countdown: float  # seconds, the delayed variant of the write-cost scenario
    beat_minutes: int
    result_reads: int  # tracked tasks per poll in the result-read cost scenario
    retention_rate: float  # ScheduledTasks created per second in the retention scenario
    retention_seconds: float  # for this long
    retention_ttl: int  # their ttlSecondsAfterFinished
    interval_entries: int  # PeriodicTasks (and beat entries) in the interval scenario
    interval_seconds: float  # their interval
    writecost_writes: int  # writes of each kind in the write-cost-by-kind scenario
    worker_concurrency: int = 4
    worker_pool: str = "prefork"

    def burst_repeats(self, n: int) -> int:
        return self.burst_repeats_small if 100 < n <= 1000 else self.burst_repeats_large

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"

    @property
    def worker_desc(self) -> str:
        return f"celery worker --pool={self.worker_pool} --concurrency={self.worker_concurrency} -E"


FULL = Sizes(
    quick=False,
    burst_sizes=(100, 1000, 10000),  # issue 17: a burst of 10,000 vs native send_task(eta)
    burst_repeats_small=3,
    burst_repeats_large=1,
    spread_tasks=2000,
    spread_window=60.0,
    throughput_tasks=5000,
    writes_tasks=300,
    scale_future=5000,
    scale_finished=5000,
    scale_periodic=1000,
    scale_steady_seconds=30.0,
    periodic_count=1000,
    periodic_minutes=2,  # 2,000 runs for Never and beat: the run's 45 minutes have room
    periodic_always_minutes=1,  # for no more, and Always (~12x beat) needs no second minute
    churn_tasks=2000,
    churn_window=60.0,
    churn_variants=("guard", "no-guard"),  # guard-separate-store: on request
    writes_countdown=10.0,
    beat_minutes=2,
    result_reads=10_000,
    retention_rate=50.0,
    retention_seconds=600.0,
    retention_ttl=60,
    interval_entries=10_000,  # issue 17: a schedule set of 10,000 on a 5-minute interval
    interval_seconds=300.0,
    writecost_writes=1000,
)

# A smoke run for CI: every code path, small N, one repeat; beat and the operator share
# the same minute in the periodic scenario (their figures are not comparable there).
QUICK = Sizes(
    quick=True,
    burst_sizes=(100, 300),
    burst_repeats_small=1,
    burst_repeats_large=1,
    spread_tasks=200,
    spread_window=10.0,
    throughput_tasks=300,
    writes_tasks=40,
    scale_future=500,
    scale_finished=500,
    scale_periodic=50,
    scale_steady_seconds=5.0,
    periodic_count=50,
    periodic_minutes=1,
    periodic_always_minutes=1,
    churn_tasks=200,
    churn_window=12.0,
    churn_variants=("guard",),
    writes_countdown=5.0,
    beat_minutes=1,
    result_reads=1_000,
    retention_rate=20.0,
    retention_seconds=20.0,
    retention_ttl=5,
    interval_entries=200,
    interval_seconds=30.0,
    writecost_writes=200,
)


def current() -> Sizes:
    return QUICK if os.environ.get("BENCH_QUICK", "") not in ("", "0") else FULL
