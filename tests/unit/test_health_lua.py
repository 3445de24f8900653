"""The Argo CD health scripts in docs/health/, run by a real Lua interpreter (lupa).

Argo CD runs them with gopher-lua, a Lua 5.1; they are run here with Lua 5.1 and 5.4.
Statuses are built with the operator's own condition code, so a change in what the
operator writes shows up here.
"""

from __future__ import annotations

import importlib
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from celery_operator.api import Phase
from celery_operator.api.conditions import set_condition
from celery_operator.scheduling.task_lifecycle import conditions_for

ROOT = Path(__file__).resolve().parents[2]
HEALTH = ROOT / "docs" / "health"
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
LUA_VERSIONS = ["lua51", "lua54"]


def health(script: str, obj: dict[str, Any], version: str) -> dict[str, str]:
    """Run one health script with `obj` as Argo CD does: a global, a returned `hs` table."""
    lupa = importlib.import_module(f"lupa.{version}")
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    source = (HEALTH / script).read_text()
    result = lua.execute(source)
    return {str(k): str(v) for k, v in result.items()}


# ---- ScheduledTask ------------------------------------------------------------------------


def scheduled(phase: str | None, *, generation: int = 1, observed: int | None = 1,
              **status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "celeryoperator.dev/v1alpha1",
        "kind": "ScheduledTask",
        "metadata": {"name": "t", "namespace": "n", "generation": generation},
        "spec": {"task": {"name": "demo.add", "args": [2, 3]}},
    }
    if phase is not None:
        obj["status"] = {
            "phase": phase,
            "conditions": conditions_for(
                [], phase=Phase(phase), reason=phase, message=f"the task is {phase.lower()}",
                generation=observed or generation, now=NOW,
            ),
            **status,
        }
        if observed is not None:
            obj["status"]["observedGeneration"] = observed
    return obj


DUE = "2026-12-24T18:00:00Z"
SCHEDULED_CASES = [
    # (case, object, status, message pattern)
    ("no status", scheduled(None), "Progressing", "Waiting for the operator"),
    ("empty status", {**scheduled(None), "status": {}}, "Progressing", "Waiting"),
    ("scheduled, due in a month", scheduled("Scheduled", dueTime=DUE), "Healthy",
     f"due at {DUE}"),
    ("dispatching", scheduled("Dispatching", attempt=1), "Progressing",
     r"Dispatching \(attempt 1\)"),
    ("queued", scheduled("Queued", attempt=1), "Progressing", "Queued"),
    ("started", scheduled("Started", attempt=2), "Progressing", r"Started \(attempt 2\)"),
    ("retrying", scheduled("Retrying", attempt=2), "Progressing", "Retrying"),
    ("succeeded", scheduled("Succeeded", completionTime="2026-11-26T09:00:03Z", result=5),
     "Healthy", "Succeeded at 2026-11-26T09:00:03Z"),
    ("failed with an error", scheduled(
        "Failed", error={"type": "ValueError", "message": "bad input"}),
     "Degraded", "Failed: ValueError: bad input"),
    ("expired", scheduled("Expired"), "Degraded", "Expired: the task is expired"),
    ("invalid spec", scheduled("Invalid"), "Degraded", "Invalid: the task is invalid"),
    ("revoked on request", scheduled("Revoked"), "Healthy", "Revoked as requested"),
    ("spec changed, not yet observed", scheduled("Succeeded", generation=2, observed=1),
     "Progressing", "observe generation 2"),
    ("failed, spec changed, not yet observed", scheduled("Failed", generation=3, observed=2),
     "Progressing", "generation 3"),
    ("phase written without observedGeneration", scheduled("Queued", observed=None),
     "Progressing", "generation 1"),
    ("a phase this script does not know", {
        **scheduled(None), "status": {"phase": "Teleporting", "observedGeneration": 1}},
     "Unknown", "Teleporting"),
]


@pytest.mark.parametrize("version", LUA_VERSIONS)
@pytest.mark.parametrize(("case", "obj", "status", "message"), SCHEDULED_CASES,
                         ids=[c[0] for c in SCHEDULED_CASES])
def test_scheduledtask_health(
    case: str, obj: dict[str, Any], status: str, message: str, version: str
) -> None:
    hs = health("scheduledtask.lua", obj, version)
    assert hs["status"] == status, hs
    assert re.search(message, hs["message"]), hs


