"""Bursts: many tasks due in the same second are claimed earlier, in proportion.

Each claim is an API write (and a confirm follows), so N tasks due at one instant need
about N / claim_rate seconds of claiming. Tasks are counted per due second while they are
unfinished; a task's extra lead is the count of its ±1 s neighbourhood divided by the
claim rate, capped. When a bucket grows past another whole second of extra lead, every
member is woken earlier. The messages still carry eta = the due time, so workers start
them on time; they only hold them a little longer.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta


class BurstTracker:
    def __init__(self, claim_rate: float, max_extra_lead: timedelta) -> None:
        self.claim_rate = claim_rate
        self.max_extra_lead = max_extra_lead
        self._second_of: dict[str, int] = {}
        self._members: defaultdict[int, set[str]] = defaultdict(set)
        self._announced: dict[int, int] = {}  # whole seconds of extra lead already woken for

    def __len__(self) -> int:
        return len(self._second_of)

    def set(self, key: str, second: int | None) -> list[tuple[str, datetime]]:
        """Record that `key` is due at `second` (None: finished or gone). Returns the keys
        to wake earlier, with the time: their burst just grew by another second of lead."""
        old = self._second_of.get(key)
        if old == second:
            return []
        if old is not None:
            self._members[old].discard(key)
            if not self._members[old]:
                del self._members[old]
                self._announced.pop(old, None)
            del self._second_of[key]
        if second is None:
            return []
        self._second_of[key] = second
        self._members[second].add(key)
        extra = self._extra(second)
        whole = int(extra.total_seconds())
        if whole <= self._announced.get(second, 0):
            return []
        self._announced[second] = whole
        wake = datetime.fromtimestamp(second, UTC) - extra
        return [(member, wake) for s in (second - 1, second, second + 1)
                for member in self._members.get(s, ())]

    def extra_lead(self, key: str) -> timedelta:
        second = self._second_of.get(key)
        return timedelta(0) if second is None else self._extra(second)

    def _extra(self, second: int) -> timedelta:
        burst = sum(len(self._members.get(s, ())) for s in (second - 1, second, second + 1))
        if burst <= self.claim_rate:
            return timedelta(0)
        return min(timedelta(seconds=burst / self.claim_rate), self.max_extra_lead)


class QuietWindows:
    """Windows of time in which the operator leaves the machine to a burst's workers.

    A window is admitted only if it keeps a cool-down as long as itself from every other
    one (expanded by their lengths, the two do not overlap): whatever asks for windows,
    they cover at most half of the time, so the work they postpone is never starved.
    """

    def __init__(self) -> None:
        self._windows: dict[int, tuple[datetime, datetime]] = {}

    def admit(self, key: int, start: datetime, end: datetime, now: datetime) -> bool:
        if key in self._windows:
            return False
        self._windows = {k: (s, e) for k, (s, e) in self._windows.items() if e + (e - s) > now}
        if any(start < e + (e - s) and end + (end - start) > s
               for s, e in self._windows.values()):
            return False
        self._windows[key] = (start, end)
        return True

    def end_at(self, now: datetime) -> datetime | None:
        """The end of the window `now` is in (None: not in one)."""
        ends = [e for s, e in self._windows.values() if s <= now < e]
        return max(ends) if ends else None
