"""`import beat|django-celery-beat|redbeat`: arguments and the run (shared with kubectl celery)."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from celery_operator.api.apps import APP_KINDS, AppRef
from celery_operator.api.defaults import APP_KIND
from celery_operator.importer.dst import dst_notes
from celery_operator.importer.entries import CronPlan, Entry, SkipEntry, SourceError
from celery_operator.importer.manifests import build_manifest
from celery_operator.importer.naming import object_names
from celery_operator.importer.report import Report

Converted = Entry | tuple[str, SkipEntry]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The three sources as subcommands, each with the output options."""
    sources = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)
    from_beat = sources.add_parser(
        "beat", help="a Celery app's beat_schedule",
        description="Convert the beat_schedule of a Celery app (or Django settings).",
    )
    which = from_beat.add_mutually_exclusive_group(required=True)
    which.add_argument("-A", "--app", dest="celery_app", metavar="MODULE[:APP]",
                       help="the Celery app, as for `celery -A` (e.g. proj.celery:app)")
    which.add_argument("--settings", metavar="MODULE",
                       help="a Django settings module holding CELERY_BEAT_SCHEDULE")
    from_beat.add_argument("--settings-namespace", default="CELERY",
                           help="prefix of the Celery settings in --settings (default CELERY)")
    from_db = sources.add_parser(
        "django-celery-beat", help="django-celery-beat's database tables",
        description="Convert django-celery-beat's periodic tasks, read from its database.",
    )
    from_db.add_argument("--database-url", required=True,
                         help="postgresql://USER:PASSWORD@HOST:PORT/DB or sqlite:///PATH")
    from_redis = sources.add_parser(
        "redbeat", help="RedBeat's entries in Redis",
        description="Convert the entries RedBeat keeps in Redis.",
    )
    from_redis.add_argument("--redis-url", required=True, help="redis://[:PASSWORD@]HOST:PORT/DB")
    from_redis.add_argument("--key-prefix", default="redbeat:",
                            help="RedBeat's redbeat_key_prefix (default redbeat:)")
    from_redis.add_argument("--timezone", default="UTC",
                            help="the Celery app's timezone, which RedBeat's crontabs run in "
                            "(default UTC, Celery's default)")
    for sub in (from_beat, from_db, from_redis):
        sub.add_argument("-n", "--namespace", help="metadata.namespace of every manifest")
        sub.add_argument("-o", "--output-dir", metavar="DIR", type=Path,
                         help="write one NAME.yaml per entry here instead of YAML to stdout")
        sub.add_argument("--spec-app", metavar="[KIND/]NAME",
                         help="set spec.app: a CeleryApp NAME, or ClusterCeleryApp/NAME")


def run(args: argparse.Namespace) -> int:
    """Convert, write the manifests, report on stderr. 0 unless the source cannot be read."""
    try:
        app_ref = _app_ref(args.spec_app)
        entries = list(_read(args))
    except SourceError as exc:
        if exc.__cause__ is not None:  # the user's code raised: show where
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        sys.stderr.write(f"celery-operator import: {exc}\n")
        return 1
    except ValueError as exc:
        sys.stderr.write(f"celery-operator import: {exc}\n")
        return 1
    report = Report()
    manifests = convert(
        entries, args.source, args.namespace, app_ref, report, now=datetime.now(UTC)
    )
    _write(manifests, args.output_dir, sys.stdout)
    report.write(sys.stderr)
    return 0


def _app_ref(text: str | None) -> AppRef | None:
    if not text:
        return None
    kind, _, name = text.rpartition("/")
    kind = kind or APP_KIND
    if kind not in APP_KINDS:
        raise ValueError(f"--spec-app {text!r}: the kind must be one of {', '.join(APP_KINDS)}")
    return AppRef(kind=kind, name=name)


def _read(args: argparse.Namespace) -> Iterator[Converted]:
    # Each source's libraries load only when it is used (sqlalchemy is an optional extra).
    if args.source == "beat":
        from celery_operator.importer import beat

        if args.settings:
            app = beat.load_settings(args.settings, args.settings_namespace)
        else:
            app = beat.load_app(args.celery_app)
        return beat.read_entries(app)
    if args.source == "django-celery-beat":
        try:
            from celery_operator.importer import djangobeat
        except ImportError as exc:
            raise SourceError(
                f"{exc}: install the import extra: pip install 'celery-operator[import]'"
            ) from None
        return djangobeat.read_entries(args.database_url)
    from celery_operator.importer import redbeat

    return redbeat.read_entries(args.redis_url, key_prefix=args.key_prefix,
                                time_zone=args.timezone)


def convert(
    entries: Iterable[Converted],
    source: str,
    namespace: str | None,
    app: AppRef | None,
    report: Report,
    *,
    now: datetime,
) -> list[dict[str, Any]]:
    """Manifests for the entries that convert; the report says what happened to each.

    `now` starts the year over which runs around daylight-saving changes are compared.
    """
    items = list(entries)
    names = object_names(e.name if isinstance(e, Entry) else e[0] for e in items)
    manifests: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, Entry):
            report.skipped.append((item[0], str(item[1])))
            continue
        name = names[item.name]
        try:
            manifest = build_manifest(
                item, name=name, source=source, namespace=namespace, app=app
            )
        except SkipEntry as exc:
            report.skipped.append((item.name, str(exc)))
            continue
        manifests.append(manifest)
        report.converted.append((item.name, f"{manifest['kind']}/{name}"))
        if name != item.name:
            report.changed.append((item.name, f"renamed to {name}"))
        report.changed.extend((item.name, note) for note in item.notes)
        if isinstance(item.plan, CronPlan):
            notes = dst_notes(item.plan, now)
            report.changed.extend((item.name, note) for note in notes)
    return manifests


def _write(manifests: list[dict[str, Any]], directory: Path | None, out: TextIO) -> None:
    if directory is None:
        yaml.safe_dump_all(manifests, out, sort_keys=False, allow_unicode=True)
        return
    directory.mkdir(parents=True, exist_ok=True)
    for manifest in manifests:
        path = directory / f"{manifest['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True))
