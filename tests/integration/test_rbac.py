"""Least privilege, proved on the real API server.

The chart's RBAC is rendered with `helm template`, applied, and the operator runs as a
real process authenticated as the chart's ServiceAccount. Then:

* it is enough: in both watch modes a ScheduledTask succeeds, a PeriodicTask's runs
  succeed and old ones are deleted, Events are posted, two overlapping operators (a
  rolling update) resolve their write conflicts, and the log holds no 403;
* every verb is needed: taking any one verb of any rule away makes the operator log that
  exact denial and, where the operator cannot do its job without it, a check fail;
* nothing else is granted (`kubectl auth can-i`).

Identity: a TokenRequest token of the ServiceAccount (`kubectl create token`), the same
kind of credential a pod gets. A kubeconfig that impersonates (`as:`, `as-groups:`) is
not used: neither the `kubernetes` Python client nor kopf sends impersonation headers, so
an operator started with one quietly runs as the admin
(test_python_client_ignores_kubeconfig_impersonation keeps that reason checked).
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from celery_operator.api import (
    CELERYAPP_PLURAL,
    CLUSTER_CELERYAPP_PLURAL,
    GROUP,
    PERIODIC_PLURAL,
    SCHEDULED_PLURAL,
)
from celery_operator.api.names import PARENT_LABEL
from celery_operator.devstack import KubeEnv, find_binary
from celery_operator.devstack.operatorproc import OperatorProcess

from .conftest import Tasks, events_for, wait_for

pytestmark = pytest.mark.integration

CHART = Path(__file__).resolve().parents[2] / "charts" / "celery-operator"
Rule = tuple[str, str, str]  # (apiGroup, resource, verb)
DENIED = re.compile(r"forbidden|\(403\)", re.IGNORECASE)  # not a bare 403: times and ids hold it


# ---- rendering and applying the chart's identity --------------------------------------------


def render_identity(
    release_ns: str, fullname: str, watch: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The ServiceAccount and RBAC objects `helm template` renders for these values."""
    argv = [
        str(find_binary("helm")), "template", "rbac-test", str(CHART),
        "--namespace", release_ns,
        "--set", f"fullnameOverride={fullname}",
        # The URLs are irrelevant here; the schema requires one of the two ways to give them.
        "--set", "celery.brokerUrl=redis://unused:6379/0",
        "--set", "celery.resultBackend=redis://unused:6379/1",
        "--show-only", "templates/serviceaccount.yaml",
        "--show-only", "templates/rbac.yaml",
    ]
    for index, namespace in enumerate(watch):
        argv += ["--set", f"watch.namespaces[{index}]={namespace}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def rules_of(docs: Sequence[dict[str, Any]], kinds: Sequence[str] = ("Role", "ClusterRole")
             ) -> set[Rule]:
    """Every (apiGroup, resource, verb) the roles grant."""
    granted: set[Rule] = set()
    for doc in docs:
        if doc["kind"] in kinds:
            for rule in doc.get("rules") or []:
                assert not rule.get("resourceNames"), "rules here are not limited by name"
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            granted.add((group, resource, verb))
    return granted


def without(docs: Sequence[dict[str, Any]], removed: Rule) -> list[dict[str, Any]]:
    """The same objects with one verb on one resource taken out of every role."""
    result = []
    for doc in docs:
        doc = copy.deepcopy(doc)
        if doc["kind"] in ("Role", "ClusterRole"):
            kept = sorted(rules_of([doc]) - {removed})
            doc["rules"] = [
                {"apiGroups": [g], "resources": [r], "verbs": [v]} for g, r, v in kept
            ]
        result.append(doc)
    return result


