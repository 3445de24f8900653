"""The Helm chart against the real API server (`make chart-test` runs this file).

The bare kube-apiserver has no controller-manager and no nodes: a Deployment never gets
pods, namespaces never finish deleting. So: objects are checked to exist, everything
rendered is validated by the server (`kubectl apply --dry-run=server`, admission
included), each test uses fresh namespaces, and docs/install.md is followed literally by
hack/chart/follow-install.sh with the operator started as a process under the chart's
ServiceAccount.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from celery_operator.devstack import KubeEnv, find_binary

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "celery-operator"
EXAMPLES = sorted((ROOT / "examples" / "values").glob("*.yaml"))
PASSWORD = "pw-" + "7c1f0e55d2"  # must show up nowhere but in the Secret
DEV = ["--set", f"celery.brokerUrl=redis://:{PASSWORD}@redis:6379/0",
       "--set", f"celery.resultBackend=redis://:{PASSWORD}@redis:6379/1"]
LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
          "app.kubernetes.io/component", "app.kubernetes.io/part-of",
          "app.kubernetes.io/managed-by", "helm.sh/chart")


def helm(kube: KubeEnv | None, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = [str(find_binary("helm")), *args]
    if kube is not None:
        argv += ["--kubeconfig", str(kube.kubeconfig)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def render(release: str, namespace: str, *args: str) -> list[dict[str, Any]]:
    out = helm(None, "template", release, str(CHART), "--namespace", namespace, *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def fresh_namespace(kube: KubeEnv, labels: dict[str, str] | None = None) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube.kubectl("create", "namespace", name)
    if labels:
        kube.kubectl("label", "namespace", name, *[f"{k}={v}" for k, v in labels.items()])
    return name


def ensure_namespaces(kube: KubeEnv, names: Sequence[str]) -> None:
    for name in names:
        manifest = yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": name}})
        kube.kubectl("apply", "-f", "-", input=manifest)


# ---- the chart as files -------------------------------------------------------------------


def test_chart_crds_are_the_repository_crds() -> None:
    """One source of truth: `make chart-crds` copies crds/ into the chart."""
    top = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert top and chart == top, "charts/celery-operator/crds differs: run `make chart-crds`"


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["kubeVersion"] == ">=1.27.0-0"
    notes = chart["annotations"]
    crds = yaml.safe_load(notes["artifacthub.io/crds"])
    names = {yaml.safe_load(p.read_text())["metadata"]["name"] for p in (CHART / "crds").iterdir()}
    assert {c["name"] for c in crds} == names
    assert all(link["url"].startswith("https://")
               for link in yaml.safe_load(notes["artifacthub.io/links"]))
    assert notes["artifacthub.io/license"] == "Apache-2.0"
    for example in yaml.safe_load(notes["artifacthub.io/crdsExamples"]):
        assert example["kind"] in {c["kind"] for c in crds}
    too_old = helm(None, "template", "old", str(CHART), *DEV, "--kube-version", "1.26.0",
                   check=False)
    assert too_old.returncode != 0 and "kubeVersion" in too_old.stderr, too_old.stderr


def test_templates_are_deterministic() -> None:
    forbidden = re.compile(r"\b(randAlphaNum|randAlpha|randNumeric|randAscii|randBytes|uuidv4|"
                           r"now|genCA|genPrivateKey|genSelfSignedCert|lookup)\b")
    for template in (CHART / "templates").iterdir():
        for match in forbidden.finditer(template.read_text()):
            raise AssertionError(f"{template.name} uses {match.group(0)}")
    for example in EXAMPLES:
        first = helm(None, "template", "r", str(CHART), "-f", str(example)).stdout
        assert first == helm(None, "template", "r", str(CHART), "-f", str(example)).stdout


def test_every_object_has_the_standard_labels() -> None:
    for args in (DEV, [*DEV, "--set", "watch.namespaces={a,b}", "--set",
                       "podDisruptionBudget.enabled=true", "--set",
                       "metrics.serviceMonitor.enabled=true", "--set",
                       "prometheusRule.enabled=true", "--set", "grafanaDashboard.enabled=true"]):
        docs = render("labels", "ops", *args)
        for doc in docs:
            labels = doc["metadata"].get("labels") or {}
            assert set(LABELS) <= set(labels), (doc["kind"], labels)
        pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]
        assert set(LABELS) <= set(pod["metadata"]["labels"])


def test_celery_urls_only_through_a_secret() -> None:
    docs = render("urls", "ops", *DEV)
    for doc in docs:
        if doc["kind"] != "Secret":
            assert PASSWORD not in json.dumps(doc), f"{doc['kind']} shows the password"
    container = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"][
        "spec"]["containers"][0]
    env = {e["name"]: e["valueFrom"].get("secretKeyRef") or e["valueFrom"]["fieldRef"]
           for e in container["env"]}
    assert env == {
        "POD_NAMESPACE": {"fieldPath": "metadata.namespace"},
        "POD_NAME": {"fieldPath": "metadata.name"},
        "POD_UID": {"fieldPath": "metadata.uid"},
        "CELERY_BROKER_URL": {"name": "urls-celery-operator-celery", "key": "broker-url"},
        "CELERY_RESULT_BACKEND": {"name": "urls-celery-operator-celery", "key": "result-backend"},
    }
    # An existing Secret with its own keys: the chart creates none.
    docs = render("urls", "ops", "--set", "celery.existingSecret=mine", "--set",
                  "celery.existingSecretKeys.brokerUrl=b", "--set",
                  "celery.existingSecretKeys.resultBackend=r")
    assert not [d for d in docs if d["kind"] == "Secret"]
    container = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"][
        "spec"]["containers"][0]
    assert [e["valueFrom"]["secretKeyRef"] for e in container["env"]
            if "secretKeyRef" in e["valueFrom"]] == [
        {"name": "mine", "key": "b"}, {"name": "mine", "key": "r"}]


def test_operator_flags() -> None:
    docs = render("flags", "ops", *DEV, "--set", "watch.namespaces={team-a,team-b}")
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == [
        "--log-format=json", "--metrics-port=8000", "--liveness=http://0.0.0.0:8080/healthz",
        "--dispatch-lead=2", "--claim-lease=15", "--poll-interval=1",
        "--run-outcome-wait=60", "--task-events=notable", "--lease-name=flags-celery-operator",
        "--leader-lease-duration=15", "--leader-renew-deadline=10", "--leader-retry-period=2",
        "--namespace=team-a", "--namespace=team-b",
    ]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http-metrics": 8000, "health": 8080}
    # The flags parse: the operator's own parser accepts them after `run`.
    from celery_operator.cli import build_parser

    parsed = build_parser().parse_args(["run", *container["args"]])
    assert parsed.namespace == ["team-a", "team-b"] and parsed.log_format == "json"
    assert parsed.run_outcome_wait == 60.0


# ---- the chart against the API server --------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_rendered_manifests_pass_server_side_dry_run(kube: KubeEnv, example: Path) -> None:
    values = yaml.safe_load(example.read_text()) or {}
    ensure_namespaces(kube, (values.get("watch") or {}).get("namespaces") or [])
    namespace = fresh_namespace(kube)
    docs = render("dryrun", namespace, "-f", str(example), "--include-crds")
    served = set(kube.kubectl("api-versions").stdout.split())
    skipped = [d for d in docs if d["apiVersion"] not in served]
    # The Prometheus Operator's CRDs are not installed on the test control plane.
    assert {d["kind"] for d in skipped} <= {"ServiceMonitor"}
    checked = [d for d in docs if d not in skipped]
    proc = kube.kubectl("apply", "--server-side", "--dry-run=server", "--force-conflicts",
                        "--field-manager=chart-test", "-f", "-",
                        input=yaml.safe_dump_all(checked))
    assert "Warning" not in proc.stderr, proc.stderr
    kinds = {d["kind"] for d in checked}
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount"} <= kinds


def test_pod_is_admitted_under_the_restricted_pod_security_standard(kube: KubeEnv) -> None:
    namespace = fresh_namespace(kube, {"pod-security.kubernetes.io/enforce": "restricted",
                                       "pod-security.kubernetes.io/enforce-version": "latest"})
    docs = render("pss", namespace, *DEV)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    template = deployment["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {**template["metadata"], "name": "pss", "namespace": namespace},
           "spec": template["spec"]}
    proc = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pod))
    assert "Warning" not in proc.stderr, proc.stderr
    # The Deployment draws no PodSecurity warning either.
    proc = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(deployment))
    assert "would violate PodSecurity" not in proc.stderr, proc.stderr
    # Control: the admission is really enforcing here.
    pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    denied = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pod),
                          check=False)
    assert denied.returncode != 0 and "violates PodSecurity" in denied.stderr, denied.stderr


# Events are records other components write about objects (the API server's ClusterIP
# repair loop sometimes reports on a Service); they expire by TTL and Helm never owns them.
NOT_OWNED = {"events", "events.events.k8s.io"}


def namespaced_objects(kube: KubeEnv, namespace: str) -> list[str]:
    """Every object of every listable namespaced kind in the namespace, Events aside."""
    kinds = kube.kubectl("api-resources", "--verbs=list", "--namespaced", "-o", "name").stdout
    found = kube.kubectl("get", ",".join(k for k in kinds.split() if k not in NOT_OWNED),
                         "-n", namespace, "-o", "name", "--ignore-not-found")
    return found.stdout.split()


@pytest.mark.parametrize("mode", ["cluster-wide", "namespaced"])
def test_install_then_uninstall_leaves_nothing_but_the_crds(kube: KubeEnv, mode: str) -> None:
    namespace = fresh_namespace(kube)
    watched = fresh_namespace(kube) if mode == "namespaced" else None
    release = f"r{uuid.uuid4().hex[:6]}"
    args = [*DEV, "--set", "podDisruptionBudget.enabled=true"]
    if watched:
        args += ["--set", f"watch.namespaces={{{watched}}}"]
    installed = helm(kube, "install", release, str(CHART), "--namespace", namespace, *args)
    assert PASSWORD not in installed.stdout + installed.stderr  # NOTES included

    expected = render(release, namespace, *args)
    refs = [(d.get("metadata", {}).get("namespace"), f"{d['kind'].lower()}/{d['metadata']['name']}")
            for d in expected]
    for ns, ref in refs:
        where = ["-n", ns] if ns else []
        kube.kubectl("wait", "--for=create", "--timeout=30s", ref, *where)
    assert {d["kind"] for d in expected} >= {
        "ServiceAccount", "Secret", "Deployment", "Service", "PodDisruptionBudget",
        "ClusterRole", "ClusterRoleBinding"} | ({"Role", "RoleBinding"} if watched else set())
    # The objects in the cluster are the rendered ones, labelled as such.
    selector = f"app.kubernetes.io/instance={release}"
    in_release_ns = kube.kubectl("get", "all,sa,secret,pdb,role,rolebinding,lease", "-n", namespace,
                                 "-l", selector, "-o", "name").stdout.split()
    assert len(in_release_ns) == sum(1 for ns, _ in refs if ns == namespace)

    helm(kube, "uninstall", release, "--namespace", namespace, "--wait", "--timeout", "60s")
    assert namespaced_objects(kube, namespace) == []
    if watched:
        assert namespaced_objects(kube, watched) == []
    cluster = kube.kubectl("get", "clusterroles,clusterrolebindings", "-l", selector, "-o",
                           "name").stdout.split()
    assert cluster == []
    crds = kube.kubectl("get", "crd", "-o", "name").stdout.split()
    assert {"customresourcedefinition.apiextensions.k8s.io/scheduledtasks.celeryoperator.dev",
            "customresourcedefinition.apiextensions.k8s.io/periodictasks.celeryoperator.dev"
            } <= set(crds)


def test_install_doc_followed_literally(
    kube: KubeEnv, broker_url: str, backend_url: str, celery_worker: object
) -> None:
    """docs/install.md from `helm install` to `result: 5`, by hack/chart/follow-install.sh."""
    path = os.pathsep.join([str(find_binary("helm").parent), str(find_binary("kubectl").parent),
                            str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "KUBECONFIG": str(kube.kubeconfig), "PATH": path,
           "CELERY_BROKER_URL": broker_url, "CELERY_RESULT_BACKEND": backend_url}
    proc = subprocess.run(["bash", str(ROOT / "hack" / "chart" / "follow-install.sh")],
                          env=env, capture_output=True, text=True, timeout=240)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "result: 5" in output
    assert "operator is live (as system:serviceaccount:celery-operator:celery-operator)" in output
    assert re.search(r"task [0-9a-f-]{36} succeeded on \S+", output), output
    assert "followed docs/install.md to the end" in output
    # The guide's uninstall leaves its Secret (`kubectl delete namespace` would remove it).
    assert namespaced_objects(kube, "celery-operator") == ["secret/celery-connection"]
