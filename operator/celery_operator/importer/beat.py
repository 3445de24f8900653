"""Source: a Celery app's `beat_schedule` (loaded from the user's code)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from celery import Celery

from celery_operator.importer.celery_schedules import app_time_zone, plan_of
from celery_operator.importer.entries import Entry, SkipEntry, SourceError

SOURCE = "beat"
# Keys of a beat_schedule entry that beat itself reads (celery.beat.ScheduleEntry).
_ENTRY_KEYS = frozenset({"task", "schedule", "args", "kwargs", "options", "relative"})


class AppLoadError(SourceError):
    """The user's app or settings module could not be imported."""


def load_app(spec: str) -> Celery:
    """The Celery app `pkg.module:app` (or `pkg.module`, as `celery -A` finds it)."""
    from celery.app.utils import find_app

    if "" not in sys.path:
        sys.path.insert(0, "")  # like `celery -A`: the current directory's packages
    try:
        app = find_app(spec)
    except BaseException as exc:  # the user's module may raise anything, even SystemExit
        raise AppLoadError(f"cannot load the Celery app {spec!r}") from exc
    if not isinstance(app, Celery):
        raise AppLoadError(f"{spec!r} is a {type(app).__name__}, not a Celery app")
    return app


def load_settings(module: str, namespace: str) -> Celery:
    """A Celery app configured from a Django settings module, as `config_from_object` does."""
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        settings = importlib.import_module(module)
    except BaseException as exc:
        raise AppLoadError(f"cannot import the settings module {module!r}") from exc
    app = Celery("celery-operator-import", set_as_current=False)
    app.config_from_object(settings, namespace=namespace or None)
    return app


def read_entries(app: Celery) -> Iterator[Entry | tuple[str, SkipEntry]]:
    """The app's beat entries, or (name, why) for each one that cannot be converted."""
    conf = app.conf
    try:
        schedule: Mapping[str, Any] = conf.beat_schedule or {}
        time_zone = app_time_zone(conf.timezone, bool(conf.enable_utc))
    except BaseException as exc:
        raise AppLoadError("cannot read the app's configuration") from exc
    if conf.timezone and time_zone is None:
        raise AppLoadError(f"the app's timezone {conf.timezone!r} is not an IANA time zone")
    for name, raw in schedule.items():
        try:
            yield _entry(str(name), raw, time_zone)
        except SkipEntry as exc:
            yield str(name), exc


def _entry(name: str, raw: Any, time_zone: str | None) -> Entry:
    if not isinstance(raw, Mapping):
        raise SkipEntry(f"entry is a {type(raw).__name__}, not a mapping")
    unknown = sorted(set(raw) - _ENTRY_KEYS)
    if unknown:
        raise SkipEntry(
            f"unknown keys {', '.join(map(str, unknown))} (celery beat would refuse the entry)"
        )
    for key in ("task", "schedule"):
        if raw.get(key) is None:
            raise SkipEntry(f"no {key!r}")
    args = raw.get("args") or ()
    kwargs = raw.get("kwargs") or {}
    options = raw.get("options") or {}
    if not isinstance(args, list | tuple):
        raise SkipEntry(f"args is a {type(args).__name__}, not a list or tuple")
    if not isinstance(kwargs, Mapping) or not isinstance(options, Mapping):
        raise SkipEntry("kwargs and options must be mappings")
    return Entry(
        name=name,
        task=str(raw["task"]),
        plan=plan_of(raw["schedule"], relative=bool(raw.get("relative")), time_zone=time_zone),
        args=tuple(args),
        kwargs=dict(kwargs),
        options=dict(options),
    )