def sa_kubeconfig(kube: KubeEnv, namespace: str, name: str, path: Path) -> Path:
    """A kubeconfig that authenticates with a fresh token of this ServiceAccount."""
    token = kube.kubectl(
        "create", "token", name, "-n", namespace, "--duration", "1h"
    ).stdout.strip()
    admin = json.loads(kube.kubectl("config", "view", "--minify", "--raw", "-o", "json").stdout)
    cluster = admin["clusters"][0]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": cluster["name"], "user": name}}],
        "current-context": name,
    }))
    return path


def apply(kube: KubeEnv, docs: Sequence[dict[str, Any]]) -> None:
    if docs:
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def cluster_scoped(docs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]


# ---- one operator setup under test -------------------------------------------------------


@dataclass
class Setup:
    """The operator(s) running as the chart's ServiceAccount, and the objects they serve."""

    kube: KubeEnv
    namespace: str  # where the test objects live
    tasks: Tasks
    periodic: Tasks
    core: client.CoreV1Api
    operators: list[OperatorProcess]
    timeout: float
    late_namespace: str | None = None  # watched, but created only by a check
    broker_url: str = ""  # the test broker and backend, for apps' Secrets
    backend_url: str = ""
    late_docs: list[dict[str, Any]] = field(default_factory=list)

    def log(self) -> str:
        return "\n".join(op.process.log_path.read_text(errors="replace") for op in self.operators)

    def denials(self) -> list[str]:
        return [line for line in self.log().splitlines() if DENIED.search(line)]

    def conflicts(self) -> float:
        total = 0.0
        for op in self.operators:
            for line in op.metrics().splitlines():
                if line.startswith("celery_operator_write_conflicts_total "):
                    total += float(line.split()[1])
        return total


def _status(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("status") or {}


def _ready(obj: dict[str, Any]) -> bool:
    meta, status = obj["metadata"], _status(obj)
    return status.get("observedGeneration") == meta.get("generation") and any(
        c["type"] == "Ready" and c["status"] == "True" and
        c.get("observedGeneration") == meta.get("generation")
        for c in status.get("conditions") or []
    )


def _children(setup: Setup, parent: str, namespace: str | None = None) -> list[dict[str, Any]]:
    api = setup.tasks.api
    items: list[dict[str, Any]] = api.list_namespaced_custom_object(
        GROUP, "v1alpha1", namespace or setup.namespace, SCHEDULED_PLURAL,
        label_selector=f"{PARENT_LABEL}={parent}",
    )["items"]
    return items


# ---- checks: what the operator must be able to do -------------------------------------------

ADD = {"task": {"name": "demo.add", "args": [2, 3]}}


def task_succeeds(setup: Setup) -> None:
    """A ScheduledTask created while the operator runs succeeds with its result."""
    name = f"add-{uuid.uuid4().hex[:6]}"
    setup.tasks.create(name, ADD)
    obj = wait_for(lambda: (
        o if _status(o := setup.tasks.get(name)).get("phase") == "Succeeded" else None),
            setup.timeout, f"{name} Succeeded")
    assert obj["status"]["result"] == 5
    assert _ready(obj)


def events_posted(setup: Setup) -> None:
    """A ScheduledTask whose task fails gets its Warning TaskFailed Event (a task that
    simply succeeds posts none by default)."""
    name = f"evt-{uuid.uuid4().hex[:6]}"
    setup.tasks.create(name, {"task": {"name": "demo.fail"}})
    wait_for(lambda: ("Warning", "TaskFailed") in {
        (t, r) for t, r, _ in events_for(setup.core, setup.namespace, name)},
        setup.timeout, f"Warning TaskFailed on {name}")


def finished_task_deleted(setup: Setup) -> None:
    """ttlSecondsAfterFinished: 0 deletes a ScheduledTask once it has finished."""
    name = f"ttl-{uuid.uuid4().hex[:6]}"
    setup.tasks.create(name, {**ADD, "ttlSecondsAfterFinished": 0})

    def gone() -> bool:
        try:
            setup.tasks.get(name)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, setup.timeout, f"{name} deleted after it finished")


