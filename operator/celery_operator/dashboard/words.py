"""A schedule as a sentence, for the common cron shapes (others read as written)."""

from __future__ import annotations

DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def _at(minute: str, hour: str) -> str | None:
    if minute.isdigit() and hour.isdigit():
        return f"at {int(hour):02d}:{int(minute):02d}"
    if minute.isdigit() and hour == "*":
        return f"every hour at minute {int(minute)}"
    if minute.startswith("*/") and minute[2:].isdigit() and hour == "*":
        return f"every {int(minute[2:])} minutes"
    if minute == "*" and hour == "*":
        return "every minute"
    return None


def cron_words(expression: str) -> str | None:
    """'30 2 * * 1' -> 'every Monday at 02:30'; None when no short sentence fits."""
    fields = expression.split()
    if len(fields) != 5:
        return None
    minute, hour, day, month, weekday = fields
    at = _at(minute, hour)
    if at is None or month != "*":
        return None
    if day == "*" and weekday == "*":
        return f"every day {at}" if at.startswith("at") else at
    if day == "*" and weekday.isdigit() and int(weekday) <= 7 and at.startswith("at"):
        return f"every {DAYS[int(weekday) % 7]} {at}"
    if weekday == "*" and day.isdigit() and at.startswith("at"):
        return f"on day {int(day)} of every month {at}"
    return None
