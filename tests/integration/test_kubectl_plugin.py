"""`kubectl celery`, run through the real kubectl binary (which finds the `kubectl-celery`
console script on PATH) against the real control plane, with the operator and a real
worker running: one namespace and one operator for the module."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from kubernetes import client

from celery_operator.api import PERIODIC_PLURAL, SCHEDULED_PLURAL, format_time, parse_time
from celery_operator.devstack import CeleryWorker, KubeEnv, free_port
from celery_operator.devstack.operatorproc import OperatorProcess
from celery_operator.kube.objects import PARENT_LABEL

from .conftest import Tasks, wait_for
from .test_rbac import apply, sa_kubeconfig

pytestmark = pytest.mark.integration

LOCAL_ZONE = "Asia/Kolkata"  # the user's zone in these tests: +05:30, no DST
PLUGIN = Path(sys.executable).parent / "kubectl-celery"


@pytest.fixture(scope="module")
def ns(kube: KubeEnv) -> str:
    name = f"plugin-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", name)
    return name


@pytest.fixture(scope="module")
def operator(kube: KubeEnv, ns: str, broker_url: str, backend_url: str,
             celery_worker: CeleryWorker, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(kube.kubeconfig, broker_url, backend_url,
                           workdir=tmp_path_factory.mktemp("plugin-operator"),
                           extra_args=["--namespace", ns, "--claim-lease", "5"]).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def user_kubeconfig(kube: KubeEnv, ns: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The admin kubeconfig with the test namespace as its context's namespace: as a user
    who ran `kubectl config set-context --current --namespace ...`."""
    path = tmp_path_factory.mktemp("plugin-kubeconfig") / "config"
    config = yaml.safe_load(kube.kubeconfig.read_text())
    current = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    current["context"]["namespace"] = ns
    # Another context, for --context: the same cluster and user, another namespace.
    config["contexts"].append({"name": "elsewhere",
                               "context": {**current["context"], "namespace": "elsewhere"}})
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def st(kube: KubeEnv, ns: str) -> Tasks:
    return Tasks(client.CustomObjectsApi(kube.api_client()), ns, SCHEDULED_PLURAL)


@pytest.fixture(scope="module")
def pt(kube: KubeEnv, ns: str) -> Tasks:
    return Tasks(client.CustomObjectsApi(kube.api_client()), ns, PERIODIC_PLURAL)


class Celery:
    """`kubectl celery ...` as a user runs it: $KUBECONFIG, the venv's bin on PATH."""

    def __init__(self, kube: KubeEnv, kubeconfig: Path) -> None:
        assert PLUGIN.exists(), f"{PLUGIN} is missing: `make venv` installs the console script"
        self.kubectl = str(kube.kubectl_path)
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "TZ": LOCAL_ZONE,
                    "PATH": f"{PLUGIN.parent}{os.pathsep}{os.environ.get('PATH', '')}"}

    def __call__(self, *args: str, code: int | None = 0, cwd: Path | None = None
                 ) -> subprocess.CompletedProcess[str]:
        """Runs it; asserts its exit status unless `code` is None."""
        proc = subprocess.run([self.kubectl, "celery", *args], env=self.env, cwd=cwd,
                              capture_output=True, text=True, timeout=60)
        assert code is None or proc.returncode == code, (proc.returncode, proc.stdout,
                                                         proc.stderr)
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)


@pytest.fixture(scope="module")
def celery(kube: KubeEnv, user_kubeconfig: Path, operator: OperatorProcess) -> Celery:
    return Celery(kube, user_kubeconfig)


def children(st: Tasks, parent: str) -> list[dict[str, Any]]:
    return [i for i in st.list() if (i["metadata"].get("labels") or {}).get(PARENT_LABEL)
            == parent]