def periodic_runs(setup: Setup) -> None:
    """A PeriodicTask creates runs that succeed, and its own status is Ready."""
    name = f"every-{uuid.uuid4().hex[:6]}"
    setup.periodic.create(name, {
        "schedule": {"interval": "2s"},
        "task": {"name": "demo.add", "args": [1, 1]},
        "successfulRunsHistoryLimit": 1,
    })
    wait_for(lambda: [
        c for c in _children(setup, name) if _status(c).get("phase") == "Succeeded"],
            setup.timeout, f"a run of {name} Succeeded")
    wait_for(lambda: (
        _ready(o := setup.periodic.get(name)) and _status(o).get("lastScheduleTime")),
            setup.timeout, f"{name} Ready with lastScheduleTime")


def replace_revokes(setup: Setup) -> None:
    """concurrencyPolicy Replace revokes the run still waiting when the next one is due.

    The runs go to a queue nobody consumes: they stay Queued without costing a worker."""
    name = f"replace-{uuid.uuid4().hex[:6]}"
    setup.periodic.create(name, {
        "schedule": {"interval": "2s"},
        "concurrencyPolicy": "Replace",
        "task": {"name": "demo.add", "args": [1, 1], "queue": "rbac-test-unconsumed"},
    })
    wait_for(lambda: [
        c for c in _children(setup, name) if (c.get("spec") or {}).get("revoke")],
            setup.timeout, f"a run of {name} revoked")


def late_namespace_served(setup: Setup) -> None:
    """A watched namespace created after the operator started is served without a restart."""
    assert setup.late_namespace is not None
    setup.kube.kubectl("create", "namespace", setup.late_namespace)
    apply(setup.kube, setup.late_docs)
    late = Tasks(setup.tasks.api, setup.late_namespace, SCHEDULED_PLURAL)
    late.create("late", ADD)
    wait_for(lambda: _status(late.get("late")).get("phase") == "Succeeded",
        setup.timeout, "a ScheduledTask in the late namespace Succeeded")


def conflicts_resolved(setup: Setup) -> None:
    """Two operators (a rolling update) race on the same objects: the loser of a
    conditional write re-reads the object and goes on."""
    assert len(setup.operators) == 2
    names = [f"race-{i}-{uuid.uuid4().hex[:4]}" for i in range(4)]
    for name in names:
        setup.tasks.create(name, ADD)
    periodic = [f"race-pt-{i}-{uuid.uuid4().hex[:4]}" for i in range(2)]
    for name in periodic:
        setup.periodic.create(name, {
            "schedule": {"interval": "1s"},
            "task": {"name": "demo.add", "args": [1, 1]},
            "successfulRunsHistoryLimit": 1,
        })
    for name in names:
        wait_for(lambda name=name: _status(setup.tasks.get(name)).get("phase") == "Succeeded",
            setup.timeout, f"{name} Succeeded")
    for name in periodic:
        wait_for(lambda name=name: int(_status(setup.periodic.get(name)).get("totalRuns") or 0)
                 >= 2,
            setup.timeout, f"{name} ran")
    assert setup.conflicts() > 0, "no write conflict happened: nothing was re-read"


def _make_app(setup: Setup) -> str:
    """A Secret with the test broker's URLs and a CeleryApp naming it."""
    name = f"app-{uuid.uuid4().hex[:6]}"
    setup.core.create_namespaced_secret(setup.namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name=name),
        string_data={"broker": setup.broker_url, "backend": setup.backend_url},
    ))
    setup.tasks.api.create_namespaced_custom_object(GROUP, "v1alpha1", setup.namespace,
                                                    CELERYAPP_PLURAL, {
        "apiVersion": f"{GROUP}/v1alpha1", "kind": "CeleryApp",
        "metadata": {"name": name, "namespace": setup.namespace},
        "spec": {"broker": {"secretKeyRef": {"name": name, "key": "broker"}},
                 "resultBackend": {"secretKeyRef": {"name": name, "key": "backend"}}},
    })
    return name


