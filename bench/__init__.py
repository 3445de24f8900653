"""Benchmarks of celery-operator on the embedded stack (`make bench`, `python -m bench`).

One module per scenario — burst, spread, throughput, writes, scale, periodic, churn —
each returning its figures next to a baseline measured in the same run; `report`
turns them into bench/results/<date>.json and docs/performance.md with plots.
"""
