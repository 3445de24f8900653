"""Upper bounds of every spec duration, count and date, shared with the CRD schemas.

Chosen so that no combination the API server accepts can overflow Python's datetime
(years 1-9999): dates lie in years 1970-8999, and every duration is at most a century,
so a due time plus expiry, retries and backoff stays far inside the representable range.
A unit test checks that the CRDs carry these exact numbers.
"""

from __future__ import annotations

# Seconds in 100 years of 365 days: countdown, expires, ttlSecondsAfterFinished,
# startingDeadlineSeconds and the retry backoff delays.
SECONDS_MAX = 3_153_600_000
# timeLimit / softTimeLimit: one year (Celery arms worker timers with them).
TIME_LIMIT_SECONDS_MAX = 31_536_000
# spec.retry.backoff.factor: factor**99 * SECONDS_MAX stays a finite float.
BACKOFF_FACTOR_MAX = 10
# spec.maxRuns of a PeriodicTask.
MAX_RUNS_MAX = 1_000_000_000
# Dates (eta, expires, startTime, endTime) are written with a year in this range.
TIME_MIN_YEAR = 1970
TIME_MAX_YEAR = 8999
# The CEL rule (on the text, so offsets cannot move it) that accepts those years.
TIME_YEAR_PATTERN = "^(19[7-9][0-9]|[2-8][0-9]{3})-"
TIME_YEAR_MESSAGE = f"must be a date-time from year {TIME_MIN_YEAR} to {TIME_MAX_YEAR}"
# Nesting depth of one args item or kwargs value (the JSON encoders recurse).
JSON_DEPTH_MAX = 32