def app_task_succeeds(setup: Setup) -> None:
    """A task naming a CeleryApp created while the operator runs succeeds through it."""
    app = _make_app(setup)
    name = f"via-{app}"
    setup.tasks.create(name, {**ADD, "app": {"name": app}})
    obj = wait_for(lambda: (
        o if _status(o := setup.tasks.get(name)).get("phase") == "Succeeded" else None),
            setup.timeout, f"{name} Succeeded")
    assert obj["status"]["result"] == 5


def app_ready(setup: Setup) -> None:
    """A CeleryApp gets its status: Ready, with the workers on its broker."""
    app = _make_app(setup)
    wait_for(lambda: (
        _ready(o := setup.tasks.api.get_namespaced_custom_object(
            GROUP, "v1alpha1", setup.namespace, CELERYAPP_PLURAL, app))
        and _status(o).get("workers")), setup.timeout, f"{app} Ready with a worker")


# ---- the table: every rule of the chart, and the check that fails without it -------------------


@dataclass(frozen=True)
class Need:
    check: Callable[[Setup], None]
    why: str
    # False: the operator still does its job without the verb (it retries or falls back),
    # so the evidence is its denied request in the log (and what the `why` says is lost).
    functional: bool = True
    operators: int = 1
    # kopf's own request, made at start-up: the check waits for its denial first, so the
    # objects it creates come after kopf's initial listing (which would otherwise see them).
    at_start: bool = False


NEEDS: dict[Rule, Need] = {
    (GROUP, SCHEDULED_PLURAL, "list"): Need(task_succeeds, "kopf lists ScheduledTasks",
                                            at_start=True),
    (GROUP, SCHEDULED_PLURAL, "watch"): Need(task_succeeds, "kopf watches ScheduledTasks",
                                             at_start=True),
    (GROUP, SCHEDULED_PLURAL, "get"): Need(
        conflicts_resolved, "re-read after a lost conditional status write; without it the "
        "loser fails and waits for the watch", functional=False, operators=2),
    (GROUP, SCHEDULED_PLURAL, "create"): Need(periodic_runs, "runs of PeriodicTasks"),
    (GROUP, SCHEDULED_PLURAL, "patch"): Need(replace_revokes, "Replace sets spec.revoke on a run"),
    (GROUP, SCHEDULED_PLURAL, "delete"): Need(
        finished_task_deleted, "ttlSecondsAfterFinished and the run-history limits"),
    (GROUP, f"{SCHEDULED_PLURAL}/status", "patch"): Need(task_succeeds, "every status write"),
    (GROUP, PERIODIC_PLURAL, "list"): Need(periodic_runs, "kopf lists PeriodicTasks",
                                           at_start=True),
    (GROUP, PERIODIC_PLURAL, "watch"): Need(periodic_runs, "kopf watches PeriodicTasks",
                                            at_start=True),
    (GROUP, PERIODIC_PLURAL, "get"): Need(
        conflicts_resolved, "re-read after a lost conditional status write",
        functional=False, operators=2),
    (GROUP, f"{PERIODIC_PLURAL}/status", "patch"): Need(periodic_runs, "every status write"),
    ("", "events", "create"): Need(
        events_posted, "Warning Events (and with --task-events=all one per state change)"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"): Need(
        task_succeeds, "kopf lists CRDs to notice its resources appearing or changing after "
        "start-up; without it, CRDs installed after the operator are not served until a "
        "restart", functional=False, at_start=True),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"): Need(
        task_succeeds, "as for list: kopf's CRD watch", functional=False, at_start=True),
    ("", "namespaces", "list"): Need(
        task_succeeds, "namespaced mode only: kopf lists namespaces before serving any, "
        "retrying the 403 for about a minute", at_start=True),
    ("", "namespaces", "watch"): Need(
        late_namespace_served, "namespaced mode only: kopf notices a watched namespace "
        "created after start-up", at_start=True),
    (GROUP, CELERYAPP_PLURAL, "list"): Need(
        app_task_succeeds, "kopf and the app directory list the CeleryApps", at_start=True),
    (GROUP, CELERYAPP_PLURAL, "watch"): Need(
        app_task_succeeds, "kopf watches CeleryApps: an app created after start-up",
        at_start=True),
    (GROUP, f"{CELERYAPP_PLURAL}/status", "patch"): Need(
        app_ready, "the app's status (Ready, workers, queues, task counts)"),
    ("", "secrets", "get"): Need(
        app_task_succeeds, "the broker and backend URLs of an app, by name"),
}


