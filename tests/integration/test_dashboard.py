"""`kubectl celery dashboard` in a real headless Chromium (selenium), against the real
control plane with the operator and a real worker: the pages show what the API holds, the
operator's status changes appear without a reload, a page action changes the object, and
an action the user's RBAC forbids shows the API server's refusal."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from celery_operator.api import PERIODIC_PLURAL, SCHEDULED_PLURAL, parse_time
from celery_operator.devstack import CeleryWorker, KubeEnv
from celery_operator.devstack.operatorproc import OperatorProcess

from ..unit.test_alert_rules import used_metric_names
from .conftest import Tasks, wait_for
from .test_rbac import apply, sa_kubeconfig

pytestmark = pytest.mark.integration

PLUGIN = Path(sys.executable).parent / "kubectl-celery"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SERVING = "serving on "


class Dashboard:
    """`kubectl-celery dashboard --no-browser` as a process; its URL from its first line."""

    def __init__(self, kubeconfig: Path, log: Path, *args: str) -> None:
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [str(PLUGIN), "dashboard", "--no-browser", "--kubeconfig", str(kubeconfig),
                 *args], stdout=out, stderr=subprocess.STDOUT, env={**os.environ})
        wait_for(lambda: SERVING in log.read_text() or self.process.poll() is not None, 30,
                 "the dashboard's address")
        text = log.read_text()
        assert SERVING in text, text
        self.url = text.partition(SERVING)[2].split()[0].rstrip("/")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def ns(kube: KubeEnv) -> str:
    name = f"dash-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", name)
    return name


@pytest.fixture(scope="module")
def operator(kube: KubeEnv, ns: str, broker_url: str, backend_url: str,
             celery_worker: CeleryWorker, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(kube.kubeconfig, broker_url, backend_url,
                           workdir=tmp_path_factory.mktemp("dash-operator"),
                           extra_args=["--namespace", ns]).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def st(kube: KubeEnv, ns: str) -> Tasks:
    return Tasks(client.CustomObjectsApi(kube.api_client()), ns, SCHEDULED_PLURAL)


@pytest.fixture(scope="module")
def pt(kube: KubeEnv, ns: str) -> Tasks:
    return Tasks(client.CustomObjectsApi(kube.api_client()), ns, PERIODIC_PLURAL)


@pytest.fixture(scope="module")
def dashboard(kube: KubeEnv, operator: OperatorProcess, ns: str,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    # One namespace's view (-n, as a team would run it): the suite's other modules leave
    # tasks in the shared cluster that would crowd this module's out of the overview's
    # first rows ("due in the next hour").
    board = Dashboard(kube.kubeconfig, tmp_path_factory.mktemp("dash") / "log", "-n", ns)
    yield board
    board.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    yield driver
    driver.quit()


def shows(browser: WebDriver, css: str, wanted: Callable[[str], bool], timeout: float,
          what: str) -> str:
    """Waits until the element's text satisfies `wanted`. Read in one script: the page
    may replace the element between a lookup and a read."""
    seen: list[str] = [""]

    def check() -> bool:
        seen[0] = text(browser, css)
        return wanted(seen[0])

    try:
        wait_for(check, timeout, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last text of {css}: {seen[0]!r}") from None
    return seen[0]


def text(browser: WebDriver, css: str) -> str:
    return str(browser.execute_script(
        "const found = document.querySelector(arguments[0]);"
        "return found ? found.innerText : '';", css))


def confirm(browser: WebDriver, label: str) -> None:
    """Clicks an action button, then Confirm in the dialog it opens."""
    clicked = browser.execute_script(  # one script: the page may re-render meanwhile
        "const b = [...document.querySelectorAll('button.action')]"
        ".find(b => b.textContent === arguments[0]); if (b) { b.click(); } return !!b;", label)
    assert clicked, f"no {label} button"
    wait_for(lambda: browser.find_element(By.ID, "confirm").is_displayed(), 5, "the dialog")
    browser.find_element(By.ID, "confirm-ok").click()


def test_pages_show_what_the_api_holds(browser: WebDriver, dashboard: Dashboard, st: Tasks,
                                       pt: Tasks, ns: str) -> None:
    pt.create("nightly", {"schedule": {"cron": "30 2 * * *", "timeZone": "Europe/Berlin"},
                          "task": {"name": "demo.add", "args": [1, 1]}})
    st.create("later", {"task": {"name": "demo.add", "args": [2, 3], "queue": "slow"},
                        "countdown": 1800})
    wait_for(lambda: len((pt.get("nightly").get("status") or {})
                         .get("nextScheduleTimes") or []) == 5, 30, "the engine's next times")
    st.wait_phase("later", "Scheduled", 30)

    browser.get(f"{dashboard.url}/periodictasks/{ns}/nightly")
    shows(browser, "#next-times", lambda t: len(t.splitlines()) == 5, 10, "five next times")
    shown = [parse_time(t) for t in browser.execute_script(
        "return [...document.querySelectorAll('#next-times time')].map(t => t.dateTime)")]
    engine = [parse_time(t) for t in pt.get("nightly")["status"]["nextScheduleTimes"]]
    assert shown == engine
    assert text(browser, "#schedule-words") == "every day at 02:30 (Europe/Berlin)"
    assert text(browser, "#time-zone") == "Europe/Berlin"
    assert text(browser, "#suspend-state") == "active"

    browser.get(f"{dashboard.url}/scheduledtasks?namespace={ns}&q=later")
    row = shows(browser, "table.tasks tbody tr", lambda t: "later" in t, 10, "the task's row")
    assert row.split()[:5] == [ns, "later", "demo.add", "slow", "Scheduled"]
    browser.get(f"{dashboard.url}/")
    counts = shows(browser, "#by-namespace", lambda t: ns in t, 10, "the namespace's counts")
    line = next(x for x in counts.splitlines() if x.startswith(ns))
    assert line.split() == [ns, "1", "1"]  # one Scheduled, total one
    assert "later" in text(browser, "#due-soon")  # due in 30 minutes


def test_a_status_change_by_the_operator_appears_without_a_reload(
    browser: WebDriver, dashboard: Dashboard, st: Tasks, ns: str
) -> None:
    st.create("soon", {"task": {"name": "demo.add", "args": [20, 22]}, "countdown": 8})
    browser.get(f"{dashboard.url}/scheduledtasks/{ns}/soon")
    shows(browser, "#facts", lambda t: re.search(r"Phase\s+Scheduled", t) is not None, 8,
          "Scheduled, before its due time")
    browser.execute_script("window.sameDocument = true")
    shows(browser, "#facts", lambda t: re.search(r"Phase\s+Succeeded", t) is not None, 60,
          "Succeeded, live")
    assert text(browser, "#result pre") == "42"
    assert browser.execute_script("return window.sameDocument") is True


def test_an_action_in_the_page_changes_the_object(browser: WebDriver, dashboard: Dashboard,
                                                  pt: Tasks, ns: str) -> None:
    pt.create("hourly", {"schedule": {"interval": "1h"},
                         "task": {"name": "demo.add", "args": [1, 2]}})
    browser.get(f"{dashboard.url}/periodictasks/{ns}/hourly")
    shows(browser, "#suspend-state", lambda t: t == "active", 10, "active")
    confirm(browser, "Suspend")
    shows(browser, "#flash", lambda t: t == "periodictask/hourly suspended", 15, "the answer")
    wait_for(lambda: pt.get("hourly")["spec"].get("suspend") is True, 10, "spec.suspend")
    shows(browser, "#suspend-state", lambda t: t == "suspended", 15, "suspended, live")


def test_an_action_rbac_forbids_shows_the_api_servers_refusal(
    kube: KubeEnv, browser: WebDriver, operator: OperatorProcess, pt: Tasks, ns: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    viewer = "dashboard-viewer"
    rules: list[dict[str, Any]] = [
        {"apiGroups": ["celeryoperator.dev"], "resources": [SCHEDULED_PLURAL, PERIODIC_PLURAL],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]}]
    apply(kube, [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": viewer, "namespace": ns}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": viewer, "namespace": ns}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": viewer, "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": viewer},
         "subjects": [{"kind": "ServiceAccount", "name": viewer, "namespace": ns}]}])
    pt.create("guarded", {"schedule": {"interval": "1h"},
                          "task": {"name": "demo.add", "args": [1, 2]}})
    path = tmp_path_factory.mktemp("dash-viewer")
    board = Dashboard(sa_kubeconfig(kube, ns, viewer, path / "config"), path / "log", "-n", ns)
    try:
        browser.get(f"{board.url}/periodictasks/{ns}/guarded")
        shows(browser, "#suspend-state", lambda t: t == "active", 15, "the viewer's page")
        confirm(browser, "Suspend")
        refusal = shows(browser, "#flash", lambda t: t.startswith("Error from server"), 15,
                        "the refusal")
        assert refusal.startswith("Error from server (Forbidden): periodictasks."
                                  'celeryoperator.dev "guarded" is forbidden: User '
                                  f'"system:serviceaccount:{ns}:{viewer}" cannot patch'), refusal
        assert pt.get("guarded")["spec"]["suspend"] is False  # unchanged (the default)
    finally:
        board.stop()


def test_the_grafana_dashboard_and_the_alerts_use_metrics_the_operator_exports(
    operator: OperatorProcess,
) -> None:
    """Names as a real /metrics exposes them: counters with _total, histograms with
    _bucket/_sum/_count (a labelled series exists before its first sample). No label
    value is a URL (broker and backend URLs carry passwords)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",)}
    families = list(text_string_to_metric_families(operator.metrics()))
    exported = {family.name + suffix for family in families
                for suffix in suffixes.get(family.type, ("",))}
    missing = used_metric_names() - exported
    assert not missing, f"not exported by the operator: {sorted(missing)}"
    values = {v for family in families if family.name.startswith("celery_operator_")
              for sample in family.samples for v in sample.labels.values()}
    assert not [v for v in values if "://" in v or "@" in v], values


def test_only_its_own_page_may_act_and_only_under_its_own_address(
    dashboard: Dashboard, pt: Tasks
) -> None:
    """Another web page the user visits cannot post an action (no token), nor reach it
    through a DNS name of its own (the Host check)."""
    pt.create("untouched", {"schedule": {"interval": "1h"},
                            "task": {"name": "demo.add", "args": [1, 2]}})
    body = json.dumps({"action": "suspend", "plural": PERIODIC_PLURAL,
                       "namespace": pt.namespace, "name": "untouched"}).encode()
    for headers in ({"Content-Type": "application/json"},
                    {"Content-Type": "application/json", "X-Dashboard-Token": "guess"}):
        request = urllib.request.Request(f"{dashboard.url}/action", body, headers)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403
    rebound = urllib.request.Request(f"{dashboard.url}/", headers={"Host": "evil.example"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(rebound, timeout=10)
    assert refused.value.code == 403
    assert pt.get("untouched")["spec"]["suspend"] is False
