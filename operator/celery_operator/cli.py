"""The `celery-operator` command line."""

from __future__ import annotations

import argparse
import sys

from celery_operator import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="celery-operator",
        description="Run the celery-operator: ScheduledTask and PeriodicTask resources "
        "dispatched to Celery.",
    )
    parser.add_argument("--version", action="version", version=f"celery-operator {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("run", help="run the operator against the current kubeconfig")
    sub.add_parser("demo", help="start a local control plane, Redis, a worker and the operator")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return 0