# The rules of CeleryApps (issue 12): the app directory (controllers/apps.py) lists and
# watches the apps, reads the Secrets they name and the namespaces' labels, and writes the
# apps' status. Their rows in NEEDS (a check failing without each verb) come with it.
APP_RULES: set[Rule] = set()  # each has its row in NEEDS
CLUSTER_APP_RULES: set[Rule] = {
    (GROUP, CLUSTER_CELERYAPP_PLURAL, "list"),
    (GROUP, CLUSTER_CELERYAPP_PLURAL, "watch"),
    (GROUP, f"{CLUSTER_CELERYAPP_PLURAL}/status", "patch"),
    ("", "namespaces", "get"),
}


def denial_pattern(rule: Rule) -> re.Pattern[str]:
    """The API server's message for exactly this denied request (also JSON-escaped)."""
    group, resource, verb = rule
    where = rf' in API group \\?"{re.escape(group)}\\?"'
    return re.compile(rf'cannot {verb} resource \\?"{re.escape(resource)}\\?"{where}')


# ---- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def cleanup_cluster_scoped(kube: KubeEnv) -> Iterator[list[dict[str, Any]]]:
    """ClusterRoles and bindings a test applied; deleted afterwards (namespaces never are)."""
    applied: list[dict[str, Any]] = []
    yield applied
    if applied:
        kube.kubectl("delete", "--ignore-not-found", "-f", "-", input=yaml.safe_dump_all(applied),
                     check=False)


@pytest.fixture
def launch(
    kube: KubeEnv, broker_url: str, backend_url: str, tmp_path: Path, celery_worker: object,
) -> Iterator[Callable[..., list[OperatorProcess]]]:
    started: list[OperatorProcess] = []

    def start(kubeconfig: Path, namespaces: Sequence[str], count: int = 1
              ) -> list[OperatorProcess]:
        args = [a for ns in namespaces for a in ("--namespace", ns)]
        procs = []
        for _ in range(count):
            proc = OperatorProcess(kubeconfig, broker_url, backend_url, workdir=tmp_path,
                                   extra_args=[*args, "--claim-lease", "5"])
            started.append(proc)
            procs.append(proc.start())
        return procs

    yield start
    for proc in started:
        proc.stop()


def make_setup(kube: KubeEnv, namespace: str, operators: list[OperatorProcess],
               timeout: float, **kwargs: Any) -> Setup:
    custom = client.CustomObjectsApi(kube.api_client())
    return Setup(
        kube=kube, namespace=namespace, operators=operators, timeout=timeout,
        tasks=Tasks(custom, namespace, SCHEDULED_PLURAL),
        periodic=Tasks(custom, namespace, PERIODIC_PLURAL),
        core=client.CoreV1Api(kube.api_client()), **kwargs,
    )


# ---- it is enough ---------------------------------------------------------------------------


