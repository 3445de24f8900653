"""Apps' policies enforced at apply, on the real API server.

The chart's ValidatingAdmissionPolicies are rendered with the real `helm template` and
applied; then tasks are applied with kubectl exactly as a user would: a task name or queue
outside its app's policy, or a ClusterCeleryApp its namespace may not use, is refused with
a message naming the field, the app and the rule (the same text the operator's own check,
api.apps.policy_violation, produces). docs/install.md's "Several teams, several apps"
manifests are applied as written. The tenant roles are used with a real ServiceAccount
token.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from celery_operator.api.apps import AppPolicy, describe_app, policy_violation, selector_matches
from celery_operator.devstack import KubeEnv, find_binary

from .test_rbac import sa_kubeconfig

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "celery-operator"
INSTALL_DOC = ROOT / "docs" / "install.md"
RELEASE = "celery-operator"  # the release name docs/install.md uses
DENIED = re.compile(r"denied request: (.*)$", re.MULTILINE)
SYNC_TIMEOUT = 30.0


def render(template: str) -> list[dict[str, Any]]:
    argv = [
        str(find_binary("helm")), "template", RELEASE, str(CHART), "--namespace", RELEASE,
        "--set", "celery.brokerUrl=redis://unused:6379/0",
        "--set", "celery.resultBackend=redis://unused:6379/1",
        "--show-only", f"templates/{template}",
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def dump(docs: list[dict[str, Any]] | dict[str, Any]) -> str:
    return yaml.safe_dump_all(docs if isinstance(docs, list) else [docs])


@pytest.fixture(scope="module")
def admission(kube: KubeEnv) -> Iterator[list[dict[str, Any]]]:
    """The chart's admission policies and bindings, applied; removed after the module
    (they are cluster-wide, and `helm install` of the same release must find none)."""
    docs = render("admission.yaml")
    kube.kubectl("apply", "-f", "-", input=dump(docs))
    yield docs
    kube.kubectl("delete", "--ignore-not-found", "-f", "-", input=dump(docs), check=False)


@pytest.fixture
def cluster_objects(kube: KubeEnv) -> Iterator[list[dict[str, Any]]]:
    """Cluster-scoped objects a test created; deleted afterwards."""
    created: list[dict[str, Any]] = []
    yield created
    if created:
        kube.kubectl("delete", "--ignore-not-found", "-f", "-", input=dump(created), check=False)


def apply(kube: KubeEnv, docs: list[dict[str, Any]] | dict[str, Any], *, dry_run: bool = False
          ) -> subprocess.CompletedProcess[str]:
    args = ["apply", "-f", "-"] + (["--dry-run=server"] if dry_run else [])
    return kube.kubectl(*args, input=dump(docs), check=False)


def refusal(proc: subprocess.CompletedProcess[str]) -> str | None:
    """The policy's message when the API server refused the apply, None when it accepted."""
    if proc.returncode == 0:
        return None
    found = DENIED.search(proc.stderr)
    assert found, f"refused, but not by a policy: {proc.stderr}"
    return found.group(1).strip()


def refused(kube: KubeEnv, doc: dict[str, Any], expected: str | None = None, *,
            update: bool = False) -> str:
    """Apply `doc`, which must be refused (with `expected` when given): wait (bounded) until
    the policies, their params and the namespace's labels have reached the API server's
    informers (server-side dry runs), then apply for real and return the message."""
    deadline = time.monotonic() + SYNC_TIMEOUT
    while (seen := refusal(apply(kube, doc, dry_run=True))) is None or (
            expected is not None and seen != expected):
        assert time.monotonic() < deadline, f"{doc['metadata']['name']}: last seen {seen!r}"
        time.sleep(0.25)
    message = refusal(apply(kube, doc))
    assert message is not None
    if expected is not None:
        assert message == expected
    kind = doc["kind"].lower() + "s"
    ns = doc["metadata"]["namespace"]
    got = kube.kubectl("get", kind, doc["metadata"]["name"], "-n", ns, "-o",
                       "jsonpath={.spec.task.name}", check=False)
    if update:  # the stored object kept its task
        assert got.returncode == 0 and got.stdout != doc["spec"]["task"]["name"], got
    else:
        assert got.returncode != 0 and "NotFound" in got.stderr, "a refused object was stored"
    return message


