"""`kubectl celery next` without NAME: what runs next, across PeriodicTasks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from celery_operator.api import PERIODIC_PLURAL, format_time

from .output import NONE, Refused, Shown, local_time, table, until, zone_name
from .target import Session
from .upcoming import periodic_upcoming


def next_of_all(session: Session, *, all_namespaces: bool) -> Shown:
    now = session.clock()
    items = session.objects.list(PERIODIC_PLURAL, None if all_namespaces else session.namespace)
    entries: list[tuple[datetime | None, dict[str, Any]]] = []
    for obj in items:
        meta = obj["metadata"]
        entry: dict[str, Any] = {"namespace": meta["namespace"], "name": meta["name"]}
        try:
            upcoming = periodic_upcoming(obj, now, 1)
        except Refused:
            entry |= {"schedule": NONE, "note": "invalid spec (see kubectl describe)"}
            entries.append((None, entry))
            continue
        first = upcoming.times[0] if upcoming.times else None
        entry["schedule"] = upcoming.schedule
        if first is not None:
            entry["next"] = {"utc": format_time(first),
                             "local": first.astimezone(session.zone).isoformat()}
        else:
            entry["note"] = "suspended" if obj["spec"].get("suspend") else "no further runs"
        entries.append((first, entry))
    entries.sort(key=lambda e: (e[0] is None, e[0] or now, e[1]["namespace"], e[1]["name"]))
    headers = [*(["NAMESPACE"] if all_namespaces else []), "NAME", "NEXT",
               f"LOCAL ({zone_name(session.zone, now)})", "IN", "SCHEDULE"]
    rows = [[*([e["namespace"]] if all_namespaces else []), e["name"],
             format_time(t) if t else NONE, local_time(t, session.zone) if t else NONE,
             until(t, now) if t else e["note"], e["schedule"]] for t, e in entries]
    where = "any namespace" if all_namespaces else f'namespace "{session.namespace}"'
    text = table(headers, rows) if rows else f"no PeriodicTasks in {where}"
    return Shown(text, {"items": [e for _, e in entries]})