def history_kept(setup: Setup) -> None:
    """successfulRunsHistoryLimit: 1: runs succeed and all but the latest are deleted."""
    name = f"history-{uuid.uuid4().hex[:6]}"
    setup.periodic.create(name, {
        "schedule": {"interval": "2s"},
        "task": {"name": "demo.add", "args": [2, 3]},
        "successfulRunsHistoryLimit": 1,
    })
    seen: set[str] = set()

    def old_runs_deleted() -> bool:
        children = _children(setup, name)
        succeeded = {c["metadata"]["name"] for c in children
                     if _status(c).get("phase") == "Succeeded"}
        for child in children:
            if _status(child).get("phase") == "Succeeded":
                assert child["status"]["result"] == 5
        seen.update(succeeded)
        return len(seen) >= 3 and len(succeeded) <= 1 and bool(seen - {
            c["metadata"]["name"] for c in children})

    wait_for(old_runs_deleted, setup.timeout, f"runs of {name} succeed and old ones are deleted")
    owners = _children(setup, name)[0]["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"], o.get("controller")) for o in owners] == [
        ("PeriodicTask", name, True)]


@pytest.mark.parametrize("mode", ["namespaced", "cluster-wide"])
def test_chart_rbac_is_enough(
    mode: str, kube: KubeEnv, namespace: str, launch: Callable[..., list[OperatorProcess]],
    cleanup_cluster_scoped: list[dict[str, Any]], tmp_path: Path,
) -> None:
    # The operator lives in its own namespace, as after `helm install -n <ns>`.
    release_ns = f"{namespace}-op"
    kube.kubectl("create", "namespace", release_ns)
    fullname = f"co-{namespace}"
    docs = render_identity(release_ns, fullname,
                           watch=[namespace] if mode == "namespaced" else [])
    cleanup_cluster_scoped.extend(cluster_scoped(docs))
    apply(kube, docs)
    kubeconfig = sa_kubeconfig(kube, release_ns, fullname, tmp_path / "sa.kubeconfig")
    # Two replicas, as during a rolling update: conflicts happen and must be resolved.
    operators = launch(kubeconfig, [namespace] if mode == "namespaced" else [], count=2)
    setup = make_setup(kube, namespace, operators, timeout=30.0)

    task_succeeds(setup)
    events_posted(setup)
    finished_task_deleted(setup)
    replace_revokes(setup)
    history_kept(setup)
    conflicts_resolved(setup)
    assert setup.denials() == []


# ---- every verb is needed ---------------------------------------------------------------------


def test_table_covers_every_rendered_rule() -> None:
    namespaced = render_identity("ops", "co", watch=["a", "b"])
    cluster_wide = render_identity("ops", "co")
    assert rules_of(namespaced) == set(NEEDS) | APP_RULES | CLUSTER_APP_RULES, (
        "each rule needs a row in NEEDS (and no more)")
    # All namespaces: the same rules in a ClusterRole, less the namespace observation kopf
    # only does when it is given a list of namespaces.
    assert rules_of(cluster_wide, kinds=("ClusterRole",)) == (
        set(NEEDS) | APP_RULES | CLUSTER_APP_RULES) - {
        ("", "namespaces", "list"), ("", "namespaces", "watch")}
    assert not rules_of(cluster_wide, kinds=("Role",))
    # A list of namespaces grants nothing namespaced cluster-wide: only read-only observation
    # and the status of ClusterCeleryApps.
    assert rules_of(namespaced, kinds=("ClusterRole",)) == {
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
        ("", "namespaces", "list"), ("", "namespaces", "watch")} | CLUSTER_APP_RULES
    # ... and in its own namespace only `get` on the Secrets ClusterCeleryApps name.
    own = [d for d in namespaced if d["kind"] == "Role" and d["metadata"]["namespace"] == "ops"]
    assert rules_of(own) == {("", "secrets", "get")}


