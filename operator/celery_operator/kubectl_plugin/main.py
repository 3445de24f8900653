"""`kubectl celery VERB NAME`: argument parsing, the connection, and exit statuses.

Exit status: 0 done, 1 refused or not applicable (one line on stderr, the API server's
own message for its refusals), 2 usage. kubectl passes a plugin the user's arguments but
not the effect of its global flags: -n, --context and --kubeconfig are read here, and the
kubeconfig's current context and namespace are used as kubectl uses them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from celery_operator import __version__
from celery_operator.api.scheduled import REVOKE_SIGNALS
from celery_operator.kube.client import Rejected
from celery_operator.kube.objects import NoCredentials, Unreachable, connect

from . import importing, overview, schedules, tasks
from .history import DEFAULT_LIMIT
from .output import FORMATS, Refused, Shown, render
from .target import Session

PROG = "kubectl celery"
DEFAULT_COUNT = 5
MAX_COUNT = 100
LOCALTIME = Path("/etc/localtime")
Verb = Callable[[Session, argparse.Namespace], Shown]


def _zone(text: str) -> tzinfo:
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown time zone {text!r} (an IANA name such as "
                                         "Europe/Berlin)") from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_COUNT}, "
                                         f"not {text!r}")
    return value


def local_zone() -> tzinfo:
    """This machine's zone as an IANA zone, so local times stay right across a DST change:
    $TZ, else the zone /etc/localtime links to, else today's fixed offset."""
    names = [os.environ.get("TZ", "").removeprefix(":")]
    with contextlib.suppress(OSError):
        names.append(str(LOCALTIME.resolve()).partition("/zoneinfo/")[2])
    for name in filter(None, names):
        with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
            return ZoneInfo(name)
    return datetime.now().astimezone().tzinfo or UTC


def _connection_flags(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """kubectl's flags, accepted before and after the verb (as kubectl passes them on)."""
    default = None if top else argparse.SUPPRESS
    parser.add_argument("-n", "--namespace", default=default,
                        help="namespace (default: the kubeconfig context's, else default)")
    parser.add_argument("--context", default=default, help="kubeconfig context to use")
    parser.add_argument("--kubeconfig", default=default,
                        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    parser.add_argument("-o", "--output", choices=FORMATS, default="table" if top else default,
                        help="output format (default: table)")
    parser.add_argument("--tz", type=_zone, default=default, metavar="ZONE",
                        help="show local times in this IANA zone (default: this machine's)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Everyday verbs on ScheduledTasks and PeriodicTasks. NAME may "
        "be KIND/NAME (periodictask/NAME or pt/NAME, scheduledtask/NAME or st/NAME).",
        epilog=f"{PROG} import ... converts celery beat schedules into PeriodicTasks "
        f"(see {PROG} import --help).",
    )
    parser.add_argument("--version", action="version", version=f"kubectl-celery {__version__}")
    _connection_flags(parser, top=True)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb(name: str, help: str, func: Verb, *, name_required: bool = True
             ) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help, description=help)
        sub.add_argument("name", metavar="NAME", nargs=None if name_required else "?")
        _connection_flags(sub, top=False)
        sub.set_defaults(func=func)
        return sub

    upcoming = verb("next", "next fire times of a PeriodicTask (local and UTC), or a "
                    "ScheduledTask's due time; without NAME, the next run of every "
                    "PeriodicTask", _next, name_required=False)
    upcoming.add_argument("-c", "--count", type=_count, default=DEFAULT_COUNT,
                          help=f"how many fire times (default {DEFAULT_COUNT})")
    upcoming.add_argument("-A", "--all-namespaces", action="store_true",
                          help="without NAME: PeriodicTasks of every namespace")
    verb("run", "run a PeriodicTask now (one extra run, also while suspended)",
         lambda s, a: schedules.run_now(s, a.name))
    verb("suspend", "suspend a PeriodicTask (spec.suspend: no runs are created)",
         lambda s, a: schedules.set_suspend(s, a.name, True))
    verb("resume", "resume a suspended PeriodicTask",
         lambda s, a: schedules.set_suspend(s, a.name, False))
    revoke = verb("revoke", "revoke a ScheduledTask (spec.revoke)", _revoke)
    revoke.add_argument("--terminate", action="store_true",
                        help="also stop it if a worker already runs it")
    revoke.add_argument("--signal", choices=REVOKE_SIGNALS, default=None,
                        help="signal for --terminate (default SIGTERM)")
    verb("result", "result or traceback of a ScheduledTask, or of a PeriodicTask's last "
         "finished run", lambda s, a: tasks.result(s, a.name))
    past = verb("history", "a PeriodicTask's recent runs: outcome and lateness",
                lambda s, a: schedules.history(s, a.name, a.limit))
    past.add_argument("--limit", type=_count, default=DEFAULT_LIMIT,
                      help=f"how many runs (default {DEFAULT_LIMIT})")
    # Listed for --help; run by main() before this parser sees it (it has its own flags).
    late_import = verbs.add_parser("import", add_help=False, help="turn a celery beat "
                                   "schedule into PeriodicTask manifests (the same as "
                                   "celery-operator import; must come first)")
    late_import.add_argument("rest", nargs=argparse.REMAINDER)
    dashboard = verbs.add_parser("dashboard", add_help=False, help="a local web UI over "
                                 "ScheduledTasks and PeriodicTasks (must come first; see "
                                 f"{PROG} dashboard --help)")
    dashboard.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _next(session: Session, args: argparse.Namespace) -> Shown:
    if args.name is None:
        return overview.next_of_all(session, all_namespaces=args.all_namespaces)
    if args.all_namespaces:
        raise Refused("-A lists every namespace: use it without NAME")
    return schedules.next_times(session, args.name, args.count)


def _revoke(session: Session, args: argparse.Namespace) -> Shown:
    return tasks.revoke(session, args.name, terminate=args.terminate,
                        signal=args.signal or REVOKE_SIGNALS[0])


def _fail(line: str) -> int:
    print(line, file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["import"]:
        return importing.run(PROG, argv[1:])
    if argv[:1] == ["dashboard"]:
        from celery_operator.dashboard.command import main as dashboard

        return dashboard(f"{PROG} dashboard", argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb == "import":
        parser.error("import must come first: kubectl celery import SOURCE ... (its own -n "
                     "sets the manifests' namespace)")
    if args.verb == "dashboard":
        parser.error("dashboard must come first: kubectl celery dashboard [-n NAMESPACE] ...")
    if args.verb == "revoke" and args.signal and not args.terminate:
        parser.error("--signal is the signal --terminate sends: give --terminate too")
    try:
        objects, context_namespace = connect(args.kubeconfig, args.context)
        session = Session(objects, args.namespace or context_namespace,
                          clock=lambda: datetime.now(UTC),
                          zone=args.tz or local_zone())
        shown = args.func(session, args)
    except Refused as exc:
        return _fail(f"error: {exc}")
    except Rejected as exc:
        return _fail(f"Error from server ({exc.reason}): {exc.message}")
    except NoCredentials as exc:
        return _fail(f"error: {exc}")
    except Unreachable as exc:
        return _fail(f"error: cannot reach the Kubernetes API server: {exc}")
    if shown.note and args.output == "table":
        print(shown.note, file=sys.stderr)
    print(render(shown, args.output))
    return 0


def entry_point() -> None:
    sys.exit(main())