def test_next_shows_the_fire_times_the_engine_computes(celery: Celery, pt: Tasks,
                                                        st: Tasks) -> None:
    pt.create("nightly-report", {"schedule": {"cron": "30 2 * * *", "timeZone": "Europe/Berlin"},
                                 "task": {"name": "demo.add", "args": [1, 1]}})
    wait_for(lambda: len(pt.get("nightly-report").get("status", {})
                         .get("nextScheduleTimes") or []) == 5, 20, "the operator's next times")
    engine = pt.get("nightly-report")["status"]["nextScheduleTimes"]
    shown = celery.json("next", "nightly-report")  # the context's namespace: no -n
    assert [t["utc"] for t in shown["next"]] == engine
    assert [t["local"] for t in shown["next"]] == [
        parse_time(t).astimezone(ZoneInfo(LOCAL_ZONE)).isoformat() for t in engine]

    lines = celery("next", "nightly-report", "--count", "3").stdout.splitlines()
    assert lines[0] == 'periodictask/nightly-report: cron "30 2 * * *" in Europe/Berlin'
    assert lines[1].split() == ["UTC", "LOCAL", f"({LOCAL_ZONE})", "Europe/Berlin", "IN"]
    for line, stamp in zip(lines[2:], engine[:3], strict=True):
        t = parse_time(stamp)
        india, berlin = t.astimezone(ZoneInfo(LOCAL_ZONE)), t.astimezone(ZoneInfo("Europe/Berlin"))
        assert re.fullmatch(
            rf"{stamp} +{india:%Y-%m-%d %H:%M:%S} IST +{berlin:%Y-%m-%d} 02:30:00 "
            rf"{berlin.tzname()} +in (?=\d)(\d+d)?(\d+h)?(\d+m)?(\d+s)?", line), line

    # maxRuns: two more runs, then none; a ScheduledTask: its due time.
    pt.create("twice", {"schedule": {"interval": "1h"}, "maxRuns": 2,
                        "task": {"name": "demo.add", "args": [1, 1]}})
    twice = celery("next", "twice").stdout.splitlines()
    assert len(twice) == 5 and twice[-1] == (
        "then no more runs: maxRuns is 2; 0 run(s) made so far")
    # Without NAME: the next run of each, soonest first (-A: every namespace).
    firsts = {"nightly-report": engine[0], "twice": celery.json("next", "twice")["next"][0]["utc"]}
    listed = [(i["name"], i["next"]["utc"]) for i in celery.json("next", "-A")["items"]
              if i["namespace"] == st.namespace]
    assert listed == sorted(firsts.items(), key=lambda item: item[1])
    st.create("later", {"task": {"name": "demo.add", "args": [1, 1]}, "countdown": 3600})
    due = st.wait_phase("later", "Scheduled", 20)["status"]["dueTime"]
    assert celery.json("next", "later")["due"]["utc"] == due


def test_run_starts_a_run_that_a_worker_runs_and_result_shows_its_value(
    celery: Celery, pt: Tasks, st: Tasks
) -> None:
    pt.create("yearly", {"schedule": {"cron": "0 0 1 1 *"},
                         "task": {"name": "demo.add", "args": [5, 5]}})
    before = datetime.now(UTC).replace(microsecond=0)
    out = celery("run", "yearly").stdout.strip()
    match = re.fullmatch(r"periodictask/yearly: run requested at (\S+); it runs as "
                         r"scheduledtask/(yearly-manual-\d+)", out)
    assert match, out
    assert before <= parse_time(match[1]) <= datetime.now(UTC)
    run = match[2]
    assert st.wait_phase(run, "Succeeded", 30)["status"]["result"] == 10
    assert [c["metadata"]["name"] for c in children(st, "yearly")] == [run]
    result = celery("result", "yearly")
    assert result.stdout == "10\n"
    assert result.stderr == f"periodictask/yearly: last finished run scheduledtask/{run}\n"


def test_run_and_result_of_a_schedule_that_keeps_its_runs_in_status(
    celery: Celery, pt: Tasks, st: Tasks
) -> None:
    pt.create("kept", {"schedule": {"cron": "0 0 1 1 *"}, "runObjects": "Never",
                       "task": {"name": "demo.add", "args": [6, 6]}})
    out = celery("run", "kept").stdout.strip()
    match = re.fullmatch(r"periodictask/kept: run requested at \S+; it runs as "
                         r"run (kept-manual-\d+) in its status.runs", out)
    assert match, out
    run = match[1]
    wait_for(lambda: ((pt.get("kept").get("status") or {}).get("runs") or {}).get(
        run, {}).get("status", {}).get("phase") == "Succeeded", 30, f"{run} Succeeded")
    assert children(st, "kept") == []
    result = celery("result", "kept")
    assert result.stdout == "12\n"
    assert result.stderr == (f"periodictask/kept: last finished run {run} "
                             "(kept in its status.runs)\n")


def test_run_on_a_suspended_schedule_says_so_and_runs_once(celery: Celery, pt: Tasks,
                                                            st: Tasks) -> None:
    pt.create("paused", {"schedule": {"interval": "1s"}, "suspend": True,
                         "task": {"name": "demo.add", "args": [2, 2]}})
    lines = celery("run", "paused").stdout.splitlines()
    assert lines[1] == ("periodictask/paused is suspended: this one run goes ahead, its "
                        "scheduled runs stay paused")
    wait_for(lambda: len(children(st, "paused")) == 1, 20, "the requested run")
    run = children(st, "paused")[0]["metadata"]["name"]
    assert st.wait_phase(run, "Succeeded", 30)["status"]["result"] == 4
    assert [c["metadata"]["name"] for c in children(st, "paused")] == [run]  # no scheduled run


