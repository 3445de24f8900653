"""Which object a NAME (or KIND/NAME) means, in the namespace kubectl would use."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from celery_operator.api import (
    PERIODIC_KIND,
    PERIODIC_PLURAL,
    SCHEDULED_KIND,
    SCHEDULED_PLURAL,
    parse_time,
)
from celery_operator.kube.client import Rejected
from celery_operator.kube.objects import Objects

from .output import Refused

KIND_OF = {PERIODIC_PLURAL: PERIODIC_KIND, SCHEDULED_PLURAL: SCHEDULED_KIND}
# What kubectl accepts before a slash: short name, singular, plural, plural.group.
PLURAL_OF = {
    alias: plural
    for plural, short in ((PERIODIC_PLURAL, "pt"), (SCHEDULED_PLURAL, "st"))
    for alias in (short, plural[:-1], plural, f"{plural}.celeryoperator.dev")
}
BOTH = (PERIODIC_PLURAL, SCHEDULED_PLURAL)
NOT_FOUND = 404


@dataclass(frozen=True)
class Session:
    objects: Objects
    namespace: str
    clock: Callable[[], datetime]
    zone: tzinfo  # the user's local time zone


@dataclass(frozen=True)
class Target:
    plural: str
    obj: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"]["namespace"])

    @property
    def kind(self) -> str:
        return KIND_OF[self.plural]

    @property
    def ref(self) -> str:
        """`periodictask/nightly-report`, as kubectl names an object in its messages."""
        return f"{self.plural[:-1]}/{self.name}"

    @property
    def identity(self) -> dict[str, str]:
        """What every verb's `-o json|yaml` answer starts with."""
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name}

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.obj.get("spec") or {})

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.obj.get("status") or {})

    @property
    def created(self) -> datetime:
        return parse_time(str(self.obj["metadata"]["creationTimestamp"]))


def find(session: Session, ref: str, kinds: Sequence[str] = BOTH) -> Target:
    """The object `ref` names. A bare NAME is looked up as each kind in `kinds`; when
    several exist, the user must say which. Raises Refused, or Rejected (the API server's
    refusal, e.g. Forbidden) when nothing was found."""
    kind, slash, name = ref.rpartition("/")
    if slash:
        if kind.lower() not in PLURAL_OF:
            raise Refused(f'unknown kind "{kind}" in "{ref}": use periodictask/NAME (pt/NAME) '
                          "or scheduledtask/NAME (st/NAME)")
        kinds = (PLURAL_OF[kind.lower()],)
    found: list[Target] = []
    refusals: list[Rejected] = []
    for plural in kinds:
        try:
            found.append(Target(plural, session.objects.get(plural, session.namespace, name)))
        except Rejected as exc:
            refusals.append(exc)
    if len(found) > 1:
        raise Refused(f'both a PeriodicTask and a ScheduledTask are named "{name}" in namespace '
                      f'"{session.namespace}": say periodictask/{name} or scheduledtask/{name}')
    if found:
        return found[0]
    denied = [exc for exc in refusals if exc.status != NOT_FOUND]
    if denied or len(refusals) == 1:
        raise (denied or refusals)[0]
    kinds_named = " or ".join(KIND_OF[plural] for plural in kinds)
    raise Refused(f'no {kinds_named} named "{name}" in namespace "{session.namespace}"')