@pytest.mark.parametrize("rule", sorted(NEEDS), ids=lambda r: f"{r[2]}-{r[1]}")
def test_each_verb_is_needed(
    rule: Rule, kube: KubeEnv, namespace: str, launch: Callable[..., list[OperatorProcess]],
    cleanup_cluster_scoped: list[dict[str, Any]], tmp_path: Path, broker_url: str,
    backend_url: str,
) -> None:
    need = NEEDS[rule]
    late = f"{namespace}-late"
    fullname = f"co-{namespace}"
    docs = without(render_identity(namespace, fullname, watch=[namespace, late]), rule)
    cleanup_cluster_scoped.extend(cluster_scoped(docs))
    late_docs = [d for d in docs if d["metadata"].get("namespace") == late]
    apply(kube, [d for d in docs if d not in late_docs])
    kubeconfig = sa_kubeconfig(kube, namespace, fullname, tmp_path / "sa.kubeconfig")
    operators = launch(kubeconfig, [namespace, late], count=need.operators)
    # Short where the check is expected to fail; generous where it must pass (a slow but
    # working operator must not be mistaken for a broken one).
    timeout = 10.0 if need.functional else 20.0
    setup = make_setup(kube, namespace, operators, timeout=timeout, late_namespace=late,
                       late_docs=late_docs, broker_url=broker_url, backend_url=backend_url)

    denial = denial_pattern(rule)
    if need.at_start:
        wait_for(lambda: denial.search(setup.log()),
            10.0, f"kopf's denied request at start-up ({denial.pattern})")
    failure: AssertionError | None = None
    try:
        need.check(setup)
    except AssertionError as exc:
        failure = exc
    wait_for(lambda: denial.search(setup.log()),
        5.0, f"the operator's denied request ({denial.pattern})")
    if need.functional:
        assert failure is not None, f"{need.check.__name__} passed without {rule}"
    else:  # the operator copes (retries, falls back): the denial above is the evidence
        assert failure is None, f"{need.check.__name__} failed without {rule}: {failure}"


# ---- nothing else ------------------------------------------------------------------------------

