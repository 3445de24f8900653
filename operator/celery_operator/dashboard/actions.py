"""The page's actions, done by the kubectl plugin's own verbs with the user's credentials:
the same API calls `kubectl celery run|suspend|resume|revoke` and `kubectl delete` make."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from celery_operator.api import PERIODIC_PLURAL, SCHEDULED_PLURAL
from celery_operator.api.scheduled import REVOKE_SIGNALS
from celery_operator.kube.client import Rejected
from celery_operator.kube.objects import Objects, Unreachable
from celery_operator.kubectl_plugin import schedules, tasks
from celery_operator.kubectl_plugin.output import Refused
from celery_operator.kubectl_plugin.target import Session, find

ACTIONS = {"run": PERIODIC_PLURAL, "suspend": PERIODIC_PLURAL, "resume": PERIODIC_PLURAL,
           "revoke": SCHEDULED_PLURAL, "delete": None}


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str


def _delete(session: Session, ref: str) -> str:
    target = find(session, ref)
    session.objects.delete(target.plural, target.namespace, target.name)
    return f'{target.ref} deleted'


def perform(objects: Objects, request: Mapping[str, Any], zone: tzinfo) -> Outcome:
    """One action from the page's JSON: {action, plural, namespace, name, terminate}."""
    action, plural = str(request.get("action")), str(request.get("plural"))
    namespace, name = str(request.get("namespace") or ""), str(request.get("name") or "")
    if action not in ACTIONS or plural not in (PERIODIC_PLURAL, SCHEDULED_PLURAL):
        return Outcome(False, f"unknown action {action!r} on {plural!r}")
    if ACTIONS[action] not in (None, plural):
        return Outcome(False, f"{action} does not apply to {plural}")
    if not namespace or not name:
        return Outcome(False, "namespace and name are required")
    session = Session(objects, namespace, clock=lambda: datetime.now(UTC), zone=zone)
    ref = f"{plural[:-1]}/{name}"
    try:
        if action == "run":
            text = schedules.run_now(session, ref).text
        elif action in ("suspend", "resume"):
            text = schedules.set_suspend(session, ref, action == "suspend").text
        elif action == "revoke":
            text = tasks.revoke(session, ref, terminate=request.get("terminate") is True,
                                signal=REVOKE_SIGNALS[0]).text
        else:
            text = _delete(session, ref)
    except Refused as exc:
        return Outcome(False, f"error: {exc}")
    except Rejected as exc:
        return Outcome(False, f"Error from server ({exc.reason}): {exc.message}")
    except Unreachable as exc:
        return Outcome(False, f"error: cannot reach the Kubernetes API server: {exc}")
    return Outcome(True, text)
