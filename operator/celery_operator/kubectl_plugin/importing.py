"""`kubectl celery import ...`: the same command as `celery-operator import`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def run(prog: str, argv: Sequence[str]) -> int:
    # Imported here: the importer loads Celery apps and database drivers, which no other
    # verb needs.
    from celery_operator.importer import command

    parser = argparse.ArgumentParser(prog=f"{prog} import",
                                     description="Turn an existing schedule into PeriodicTask "
                                     "manifests.")
    command.add_arguments(parser)
    return command.run(parser.parse_args(list(argv)))
