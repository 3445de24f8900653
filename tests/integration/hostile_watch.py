"""Watching a namespace from outside, for test_hostile_manifests.py.

Everything is read through kubectl (Go): a manifest nested deeper than Python's recursion
limit must not be able to break the test that checks the operator survives it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery_operator.devstack import KubeEnv, ManagedProcess

_ROW = (
    '{range .items[*]}{.kind}{"\\t"}{.metadata.name}{"\\t"}{.metadata.uid}{"\\t"}'
    '{.metadata.labels}{"\\t"}{.metadata.ownerReferences}{"\\t"}{.status}{"\\n"}{end}'
)


@dataclass(frozen=True)
class Row:
    kind: str
    name: str
    uid: str
    labels: dict[str, str] = field(default_factory=dict)
    owners: tuple[str, ...] = ()  # uids of controller owners
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def phase(self) -> str | None:
        phase = self.status.get("phase")
        return str(phase) if phase else None

    def condition(self, type_: str) -> str | None:
        for condition in self.status.get("conditions") or []:
            if condition.get("type") == type_:
                return str(condition.get("status"))
        return None


def _json(text: str) -> Any:
    return json.loads(text) if text else None


def snapshot(kube: KubeEnv, namespace: str) -> dict[tuple[str, str], Row]:
    """Every ScheduledTask and PeriodicTask of the namespace, by (kind, name)."""
    out = kube.kubectl(
        "get", "scheduledtasks,periodictasks", "-n", namespace, "-o", f"jsonpath={_ROW}"
    ).stdout
    rows: dict[tuple[str, str], Row] = {}
    for line in out.splitlines():
        kind, name, uid, labels, owners, status = line.split("\t")
        owner_uids = tuple(
            str(o["uid"]) for o in _json(owners) or [] if o.get("controller") is True
        )
        rows[(kind, name)] = Row(kind, name, uid, _json(labels) or {}, owner_uids,
                                 _json(status) or {})
    return rows


class WriteWatch:
    """`kubectl get --watch` of one kind: every change to an object (each status write
    of the operator is one MODIFIED event), counted per object name. It lists first (an
    ADDED line per object that exists), then streams."""

    def __init__(self, kube: KubeEnv, namespace: str, plural: str, workdir: Path) -> None:
        self.log = workdir / f"watch-{namespace}-{plural}.log"
        template = '{.type}{" "}{.object.metadata.uid}{" "}{.object.metadata.name}{"\\n"}'
        self.process = ManagedProcess(
            f"watch-{plural}",
            [str(kube.kubectl_path), "--kubeconfig", str(kube.kubeconfig), "get", plural,
             "-n", namespace, "--watch", "--output-watch-events", "-o",
             f"jsonpath={template}"],
            log_path=self.log,
        )

    def start(self) -> WriteWatch:
        self.process.start()
        return self

    def _events(self) -> list[tuple[str, str, str]]:
        if not self.log.exists():
            return []
        lines = self.log.read_text(errors="replace").splitlines()
        return [(p[0], p[1], p[2]) for p in (line.split(" ", 2) for line in lines) if len(p) == 3]

    def live(self) -> bool:
        return any(type_ == "ADDED" for type_, _, _ in self._events())

    def modified(self) -> Counter[str]:
        """Changes per object name (each status write of the operator is one)."""
        return Counter(name for type_, _, name in self._events() if type_ == "MODIFIED")

    def uids(self) -> set[str]:
        """Every object seen, deleted ones included."""
        return {uid for _, uid, _ in self._events()}

    def stop(self) -> None:
        self.process.stop(grace=2.0)