def test_every_phase_has_a_verdict() -> None:
    """No phase of the CRD's enum falls through to Unknown."""
    for phase in Phase:
        hs = health("scheduledtask.lua", scheduled(phase.value), "lua51")
        assert hs["status"] in ("Healthy", "Progressing", "Degraded"), (phase, hs)


def test_degraded_exactly_when_the_operator_says_stalled() -> None:
    for phase in Phase:
        obj = scheduled(phase.value)
        stalled = next(c for c in obj["status"]["conditions"] if c["type"] == "Stalled")
        hs = health("scheduledtask.lua", obj, "lua54")
        assert (hs["status"] == "Degraded") == (stalled["status"] == "True"), (phase, hs)


# ---- PeriodicTask -------------------------------------------------------------------------


def periodic(*, ready: str | None = "True", stalled: str = "False", suspend: bool = False,
             generation: int = 1, observed: int | None = 1, message: str = "",
             status: bool = True) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "celeryoperator.dev/v1alpha1",
        "kind": "PeriodicTask",
        "metadata": {"name": "p", "namespace": "n", "generation": generation},
        "spec": {"schedule": {"interval": "10m"}, "task": {"name": "demo.add"},
                 "suspend": suspend},
    }
    if not status:
        return obj
    conditions: list[dict[str, Any]] = []
    if ready is not None:
        conditions = set_condition(conditions, type="Ready", status=ready, reason="Scheduled",
                                   message=message, generation=observed, now=NOW)
        conditions = set_condition(conditions, type="Stalled", status=stalled,
                                   reason="InvalidSpec" if stalled == "True" else "Scheduled",
                                   message=message if stalled == "True" else "",
                                   generation=observed, now=NOW)
    obj["status"] = {"conditions": conditions, "totalRuns": 3}
    if observed is not None:
        obj["status"]["observedGeneration"] = observed
    return obj


NEXT = "next run at 2026-11-26T09:10:00Z"
PERIODIC_CASES = [
    ("no status", periodic(status=False), "Progressing", "Waiting for the operator"),
    ("ready", periodic(message=NEXT), "Healthy", NEXT),
    ("ready, bounds reached", periodic(message="no further runs"), "Healthy", "no further"),
    ("invalid spec", periodic(ready="False", stalled="True",
                              message="invalid spec: spec.schedule.cron: bad field"),
     "Degraded", "spec.schedule.cron"),
    ("suspended", periodic(suspend=True, message="suspended: no runs are created"),
     "Suspended", "Suspended"),
    ("suspended and invalid", periodic(suspend=True, ready="False", stalled="True",
                                       message="invalid spec: x"), "Degraded", "invalid"),
    ("not ready", periodic(ready="False", message="catching up"), "Progressing", "catching up"),
    ("no conditions yet", periodic(ready=None), "Progressing", "Waiting"),
    ("spec changed, not yet observed", periodic(generation=2, observed=1), "Progressing",
     "generation 2"),
    ("suspend just set, not yet observed", periodic(suspend=True, generation=2, observed=1),
     "Progressing", "generation 2"),
    ("no observedGeneration", periodic(observed=None), "Progressing", "generation 1"),
]


@pytest.mark.parametrize("version", LUA_VERSIONS)
@pytest.mark.parametrize(("case", "obj", "status", "message"), PERIODIC_CASES,
                         ids=[c[0] for c in PERIODIC_CASES])
def test_periodictask_health(
    case: str, obj: dict[str, Any], status: str, message: str, version: str
) -> None:
    hs = health("periodictask.lua", obj, version)
    assert hs["status"] == status, hs
    assert re.search(message, hs["message"]), hs


# ---- the docs carry the same scripts ------------------------------------------------------


@pytest.mark.parametrize(("kind", "script"), [("ScheduledTask", "scheduledtask.lua"),
                                              ("PeriodicTask", "periodictask.lua")])
def test_gitops_doc_embeds_the_tested_script(kind: str, script: str) -> None:
    """docs/gitops.md's argocd-cm snippet holds exactly the scripts tested here."""
    import yaml

    doc = (ROOT / "docs" / "gitops.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", doc, re.DOTALL)
    configmaps = [d for b in blocks for d in yaml.safe_load_all(b)
                  if isinstance(d, dict) and d.get("kind") == "ConfigMap"
                  and d["metadata"]["name"] == "argocd-cm"]
    assert configmaps, "docs/gitops.md has no argocd-cm ConfigMap"
    key = f"resource.customizations.health.celeryoperator.dev_{kind}"
    assert configmaps[0]["data"][key] == (HEALTH / script).read_text()