MUST_NOT = [
    ("list", "secrets"),
    ("watch", "secrets"),
    ("create", "secrets"),
    ("create", "celeryapps.celeryoperator.dev"),
    ("update", "celeryapps.celeryoperator.dev"),
    ("patch", "celeryapps.celeryoperator.dev"),
    ("delete", "celeryapps.celeryoperator.dev"),
    ("update", "celeryapps.celeryoperator.dev/status"),
    ("create", "pods"),
    ("create", "pods/exec"),
    ("get", "configmaps"),
    ("update", "scheduledtasks.celeryoperator.dev"),
    ("create", "periodictasks.celeryoperator.dev"),
    ("patch", "periodictasks.celeryoperator.dev"),  # spec, labels, annotations come from Git
    ("delete", "periodictasks.celeryoperator.dev"),
    ("update", "periodictasks.celeryoperator.dev/status"),
    ("deletecollection", "scheduledtasks.celeryoperator.dev"),
    ("patch", "events"),
    ("create", "events.events.k8s.io"),
    ("create", "leases.coordination.k8s.io"),
    ("create", "kopfpeerings.kopf.dev"),
    ("create", "serviceaccounts/token"),
    ("impersonate", "serviceaccounts"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("escalate", "roles.rbac.authorization.k8s.io"),
]
MAY = [
    ("list", "scheduledtasks.celeryoperator.dev"),
    ("watch", "celeryapps.celeryoperator.dev"),
    ("patch", "celeryapps.celeryoperator.dev/status"),
    ("patch", "scheduledtasks.celeryoperator.dev/status"),
    ("patch", "periodictasks.celeryoperator.dev/status"),
    ("create", "events"),
]


CLUSTER_MAY = [
    ("list", "clusterceleryapps.celeryoperator.dev"),
    ("watch", "clusterceleryapps.celeryoperator.dev"),
    ("patch", "clusterceleryapps.celeryoperator.dev/status"),
    ("get", "namespaces"),
]
CLUSTER_MUST_NOT = [
    ("create", "clusterceleryapps.celeryoperator.dev"),
    ("patch", "clusterceleryapps.celeryoperator.dev"),
    ("delete", "clusterceleryapps.celeryoperator.dev"),
    ("patch", "namespaces"),
    ("list", "secrets"),
]


def can_i(kube: KubeEnv, sa: str, verb: str, resource: str, namespace: str | None) -> bool:
    user_ns = sa.split(":")[2]
    where = ["-n", namespace] if namespace else ["--all-namespaces"]
    resource, _, subresource = resource.partition("/")
    if subresource:
        where.append(f"--subresource={subresource}")
    proc = kube.kubectl(
        "auth", "can-i", verb, resource, *where, f"--as={sa}",
        "--as-group=system:serviceaccounts", f"--as-group=system:serviceaccounts:{user_ns}",
        "--as-group=system:authenticated", check=False)
    assert proc.stdout.strip() in ("yes", "no"), proc.stderr
    return proc.stdout.strip() == "yes"


@pytest.mark.parametrize("mode", ["namespaced", "cluster-wide"])
def test_service_account_can_do_nothing_else(
    mode: str, kube: KubeEnv, namespace: str, cleanup_cluster_scoped: list[dict[str, Any]],
) -> None:
    release_ns = f"{namespace}-op"
    kube.kubectl("create", "namespace", release_ns)
    fullname = f"co-{namespace}"
    docs = render_identity(release_ns, fullname,
                           watch=[namespace] if mode == "namespaced" else [])
    cleanup_cluster_scoped.extend(cluster_scoped(docs))
    apply(kube, docs)
    sa = f"system:serviceaccount:{release_ns}:{fullname}"
    for ns in (namespace, release_ns, "default"):
        for verb, resource in MUST_NOT:
            assert not can_i(kube, sa, verb, resource, ns), f"can {verb} {resource} in {ns}"
    for verb, resource in MAY:
        assert can_i(kube, sa, verb, resource, namespace), f"cannot {verb} {resource}"
    # The Secrets apps name: in the apps' namespaces, and (ClusterCeleryApps) its own.
    assert can_i(kube, sa, "get", "secrets", namespace)
    assert can_i(kube, sa, "get", "secrets", release_ns)
    for verb, resource in CLUSTER_MAY:
        assert can_i(kube, sa, verb, resource, None), f"cannot {verb} {resource}"
    for verb, resource in CLUSTER_MUST_NOT:
        assert not can_i(kube, sa, verb, resource, None), f"can {verb} {resource}"
    if mode == "namespaced":
        for verb, resource in MAY:  # not in its own namespace, nor in any other
            assert not can_i(kube, sa, verb, resource, release_ns)
            assert not can_i(kube, sa, verb, resource, None)
        assert not can_i(kube, sa, "get", "secrets", "default")
    else:
        assert not can_i(kube, sa, "list", "namespaces", None)


def test_python_client_ignores_kubeconfig_impersonation(
    kube: KubeEnv, namespace: str, tmp_path: Path
) -> None:
    """Why the tests use a token: an `as:` kubeconfig is not honoured by the clients the
    operator uses, so the operator would run with the admin's rights."""
    sa = f"system:serviceaccount:{namespace}:nobody"
    admin = json.loads(kube.kubectl("config", "view", "--minify", "--raw", "-o", "json").stdout)
    admin["users"][0]["user"].update({"as": sa, "as-groups": ["system:authenticated"]})
    path = tmp_path / "impersonating.kubeconfig"
    path.write_text(yaml.safe_dump(admin))
    # kubectl honours it: the identity has no rights at all.
    denied = subprocess.run(
        [str(kube.kubectl_path), "--kubeconfig", str(path), "get", "secrets", "-n", namespace],
        capture_output=True, text=True, timeout=60)
    assert denied.returncode != 0 and "forbidden" in denied.stderr
    # The Python client does not: it still is the admin.
    api = client.CoreV1Api(config.new_client_from_config(config_file=str(path)))
    api.list_namespaced_secret(namespace)
