"""Upper bounds of every spec duration, count and date, shared with the CRD schemas.

Chosen so that no combination the API server accepts can overflow Python's datetime
(years 1-9999): dates lie in 1970-8999 (UTC), and every duration is at most a century,
so a due time plus expiry, retries and backoff stays far inside the representable range.
A unit test checks that the CRDs carry these exact numbers.
"""

from __future__ import annotations

from datetime import UTC, datetime

# Seconds in 100 years of 365 days: countdown, expires, ttlSecondsAfterFinished,
# startingDeadlineSeconds and the retry backoff delays.
SECONDS_MAX = 3_153_600_000
# timeLimit / softTimeLimit: one year (Celery arms worker timers with them).
TIME_LIMIT_SECONDS_MAX = 31_536_000
# spec.retry.backoff.factor: factor**99 * SECONDS_MAX stays a finite float.
BACKOFF_FACTOR_MAX = 10
# spec.maxRuns of a PeriodicTask.
MAX_RUNS_MAX = 1_000_000_000
# Dates (eta, expires, startTime, endTime) lie in [TIME_MIN, TIME_END), in UTC.
TIME_MIN = datetime(1970, 1, 1, tzinfo=UTC)
TIME_END = datetime(9000, 1, 1, tzinfo=UTC)
TIME_MIN_TEXT = "1970-01-01T00:00:00Z"
TIME_END_TEXT = "9000-01-01T00:00:00Z"
# The CEL condition the CRDs check on a date-time `self` (a CEL timestamp there).
TIME_RANGE_RULE = f"self >= timestamp('{TIME_MIN_TEXT}') && self < timestamp('{TIME_END_TEXT}')"
TIME_RANGE_MESSAGE = f"must be a date-time at or after {TIME_MIN_TEXT} and before {TIME_END_TEXT}"
# Nesting depth of one args item or kwargs value (the JSON encoders recurse).
JSON_DEPTH_MAX = 32
