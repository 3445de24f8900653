"""The one comparison of the importer's tests: operator runs against Celery's runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

NEAR = timedelta(days=1)


def stamp(change: datetime) -> str:
    """How the importer's daylight-saving notes name a change."""
    return change.strftime("%Y-%m-%dT%H:%MZ")


def assert_same_runs(
    name: str,
    ours: Sequence[datetime],
    theirs: Sequence[datetime],
    changes: Sequence[datetime],
    notes: Sequence[tuple[str, str]],
) -> bool:
    """Equal runs, or differences only within a day of an offset change, each reported.

    `notes` are the importer's (entry name, daylight-saving note) pairs. Returns whether
    the runs differed at all.
    """
    if list(ours) == list(theirs):
        return False
    only_ours = sorted(set(ours) - set(theirs))
    only_theirs = sorted(set(theirs) - set(ours))
    outside = [t for t in only_ours + only_theirs if all(abs(t - c) > NEAR for c in changes)]
    assert outside == [], (name, outside)
    for change in changes:
        near_ours = [t for t in only_ours if abs(t - change) <= NEAR]
        near_theirs = [t for t in only_theirs if abs(t - change) <= NEAR]
        reported = [n for entry, n in notes if entry == name and f" at {stamp(change)}:" in n]
        if not near_ours and not near_theirs:
            assert reported == [], (name, reported)
            continue
        assert len(reported) == 1, (name, stamp(change), notes)
        if near_ours:
            assert f"runs {len(near_ours)} time(s): " in reported[0], reported[0]
        if near_theirs:
            assert f"beat runs {len(near_theirs)} time(s): " in reported[0], reported[0]
    return True