def test_suspend_and_resume_set_spec_suspend(celery: Celery, pt: Tasks) -> None:
    pt.create("toggled", {"schedule": {"cron": "*/5 * * * *"},
                          "task": {"name": "demo.add", "args": [1, 1]}})
    assert celery("suspend", "toggled").stdout == "periodictask/toggled suspended\n"
    assert pt.get("toggled")["spec"]["suspend"] is True
    assert celery("suspend", "toggled").stdout == "periodictask/toggled is already suspended\n"
    assert celery("next", "toggled").stdout.splitlines()[1] == (
        "no further runs: suspended: no runs until it is resumed "
        "(kubectl celery resume toggled)")
    assert celery("resume", "pt/toggled").stdout == "periodictask/toggled resumed\n"
    assert pt.get("toggled")["spec"]["suspend"] is False
    assert len(celery.json("next", "toggled")["next"]) == 5


def test_revoke_cancels_a_task_and_refuses_a_finished_one(celery: Celery, st: Tasks) -> None:
    st.create("cancel-me", {"task": {"name": "demo.add", "args": [1, 1]}, "countdown": 3600})
    st.wait_phase("cancel-me", "Scheduled", 20)
    out = celery("revoke", "cancel-me", "--terminate", "--signal", "SIGKILL").stdout
    assert out == "scheduledtask/cancel-me revoke requested (terminate with SIGKILL)\n"
    assert st.get("cancel-me")["spec"]["revoke"] == {"terminate": True, "signal": "SIGKILL"}
    done = st.wait_phase("cancel-me", "Revoked", 20)["status"]
    again = celery("revoke", "cancel-me", code=1)
    assert again.stdout == ""
    assert again.stderr == (f"error: scheduledtask/cancel-me had already finished (Revoked at "
                            f"{done['completionTime']}): nothing to revoke\n")


def test_result_shows_a_value_a_cut_value_or_a_traceback(celery: Celery, st: Tasks) -> None:
    st.create("adds", {"task": {"name": "demo.add", "args": [2, 3]}})
    st.create("fails", {"task": {"name": "demo.fail", "args": ["no paper"]}})
    st.wait_phase("adds", "Succeeded", 30)
    assert celery("result", "adds").stdout == "5\n"
    error = st.wait_phase("fails", "Failed", 30)["status"]["error"]
    failed = celery("result", "fails")
    assert failed.stdout == error["traceback"].rstrip("\n") + "\n"
    assert failed.stdout.rstrip().endswith("ValueError: no paper")
    assert celery.json("result", "fails")["error"] == error
    st.create("big", {"task": {"name": "demo.big_result", "args": [40000]}})
    big = st.wait_phase("big", "Succeeded", 30)["status"]
    assert big["resultTruncated"] is True
    cut = celery("result", "big")
    assert cut.stdout == big["result"] + "\n"
    assert cut.stderr == ("scheduledtask/big: the result is cut to its first 32768 bytes of "
                          "JSON (as the operator keeps it)\n")
    st.create("not-yet", {"task": {"name": "demo.add", "args": [1, 1]}, "countdown": 3600})
    st.wait_phase("not-yet", "Scheduled", 20)
    assert celery("result", "not-yet", code=1).stderr == (
        "error: scheduledtask/not-yet is Scheduled: no result yet\n")


def test_history_lists_runs_with_outcome_and_lateness(celery: Celery, pt: Tasks,
                                                       st: Tasks) -> None:
    pt.create("thrice", {"schedule": {"interval": "2s"}, "maxRuns": 3,
                         "task": {"name": "demo.add", "args": [1, 2]}})
    wait_for(lambda: [c.get("status", {}).get("phase") for c in children(st, "thrice")]
             == ["Succeeded"] * 3, 40, "three successful runs")
    wait_for(lambda: pt.get("thrice")["status"].get("lastSuccessfulTime"), 10,
             "the parent's status")
    runs = sorted(children(st, "thrice"), key=lambda c: c["metadata"]["name"])
    lines = celery("history", "-n", st.namespace, "thrice").stdout.splitlines()
    assert lines[0].split() == ["RUN", "SCHEDULED", "OUTCOME", "LATE", "DURATION"]
    for line, run in zip(lines[1:4], runs, strict=True):
        scheduled = parse_time(run["metadata"]["annotations"]["celeryoperator.dev/scheduled-time"])
        started = parse_time(run["status"]["startTime"])
        name, when, outcome, late, took = line.split()
        assert (name, when, outcome) == (run["metadata"]["name"], format_time(scheduled),
                                         "Succeeded")
        assert late == _span((started - scheduled).total_seconds())
        assert took != "-"
    status = pt.get("thrice")["status"]
    assert lines[4] == (f"3 run(s) made, 0 missed, 0 skipped; last success: "
                        f"{status['lastSuccessfulTime']}")


