"""The chart's alert rules and Grafana dashboard: promtool checks and unit-tests the rules
(tests/unit/alert_rules/), every alert has its runbook, and both use only metric names
(the scrape in tests/integration/test_dashboard.py checks them against a real /metrics)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from celery_operator.devstack import find_binary

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "celery-operator"
RULES = CHART / "dashboards" / "alerts.yaml"
DASHBOARD = CHART / "dashboards" / "celery-operator.json"
RULE_TESTS = Path(__file__).parent / "alert_rules" / "alerts_test.yaml"
RUNBOOKS = ROOT / "docs" / "runbooks"
# Series made by Prometheus itself, not by the operator.
PROMETHEUS_SERIES = frozenset({"up"})
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?=[{\[])")
_OURS = re.compile(r"\bcelery_operator_\w+")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: hack/install-system-deps.sh installs prometheus"
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120)


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"]
            for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (label names in {} are not followed
    by { or [, and functions are followed by '(')."""
    without_labels = re.sub(r"\{[^}]*\}", "{}", expr)
    return set(_SELECTOR.findall(without_labels)) | set(_OURS.findall(without_labels))


def used_metric_names() -> set[str]:
    """Every series name the alerts and the dashboard use, Prometheus' own left out."""
    exprs = [rule["expr"] for rule in rules()] + dashboard_exprs()
    return {name for expr in exprs for name in metric_names(expr)} - PROMETHEUS_SERIES


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    checked = _promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_tested_and_has_a_runbook() -> None:
    tested = {case["alertname"] for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
              for case in test["alert_rule_test"] if case.get("exp_alerts")}
    alerts = [rule["alert"] for rule in rules()]
    assert sorted(tested) == sorted(alerts)
    for alert in alerts:
        runbook = RUNBOOKS / f"{alert}.md"
        assert runbook.is_file(), f"{runbook} is missing"
        assert runbook.read_text().startswith(f"# {alert}\n")


def test_metric_names_are_read_from_promql() -> None:
    assert metric_names('sum by (queue) (rate(celery_operator_finished_total{outcome="Failed",'
                        'job=~"$job"}[15m])) / absent(up{job="x"} == 1)') == {
        "celery_operator_finished_total", "up"}


def test_the_alerts_and_the_dashboard_use_only_operator_series() -> None:
    names = used_metric_names()
    assert names and all(name.startswith("celery_operator_") for name in names), names
    board = json.loads(DASHBOARD.read_text())
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "job"}
    assert all(t["datasource"]["uid"] == "${datasource}" for p in board["panels"]
               for t in p["targets"])


def _render(*values: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [str(find_binary("helm")), "template", "r", str(CHART), "--set",
         "celery.existingSecret=celery-connection", *(a for v in values for a in ("--set", v))],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def test_the_chart_makes_the_rule_and_the_dashboard_only_when_asked() -> None:
    assert not [d for d in _render() if d["kind"] == "PrometheusRule"
                or d["metadata"]["name"].endswith("grafana-dashboard")]
    docs = _render("prometheusRule.enabled=true", "grafanaDashboard.enabled=true",
                   "prometheusRule.additionalLabels.team=ops",
                   "prometheusRule.runbookBaseUrl=https://runbooks.example/celery/")
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    rendered = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert [r["expr"] for r in rendered] == [r["expr"] for r in rules()]
    for alert in rendered:
        assert alert["annotations"]["runbook_url"] == (
            f"https://runbooks.example/celery/{alert['alert']}.md")
        assert alert["labels"]["team"] == "ops" and alert["labels"]["severity"]
    board = next(d for d in docs if d["kind"] == "ConfigMap"
                 and d["metadata"]["name"] == "r-celery-operator-grafana-dashboard")
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(board["data"]["celery-operator.json"]) == json.loads(
        DASHBOARD.read_text())


def test_values_schema_refuses_a_runbook_base_that_is_not_a_url() -> None:
    proc = subprocess.run(
        [str(find_binary("helm")), "template", "r", str(CHART), "--set",
         "celery.existingSecret=x", "--set", "prometheusRule.runbookBaseUrl=docs/runbooks"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "runbookBaseUrl" in proc.stderr, proc.stderr
