"""The `celery-operator` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from celery_operator import __version__


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="celery-operator",
        description="ScheduledTask and PeriodicTask resources, dispatched to Celery.",
    )
    parser.add_argument("--version", action="version", version=f"celery-operator {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the operator against the current kubeconfig")
    run.add_argument(
        "--broker-url",
        default=os.environ.get("CELERY_BROKER_URL"),
        help="the default app's Celery broker (Redis) URL, used by tasks of namespaces with "
        "no CeleryApp 'default' and no default ClusterCeleryApp [env CELERY_BROKER_URL]",
    )
    run.add_argument(
        "--result-backend",
        default=os.environ.get("CELERY_RESULT_BACKEND"),
        help="the default app's Celery Redis result backend URL [env CELERY_RESULT_BACKEND]",
    )
    run.add_argument(
        "-n", "--namespace", action="append", default=[],
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    run.add_argument("--metrics-port", type=int, default=int(os.environ.get("METRICS_PORT", 8000)),
                     help="Prometheus metrics port, 0 to disable (default 8000)")
    run.add_argument("--liveness", default=os.environ.get("LIVENESS_ENDPOINT",
                                                          "http://0.0.0.0:8080/healthz"),
                     help="kopf liveness endpoint, '' to disable")
    run.add_argument("--dispatch-lead", type=float,
                     default=_env_float("DISPATCH_LEAD_SECONDS", 2.0),
                     help="publish this many seconds before the due time, with eta=dueTime "
                     "(default 2)")
    run.add_argument("--claim-lease", type=float, default=_env_float("CLAIM_LEASE_SECONDS", 15.0),
                     help="seconds after which an unconfirmed dispatch claim is taken over")
    run.add_argument("--claim-rate", type=float, default=_env_float("CLAIM_RATE", 50.0),
                     help="claims per second to plan for when many tasks are due at once: "
                     "a burst of N is claimed N/rate seconds earlier (default 50)")
    run.add_argument("--finish-rate", type=float, default=_env_float("FINISH_RATE", 100.0),
                     help="final status writes per second at most: a burst's results are "
                     "written at this pace, leaving the API server to the rest (default 100) "
                     "[env FINISH_RATE]")
    run.add_argument("--run-outcome-wait", type=float,
                     default=_env_float("RUN_OUTCOME_WAIT_SECONDS", 60.0),
                     help="runs kept in status (runObjects: Never): seconds a run's outcome "
                     "may wait for the next run's claim to be written with it; more means "
                     "fewer API writes for schedules firing less often than every minute, "
                     "and outcomes shown that much later (default 60) "
                     "[env RUN_OUTCOME_WAIT_SECONDS]")
    run.add_argument("--poll-interval", type=float, default=_env_float("POLL_INTERVAL", 1.0),
                     help="seconds between batched result-backend reads (default 1)")
    run.add_argument("--task-events", choices=("notable", "all"),
                     default=os.environ.get("TASK_EVENTS", "notable"),
                     help="Kubernetes Events per ScheduledTask: notable (Warnings, Revoked, "
                     "Revoking; default) or all (also Scheduled, Dispatched, Succeeded: one "
                     "more API write each) [env TASK_EVENTS]")
    run.add_argument("--no-events", action="store_true",
                     help="do not listen to Celery events (results are still polled)")
    run.add_argument("--no-leader-election", dest="leader_election", action="store_false",
                     default=os.environ.get("LEADER_ELECTION", "true").lower() != "false",
                     help="act without holding the leader Lease (every replica acts; safe, "
                     "but the work is done twice) [env LEADER_ELECTION=false]")
    run.add_argument("--lease-name", default=os.environ.get("LEASE_NAME", "celery-operator"),
                     help="the leader Lease, in the operator's namespace (POD_NAMESPACE) "
                     "[env LEASE_NAME]")
    run.add_argument("--leader-lease-duration", type=float,
                     default=_env_float("LEADER_LEASE_DURATION", 15.0),
                     help="seconds a standby waits on an unrenewed Lease before taking it "
                     "(default 15) [env LEADER_LEASE_DURATION]")
    run.add_argument("--leader-renew-deadline", type=float,
                     default=_env_float("LEADER_RENEW_DEADLINE", 10.0),
                     help="seconds after its last renew a leader stops acting (default 10) "
                     "[env LEADER_RENEW_DEADLINE]")
    run.add_argument("--leader-retry-period", type=float,
                     default=_env_float("LEADER_RETRY_PERIOD", 2.0),
                     help="seconds between Lease renews and acquire tries (default 2) "
                     "[env LEADER_RETRY_PERIOD]")
    run.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, "
                     "then $KUBECONFIG)")
    run.add_argument("--log-format", choices=("json", "text"),
                     default=os.environ.get("LOG_FORMAT", "text"))
    run.add_argument("-v", "--verbose", action="store_true")

    demo = sub.add_parser("demo", help="start a local control plane, Redis, a worker and the "
                          "operator; apply examples/")
    demo.add_argument("--workdir", default=None, help="where logs and the kubeconfig go")

    from celery_operator.importer import command as import_command

    importer = sub.add_parser("import", help="turn a beat_schedule, django-celery-beat's "
                              "tables or RedBeat's entries into PeriodicTask manifests")
    import_command.add_arguments(importer)

    from celery_operator.dashboard.command import add_arguments as dashboard_arguments

    dashboard = sub.add_parser("dashboard", help="a local web UI over ScheduledTasks and "
                               "PeriodicTasks, with your kubeconfig's credentials")
    dashboard_arguments(dashboard)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.command == "run":
        return _run(parser, args)
    if args.command == "demo":
        from celery_operator.devstack.demo import run_demo

        return run_demo(args.workdir)
    if args.command == "import":
        from celery_operator.importer.command import run as run_import

        return run_import(args)
    if args.command == "dashboard":
        from celery_operator.dashboard.command import run as run_dashboard

        return run_dashboard(args, f"{parser.prog} dashboard")
    return 2


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from celery_operator.config import OperatorConfig
    from celery_operator.logs import setup_logging

    if bool(args.broker_url) != bool(args.result_backend):
        parser.error("--broker-url and --result-backend (or CELERY_BROKER_URL and "
                     "CELERY_RESULT_BACKEND) go together: they are the cluster's default app "
                     "(leave both out to use CeleryApp objects only)")
    if not 0 <= args.run_outcome_wait <= 3600:
        parser.error(f"--run-outcome-wait (or RUN_OUTCOME_WAIT_SECONDS) must be 0 to 3600 "
                     f"seconds, not {args.run_outcome_wait:g}")
    setup_logging(args.log_format, logging.DEBUG if args.verbose else logging.INFO)
    config = OperatorConfig(
        broker_url=args.broker_url,
        result_backend_url=args.result_backend,
        namespaces=tuple(args.namespace),
        metrics_port=args.metrics_port or None,
        liveness_endpoint=args.liveness or None,
        dispatch_lead_seconds=args.dispatch_lead,
        claim_lease_seconds=args.claim_lease,
        claim_rate=args.claim_rate,
        finish_rate=args.finish_rate,
        run_outcome_wait_seconds=args.run_outcome_wait,
        poll_interval_seconds=args.poll_interval,
        listen_events=not args.no_events,
        routine_task_events=args.task_events == "all",
        kubeconfig=args.kubeconfig,
        leader_election=args.leader_election,
        lease_name=args.lease_name,
        lease_duration_seconds=args.leader_lease_duration,
        renew_deadline_seconds=args.leader_renew_deadline,
        retry_period_seconds=args.leader_retry_period,
    )
    from celery_operator.controllers.leadership import ElectionTiming

    timing = ElectionTiming(args.leader_lease_duration, args.leader_renew_deadline,
                            args.leader_retry_period)
    if args.leader_election and (problem := timing.problem()) is not None:
        parser.error(problem)
    from celery_operator.kube.client import credentials_problem

    if (problem := credentials_problem(args.kubeconfig)) is not None:
        # One line and a non-zero exit: Kubernetes restarts the pod and shows why.
        parser.exit(2, f"{parser.prog}: error: {problem}\n")
    from celery_operator.controllers.run import run_operator

    run_operator(config)
    return 0
