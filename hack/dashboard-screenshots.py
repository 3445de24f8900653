#!/usr/bin/env python3
"""Refreshes the screenshots in docs/dashboard.md (docs/img/dashboard/*.png).

    PYTHONPATH=operator .venv/bin/python hack/dashboard-screenshots.py

Starts the embedded stack (etcd + kube-apiserver, Redis, a demo worker, the operator),
applies examples/ plus a few tasks that succeed, fail and wait, starts `kubectl celery
dashboard --no-browser` and photographs each page in headless Chromium (Debian's chromium
and chromium-driver, as the browser tests use).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from celery_operator.devstack import CeleryWorker, ControlPlane, RedisServer
from celery_operator.devstack.operatorproc import OperatorProcess

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img" / "dashboard"
PLUGIN = Path(sys.executable).parent / "kubectl-celery"
NS = "default"


def task(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "celeryoperator.dev/v1alpha1", "kind": kind,
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


OBJECTS = [
    task("ScheduledTask", "add-numbers", {"task": {"name": "demo.add", "args": [2, 40]}}),
    task("ScheduledTask", "monthly-invoices", {"task": {"name": "demo.fail", "args": [
        "invoice service answered 503"]}, "retry": {"limit": 1, "backoff": {"initialSeconds": 2}}}),
    task("ScheduledTask", "send-digest", {"task": {"name": "demo.echo_json", "queue":
                                                   "high_priority", "kwargs": {"to": "ops"}},
                                          "countdown": 1500}),
    task("ScheduledTask", "rebuild-index", {"task": {"name": "demo.sleep", "args": [1]},
                                            "countdown": 7200}),
    task("PeriodicTask", "heartbeat", {"schedule": {"interval": "10s"},
                                       "task": {"name": "demo.add", "args": [1, 1]}}),
]
PAGES = {
    "overview": "/",
    "scheduledtasks": "/scheduledtasks",
    "scheduledtask": f"/scheduledtasks/{NS}/monthly-invoices",
    "periodictasks": "/periodictasks",
    "periodictask": f"/periodictasks/{NS}/heartbeat",
}


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="dashboard-screenshots-"))
    kube = ControlPlane(work / "cp").start()
    redis = RedisServer(work / "redis").start()
    broker, backend = redis.db_url(0), redis.db_url(1)
    worker = CeleryWorker(broker, backend, queues=("celery", "high_priority"),
                          workdir=work).start()
    operator = OperatorProcess(kube.kubeconfig, broker, backend, workdir=work).start()
    dashboard = None
    try:
        kube.kubectl("apply", "-f", str(ROOT / "examples"))
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(OBJECTS))
        time.sleep(35)  # a few heartbeat runs, the failure and its retry
        log = work / "dashboard.log"
        with log.open("w") as out:
            dashboard = subprocess.Popen(
                [str(PLUGIN), "dashboard", "--no-browser", "--kubeconfig", str(kube.kubeconfig)],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "TZ": "UTC"})
        while "serving on " not in log.read_text():
            time.sleep(0.1)
        url = log.read_text().partition("serving on ")[2].split()[0].rstrip("/")
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--window-size=1280,900", "--hide-scrollbars"):
            options.add_argument(flag)
        browser = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
        try:
            OUT.mkdir(parents=True, exist_ok=True)
            for name, path in PAGES.items():
                browser.get(url + path)
                time.sleep(1.5)  # the event stream opens and the page settles
                browser.save_screenshot(str(OUT / f"{name}.png"))
                print(f"wrote {OUT / f'{name}.png'}")
        finally:
            browser.quit()
    finally:
        if dashboard is not None:
            dashboard.terminate()
            dashboard.wait(10)
        for part in (operator, worker, redis, kube):
            part.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