def accepted(kube: KubeEnv, doc: dict[str, Any]) -> None:
    proc = apply(kube, doc)
    assert proc.returncode == 0, proc.stderr


def app(name: str, namespace: str | None, policy: dict[str, Any] | None = None,
        **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    body: dict[str, Any] = {
        "broker": {"secretKeyRef": {"name": "urls", "key": "broker-url"}},
        "resultBackend": {"secretKeyRef": {"name": "urls", "key": "result-backend"}},
        **spec,
    }
    if policy is not None:
        body["policy"] = policy
    return {"apiVersion": "celeryoperator.dev/v1alpha1",
            "kind": "CeleryApp" if namespace else "ClusterCeleryApp",
            "metadata": meta, "spec": body}


def task(name: str, namespace: str, task_name: str, *, queue: str | None = None,
         app_ref: dict[str, str] | None = None, periodic: bool = False) -> dict[str, Any]:
    call: dict[str, Any] = {"name": task_name}
    if queue is not None:
        call["queue"] = queue
    spec: dict[str, Any] = {"task": call}
    if app_ref is not None:
        spec["app"] = app_ref
    if periodic:
        spec["schedule"] = {"interval": "1h"}
    return {"apiVersion": "celeryoperator.dev/v1alpha1",
            "kind": "PeriodicTask" if periodic else "ScheduledTask",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


# ---- a CeleryApp's policy ---------------------------------------------------------------------


def test_task_name_and_queue_outside_the_policy_are_refused(
    kube: KubeEnv, namespace: str, admission: list[dict[str, Any]],
) -> None:
    policy = {"allowedTasks": ["reports.tasks.*", "demo.ad?"], "allowedQueues": ["reports-*"]}
    apply(kube, [app("default", namespace, policy, defaults={"queue": "reports-low"}),
                 app("strict", namespace, {"allowedTasks": []})])
    label = describe_app("CeleryApp", namespace, "default")
    model = AppPolicy(allowed_tasks=("reports.tasks.*", "demo.ad?"),
                      allowed_queues=("reports-*",))

    # No spec.app: the namespace's `default` app and its policy.
    message = refused(kube, task("bad-name", namespace, "billing.refund"))
    assert message == (f'spec.task.name: "billing.refund" is not allowed by {label} '
                       "(allowedTasks: reports.tasks.*, demo.ad?)")
    assert message == policy_violation(model, "billing.refund", "reports-low", label)
    # A glob is anchored, and '.' is literal.
    assert refused(kube, task("dot", namespace, "reportsXtasks.send")).startswith(
        'spec.task.name: "reportsXtasks.send" is not allowed')
    assert refused(kube, task("longer", namespace, "demo.adds")).startswith(
        'spec.task.name: "demo.adds" is not allowed')
    message = refused(kube, task("bad-queue", namespace, "reports.tasks.send", queue="billing"))
    assert message == (f'spec.task.queue: "billing" is not allowed by {label} '
                       "(allowedQueues: reports-*)")
    assert message == policy_violation(model, "reports.tasks.send", "billing", label)
    # PeriodicTasks are checked on their task the same way.
    assert refused(kube, task("p-bad", namespace, "billing.refund", periodic=True)) == (
        f'spec.task.name: "billing.refund" is not allowed by {label} '
        "(allowedTasks: reports.tasks.*, demo.ad?)")

    # Allowed: a matching name, and the queue the app's default gives (reports-low).
    accepted(kube, task("ok", namespace, "reports.tasks.send"))
    accepted(kube, task("ok-add", namespace, "demo.add", queue="reports-high"))
    accepted(kube, task("p-ok", namespace, "reports.tasks.daily", periodic=True))

    # A named app: only its own policy counts; [] allows nothing.
    strict = {"name": "strict"}
    assert refused(kube, task("s", namespace, "reports.tasks.send", app_ref=strict)) == (
        f'spec.task.name: "reports.tasks.send" is not allowed by '
        f"{describe_app('CeleryApp', namespace, 'strict')} (allowedTasks: [] allows none)")
    # An app that does not exist is the operator's to report (it Stalls the task).
    accepted(kube, task("m", namespace, "billing.refund", app_ref={"name": "missing"}))

    # Changing the task is checked again; other updates (the operator's spec.revoke) are
    # not, even once the policy no longer allows the task.
    changed = task("ok", namespace, "billing.refund")
    assert refused(kube, changed, update=True).startswith(
        'spec.task.name: "billing.refund" is not allowed')
    apply(kube, app("default", namespace, {"allowedTasks": []}))
    refused(kube, task("probe", namespace, "reports.tasks.send"))  # the tightening is seen
    kube.kubectl("patch", "scheduledtask", "ok", "-n", namespace, "--type", "merge",
                 "-p", '{"spec": {"revoke": {}}}')


def test_no_app_no_check(kube: KubeEnv, namespace: str, admission: list[dict[str, Any]]) -> None:
    """Without a `default` CeleryApp (e.g. the flags' broker), a task naming no app passes."""
    apply(kube, app("other", namespace, {"allowedTasks": []}))
    refused(kube, task("probe", namespace, "x.y", app_ref={"name": "other"}))
    accepted(kube, task("free", namespace, "anything.at.all", queue="any"))


# ---- a ClusterCeleryApp's namespaceSelector and policy -------------------------------------------


def test_cluster_app_selector_and_policy(
    kube: KubeEnv, namespace: str, admission: list[dict[str, Any]],
    cluster_objects: list[dict[str, Any]],
) -> None:
    suffix = uuid.uuid4().hex[:6]
    selectors: dict[str, dict[str, Any] | None] = {
        f"gold-{suffix}": {"matchExpressions": [{"key": "tier", "operator": "In",
                                                 "values": ["gold"]}]},
        f"not-test-{suffix}": {"matchExpressions": [{"key": "env", "operator": "NotIn",
                                                     "values": ["test"]}],
                               "matchLabels": {"team": "a"}},
        f"everyone-{suffix}": {},
        f"nobody-{suffix}": None,
    }
    apps = [app(name, None, {"allowedTasks": ["shared.*"]},
                **({"namespaceSelector": sel} if sel is not None else {}))
            for name, sel in selectors.items()]
    cluster_objects.extend(apps)
    apply(kube, apps)
    for labels in ({}, {"tier": "gold", "team": "a"}, {"tier": "silver", "team": "a",
                                                        "env": "test"}):
        kube.kubectl("label", "namespace", namespace, "tier-", "team-", "env-", check=False)
        if labels:
            kube.kubectl("label", "namespace", namespace,
                         *[f"{k}={v}" for k, v in labels.items()])
        ns_labels = {**labels, "kubernetes.io/metadata.name": namespace}
        for name, sel in selectors.items():
            ref = {"kind": "ClusterCeleryApp", "name": name}
            doc = task(f"t-{uuid.uuid4().hex[:6]}", namespace, "shared.job", app_ref=ref)
            label = describe_app("ClusterCeleryApp", None, name)
            if selector_matches(sel, ns_labels):
                # Wait until the label change is seen: the policy still judges the name.
                bad = task("bad", namespace, "other.job", app_ref=ref)
                refused(kube, bad, f'spec.task.name: "other.job" is not allowed by {label} '
                                   "(allowedTasks: shared.*)")
                accepted(kube, doc)
            else:
                why = ("its namespaceSelector does not select it" if sel is not None
                       else "it has no namespaceSelector")
                refused(kube, doc,
                        f'spec.app: {label} may not be used in namespace "{namespace}" ({why})')
    # Each selector admitted the namespace in the cases the model says (guards the table).
    assert [selector_matches(s, {"tier": "gold", "team": "a"}) for s in selectors.values()] == [
        True, True, True, False]


# ---- docs/install.md, literally ----------------------------------------------------------------


def doc_blocks() -> tuple[list[list[dict[str, Any]]], list[str]]:
    """The yaml and console blocks of the "Several teams, several apps" section."""
    text = INSTALL_DOC.read_text()
    section = text.split("## Several teams, several apps", 1)[1].split("\n## ", 1)[0]
    yamls = [[d for d in yaml.safe_load_all(b) if d]
             for b in re.findall(r"^```yaml\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)]
    consoles = re.findall(r"^```console\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    return yamls, consoles


def test_install_doc_apps_section_as_written(
    kube: KubeEnv, namespace: str, admission: list[dict[str, Any]],
    cluster_objects: list[dict[str, Any]],
) -> None:
    yamls, consoles = doc_blocks()
    assert len(yamls) == 5 and len(consoles) == 1
    namespace_and_secret, celery_app, good_task, bad_task, shared = yamls
    assert [d["kind"] for d in namespace_and_secret] == ["Namespace", "Secret"]
    cluster_objects.extend(d for d in shared if d["kind"] == "ClusterCeleryApp")
    team = celery_app[0]["metadata"]["namespace"]
    # Applied again by a re-run of the session: start from no tasks.
    kube.kubectl("delete", "scheduledtasks,periodictasks,celeryapps", "--all", "-n", team,
                 "--ignore-not-found", check=False)
    accepted(kube, namespace_and_secret)
    accepted(kube, celery_app)

    shown = DENIED.search(consoles[0])
    assert shown
    refused(kube, bad_task[0], shown.group(1).strip())
    # kubectl's whole line, as the doc shows it.
    assert consoles[0].strip() in apply(kube, bad_task[0], dry_run=True).stderr
    accepted(kube, good_task)
    accepted(kube, shared)  # team-reports carries the label the ClusterCeleryApp selects

    # The same PeriodicTask in a namespace without that label is refused, as the doc says.
    periodic = next(d for d in shared if d["kind"] == "PeriodicTask")
    elsewhere = {**periodic, "metadata": {**periodic["metadata"], "namespace": namespace}}
    assert refused(kube, elsewhere) == (
        f'spec.app: ClusterCeleryApp shared may not be used in namespace "{namespace}" '
        "(its namespaceSelector does not select it)")
    kube.kubectl("delete", "scheduledtasks,periodictasks,celeryapps", "--all", "-n", team)


# ---- tenant roles --------------------------------------------------------------------------------


def test_tenant_edit_role(
    kube: KubeEnv, namespace: str, admission: list[dict[str, Any]],
    cluster_objects: list[dict[str, Any]], tmp_path: Path,
) -> None:
    roles = render("tenant-roles.yaml")
    edit, view = (next(r for r in roles if r["metadata"]["name"] == f"{RELEASE}-{n}")
                  for n in ("edit", "view"))
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    for role in roles:
        assert all("secrets" not in r["resources"] for r in role["rules"])
    cluster_objects.extend(roles)
    apply(kube, roles)
    other = f"{namespace}-b"
    kube.kubectl("create", "namespace", other)
    # Tenant A: `edit` (here the chart's role itself: this control plane runs no
    # controller-manager to aggregate it) in its namespace only.
    kube.kubectl("create", "serviceaccount", "tenant", "-n", namespace)
    kube.kubectl("create", "rolebinding", "tenant-edit", "-n", namespace,
                 f"--clusterrole={RELEASE}-edit", f"--serviceaccount={namespace}:tenant")
    kube.kubectl("create", "secret", "generic", "urls", "-n", namespace,
                 "--from-literal=broker-url=redis://x:6379/0")
    kubeconfig = sa_kubeconfig(kube, namespace, "tenant", tmp_path / "tenant.kubeconfig")

    def as_tenant(*args: str, doc: dict[str, Any] | None = None
                  ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(kube.kubectl_path), "--kubeconfig", str(kubeconfig), *args],
            input=dump(doc) if doc else None, capture_output=True, text=True, timeout=60)

    # Its own apps and tasks: yes.
    mine = as_tenant("apply", "-f", "-", doc=app("default", namespace, {"allowedTasks": ["a.*"]}))
    assert mine.returncode == 0, mine.stderr
    ok = as_tenant("apply", "-f", "-", doc=task("t1", namespace, "a.run"))
    assert ok.returncode == 0, ok.stderr
    # Its own app's policy still binds it.
    bad = task("t2", namespace, "b.run")
    deadline = time.monotonic() + SYNC_TIMEOUT
    while (proc := as_tenant("apply", "--dry-run=server", "-f", "-", doc=bad)).returncode == 0:
        assert time.monotonic() < deadline, "never refused"
        time.sleep(0.25)
    assert "is not allowed by CeleryApp" in proc.stderr
    # Another namespace, any Secret, cluster apps: no.
    for args, doc in [
        (("apply", "-f", "-"), task("t3", other, "a.run")),
        (("apply", "-f", "-"), app("default", other)),
        (("apply", "-f", "-"), app(f"mine-{uuid.uuid4().hex[:6]}", None)),
        (("get", "secret", "urls", "-n", namespace), None),
        (("get", "secrets", "-n", namespace), None),
    ]:
        proc = as_tenant(*args, doc=doc)
        assert proc.returncode != 0 and "forbidden" in proc.stderr, (args, proc.stderr)


# ---- the app CRDs' own validation ----------------------------------------------------------------

BAD_APPS: list[tuple[dict[str, Any], str, str]] = [
    ({"broker": {"secretKeyRef": {"name": "Bad_Name", "key": "k"}}},
     "spec.broker.secretKeyRef.name", "must be a lowercase RFC 1123 subdomain"),
    ({"resultBackend": {"secretKeyRef": {"name": "urls", "key": "a/b"}}},
     "spec.resultBackend.secretKeyRef.key", "must be a Secret key"),
    ({"policy": {"allowedTasks": ["reports.[a]"]}},
     "spec.policy.allowedTasks[0]", "must be a glob of letters, digits"),
    ({"policy": {"allowedQueues": ["q (x)"]}},
     "spec.policy.allowedQueues[0]", "must be a glob of letters, digits"),
    ({"transportOptions": {"queueOrderStrategy": "fifo"}},
     "spec.transportOptions.queueOrderStrategy", "Unsupported value"),
    ({"defaults": {"timeZone": "Not a zone"}},
     "spec.defaults.timeZone", "must be an IANA time zone name"),
    ({"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
     "spec.namespaceSelector.matchExpressions[0].values", "must be non-empty for In"),
]


@pytest.mark.parametrize(("change", "path", "message"), BAD_APPS,
                         ids=[p for _, p, _ in BAD_APPS])
def test_bad_app_specs_are_refused_naming_the_field(
    kube: KubeEnv, namespace: str, change: dict[str, Any], path: str, message: str,
) -> None:
    from celery_operator.api import InvalidSpec, parse_celery_app_spec

    cluster = "namespaceSelector" in change
    doc = app(f"bad-{uuid.uuid4().hex[:6]}", None if cluster else namespace)
    doc["spec"].update(change)
    proc = apply(kube, doc)
    assert proc.returncode != 0
    assert f"{path}: " in proc.stderr and message in proc.stderr, proc.stderr
    # The operator's parser names the same field.
    with pytest.raises(InvalidSpec) as info:
        parse_celery_app_spec(doc["spec"], cluster=cluster)
    assert [e.path for e in info.value.errors] == [path]
