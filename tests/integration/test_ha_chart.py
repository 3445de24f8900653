"""The chart's high-availability parts: two replicas across nodes, a disruption budget,
the leader-election flags and identity, and RBAC for its own Lease only (checked by the
real API server's authorizer)."""

from __future__ import annotations

import json
import uuid

import pytest

from celery_operator.cli import build_parser
from celery_operator.devstack import KubeEnv

from .test_chart import CHART, DEV, fresh_namespace, helm, render

pytestmark = pytest.mark.integration


def test_two_replicas_spread_across_nodes_with_a_budget_keeping_one() -> None:
    docs = render("ha", "ops", *DEV)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    selector = deployment["spec"]["selector"]["matchLabels"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["topologySpreadConstraints"] == [{
        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": selector}}]
    pdb = next(d for d in docs if d["kind"] == "PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": selector}}
    # Constraints of the user's replace the default one.
    own = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
           "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": selector}}
    docs = render("ha", "ops", *DEV, "--set-json", f"topologySpreadConstraints=[{json.dumps(own)}]")
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert pod["topologySpreadConstraints"] == [own]


def test_leader_election_flags_and_identity_reach_the_operator() -> None:
    docs = render("ha", "ops", *DEV, "--set", "leaderElection.leaseDurationSeconds=20")
    container = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"][
        "spec"]["containers"][0]
    parsed = build_parser().parse_args(["run", *container["args"]])
    assert (parsed.leader_election, parsed.lease_name, parsed.leader_lease_duration,
            parsed.leader_renew_deadline, parsed.leader_retry_period) == (
        True, "ha-celery-operator", 20.0, 10.0, 2.0)
    fields = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]
              if "fieldRef" in e.get("valueFrom", {})}
    assert fields == {"POD_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name",
                      "POD_UID": "metadata.uid"}
    off = render("ha", "ops", *DEV, "--set", "leaderElection.enabled=false")
    container = next(d for d in off if d["kind"] == "Deployment")["spec"]["template"][
        "spec"]["containers"][0]
    assert not build_parser().parse_args(["run", *container["args"]]).leader_election
    assert not [d for d in off if "leader-election" in d["metadata"]["name"]]


@pytest.mark.parametrize(("value", "field"), [
    ("leaderElection.retryPeriodSeconds=0", "/leaderElection/retryPeriodSeconds"),
    ("leaderElection.leaseName=Not_A_Name", "/leaderElection/leaseName"),
    ("spreadAcrossNodes=maybe", "/spreadAcrossNodes"),
])
def test_bad_ha_values_are_refused_naming_the_field(value: str, field: str) -> None:
    proc = helm(None, "template", "r", str(CHART), *DEV, "--set", value, check=False)
    assert proc.returncode != 0 and field in proc.stderr, proc.stderr


def test_the_chart_creates_the_lease_and_the_service_account_may_only_renew_it(
    kube: KubeEnv,
) -> None:
    namespace, other = fresh_namespace(kube), fresh_namespace(kube)
    release = f"r{uuid.uuid4().hex[:6]}"
    helm(kube, "install", release, str(CHART), "--namespace", namespace, *DEV)
    try:
        sa = f"system:serviceaccount:{namespace}:{release}-celery-operator"
        lease = f"{release}-celery-operator"

        def can(verb: str, resource: str, ns: str) -> bool:
            proc = kube.kubectl("auth", "can-i", verb, resource, "-n", ns, "--as", sa,
                                check=False)
            return proc.stdout.strip() == "yes"

        assert can("get", f"leases.coordination.k8s.io/{lease}", namespace)
        assert can("update", f"leases.coordination.k8s.io/{lease}", namespace)
        assert can("watch", f"leases.coordination.k8s.io/{lease}", namespace)
        assert not can("create", "leases.coordination.k8s.io", namespace)  # the chart's
        lease_obj = kube.kubectl("get", f"lease/{lease}", "-n", namespace, "-o", "name")
        assert lease_obj.stdout.strip() == f"lease.coordination.k8s.io/{lease}"
        assert not can("update", "leases.coordination.k8s.io/someone-elses", namespace)
        assert not can("delete", f"leases.coordination.k8s.io/{lease}", namespace)
        assert not can("list", "leases.coordination.k8s.io", namespace)
        assert not can("get", f"leases.coordination.k8s.io/{lease}", other)
        assert not can("create", "leases.coordination.k8s.io", other)
    finally:
        helm(kube, "uninstall", release, "--namespace", namespace, "--wait", "--timeout", "60s")