def _span(seconds: float) -> str:
    """The plugin's duration text for a lateness (always under a minute here)."""
    millis = round(seconds * 1000)
    return f"{millis}ms" if abs(millis) < 1000 else f"{millis / 1000:g}s"


def test_unknown_names_and_usage_errors_exit_1_and_2(celery: Celery, ns: str) -> None:
    missing = celery("next", "nope", code=1)
    assert missing.stderr == (f'error: no PeriodicTask or ScheduledTask named "nope" in '
                              f'namespace "{ns}"\n')
    assert celery("suspend", "pt/nope", code=1).stderr == (
        'Error from server (NotFound): periodictasks.celeryoperator.dev "nope" not found\n')
    assert celery("next", "nightly-report", "--context", "elsewhere", code=1).stderr == (
        'error: no PeriodicTask or ScheduledTask named "nightly-report" in namespace '
        '"elsewhere"\n')
    assert "invalid choice: 'launch'" in celery("launch", "x", code=2).stderr
    assert "--signal is the signal --terminate sends" in celery(
        "revoke", "x", "--signal", "SIGKILL", code=2).stderr


def test_an_unreachable_api_server_is_one_line(celery: Celery, tmp_path: Path) -> None:
    port = free_port()  # nothing listens on it
    dead = tmp_path / "dead"
    dead.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "dead",
        "clusters": [{"name": "dead", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
        "users": [{"name": "dead", "user": {"token": "unused"}}],
        "contexts": [{"name": "dead", "context": {"cluster": "dead", "user": "dead"}}],
    }))
    refused = celery("--kubeconfig", str(dead), "next", "nightly-report", code=1)
    assert refused.stderr.startswith("error: cannot reach the Kubernetes API server: ")
    assert refused.stderr.endswith("Connection refused\n") and refused.stderr.count("\n") == 1


def test_rbac_refusal_prints_the_api_servers_message(
    celery: Celery, kube: KubeEnv, ns: str, pt: Tasks, tmp_path: Path
) -> None:
    """A user who may read PeriodicTasks but not change them."""
    apply(kube, [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "reader", "namespace": ns}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "reader", "namespace": ns},
         "rules": [{"apiGroups": ["celeryoperator.dev"], "verbs": ["get", "list"],
                    "resources": ["periodictasks", "scheduledtasks"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "reader", "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
         "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}]},
    ])
    pt.create("guarded", {"schedule": {"cron": "0 3 * * *"},
                          "task": {"name": "demo.add", "args": [1, 1]}})
    reader = sa_kubeconfig(kube, ns, "reader", tmp_path / "reader")
    as_reader = ("--kubeconfig", str(reader), "-n", ns)
    # RBAC reaches the authorizer's cache shortly after the apply.
    wait_for(lambda: celery("next", "guarded", *as_reader, code=None).returncode == 0, 10,
             "the reader's Role in effect")
    assert len(celery.json("next", "guarded", *as_reader)["next"]) == 5
    refused = celery("suspend", "guarded", *as_reader, code=1)
    assert refused.stderr == (
        'Error from server (Forbidden): periodictasks.celeryoperator.dev "guarded" is '
        f'forbidden: User "system:serviceaccount:{ns}:reader" cannot patch resource '
        f'"periodictasks" in API group "celeryoperator.dev" in the namespace "{ns}"\n')
    assert pt.get("guarded")["spec"].get("suspend") is not True


BEAT_APP = """
from celery import Celery
from celery.schedules import crontab

app = Celery("beatproj", set_as_current=False)
app.conf.timezone = "Europe/Berlin"
app.conf.beat_schedule = {
    "morning digest": {"task": "reports.digest", "schedule": crontab(minute=0, hour=7),
                       "options": {"queue": "reports"}},
    "every ten minutes": {"task": "demo.add", "schedule": 600.0, "args": (1, 2)},
}
"""


def test_import_is_celery_operator_import(celery: Celery, kube: KubeEnv, ns: str,
                                          tmp_path: Path) -> None:
    (tmp_path / "beatproj.py").write_text(BEAT_APP)
    argv = ["import", "beat", "--app", "beatproj:app", "-n", ns]
    plugin = celery(*argv, cwd=tmp_path)
    direct = subprocess.run([sys.executable, "-m", "celery_operator", *argv], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=True)
    assert (plugin.stdout, plugin.stderr) == (direct.stdout, direct.stderr)
    manifests = {d["metadata"]["name"]: d for d in yaml.safe_load_all(plugin.stdout)}
    assert len(manifests) == 2
    kube.kubectl("apply", "-f", "-", input=plugin.stdout)
    digest = next(name for name, d in manifests.items()
                  if d["spec"]["task"]["name"] == "reports.digest")
    assert celery.json("next", digest)["schedule"] == 'crontab "0 7 * * *" in Europe/Berlin'
