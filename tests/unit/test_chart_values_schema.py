"""values.schema.json rejects wrong values, naming the field; right values pass.

Runs the real `helm` binary (`helm template` and `helm lint`): each call takes a few
hundred milliseconds and needs no cluster.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from celery_operator.devstack import find_binary

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "celery-operator"
EXAMPLES = sorted((ROOT / "examples" / "values").glob("*.yaml"))
SECRET = {"celery": {"existingSecret": "celery-connection"}}


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(find_binary("helm")), *args], capture_output=True, text=True,
                          timeout=60)


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


# (case, values file content, the field the error must name)
BAD = [
    ("no Celery URLs at all", {}, "/celery/brokerUrl"),
    ("a Secret and plain URLs", merged(SECRET, {"celery": {"brokerUrl": "redis://r:6379/0"}}),
     "/celery/brokerUrl"),
    ("broker URL without result backend", {"celery": {"brokerUrl": "redis://r:6379/0"}},
     "/celery/resultBackend"),
    ("broker is neither Redis nor RabbitMQ", {"celery": {"brokerUrl": "sqs://r/",
                                                         "resultBackend": "redis://r:6379/1"}},
     "/celery/brokerUrl"),
    ("result database is not PostgreSQL", {"celery": {"brokerUrl": "amqp://r:5672//",
                                                      "resultBackend": "db+mysql://u@r/app"}},
     "/celery/resultBackend"),
    ("Secret name with capitals", {"celery": {"existingSecret": "Celery_URLs"}},
     "/celery/existingSecret"),
    ("empty Secret key", merged(SECRET, {"celery": {"existingSecretKeys": {"brokerUrl": ""}}}),
     "/celery/existingSecretKeys/brokerUrl"),
    ("replicaCount as a word", merged(SECRET, {"replicaCount": "two"}), "/replicaCount"),
    ("negative replicaCount", merged(SECRET, {"replicaCount": -1}), "/replicaCount"),
    ("a typo'd top-level key", merged(SECRET, {"replicas": 2}), "replicas"),
    ("namespaces as a string", merged(SECRET, {"watch": {"namespaces": "team-a"}}),
     "/watch/namespaces"),
    ("namespace that is no DNS label", merged(SECRET, {"watch": {"namespaces": ["Team_A"]}}),
     "/watch/namespaces/0"),
    ("the same namespace twice", merged(SECRET, {"watch": {"namespaces": ["a", "a"]}}),
     "/watch/namespaces"),
    ("log format yaml", merged(SECRET, {"operator": {"logFormat": "yaml"}}),
     "/operator/logFormat"),
    ("dispatch lead with a unit", merged(SECRET, {"operator": {"dispatchLeadSeconds": "2s"}}),
     "/operator/dispatchLeadSeconds"),
    ("zero claim lease", merged(SECRET, {"operator": {"claimLeaseSeconds": 0}}),
     "/operator/claimLeaseSeconds"),
    ("URLs overridden through extraEnv", merged(SECRET, {"operator": {"extraEnv": [
        {"name": "CELERY_BROKER_URL", "value": "redis://x"}]}}), "/operator/extraEnv/0/name"),
    ("metrics port out of range", merged(SECRET, {"metrics": {"port": 70000}}), "/metrics/port"),
    ("metrics enabled as a string", merged(SECRET, {"metrics": {"enabled": "yes"}}),
     "/metrics/enabled"),
    ("scrape interval without unit", merged(SECRET, {"metrics": {"serviceMonitor": {
        "interval": 30}}}), "/metrics/serviceMonitor/interval"),
    ("unknown pull policy", merged(SECRET, {"image": {"pullPolicy": "Sometimes"}}),
     "/image/pullPolicy"),
    ("digest that is a tag", merged(SECRET, {"image": {"digest": "latest"}}), "/image/digest"),
    ("privilege escalation", merged(SECRET, {"securityContext": {
        "allowPrivilegeEscalation": True}}), "/securityContext/allowPrivilegeEscalation"),
    ("running as root allowed", merged(SECRET, {"podSecurityContext": {"runAsNonRoot": False}}),
     "/podSecurityContext/runAsNonRoot"),
    ("budget as a word", merged(SECRET, {"podDisruptionBudget": {"enabled": True,
                                                                 "maxUnavailable": "half"}}),
     "/podDisruptionBudget/maxUnavailable"),
    ("rbac.create as a string", merged(SECRET, {"rbac": {"create": "true"}}), "/rbac/create"),
]


@pytest.mark.parametrize(("case", "values", "field"), BAD, ids=[c[0] for c in BAD])
def test_schema_rejects(case: str, values: dict[str, Any], field: str, tmp_path: Path) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    for command in (["template", "bad", str(CHART)], ["lint", str(CHART)]):
        proc = helm(*command, "-f", str(path))
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0, f"helm {command[0]} accepted {case}"
        assert "don't meet the specifications of the schema" in output, output
        assert field in output, f"the error does not name {field}:\n{output}"


def test_at_least_ten_wrong_values_files() -> None:
    assert len(BAD) >= 10


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_values_pass(example: Path) -> None:
    proc = helm("lint", str(CHART), "--strict", "-f", str(example))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert helm("template", "ok", str(CHART), "-f", str(example)).returncode == 0


@pytest.mark.parametrize(
    ("broker", "results"),
    [
        ("redis://r:6379/0", "rediss://:pw@r:6380/1"),
        ("amqp://u:pw@rabbit:5672/vhost", "db+postgresql://u:p%40ss@pg:5432/app"),
        ("amqps://u:pw@rabbit:5671//", "django-db+postgresql://u:pw@pg/app"),
        ("pyamqp://u:pw@rabbit//", "rpc://"),
    ],
)
def test_plain_urls_pass(broker: str, results: str) -> None:
    proc = helm("template", "ok", str(CHART), "--set-string", f"celery.brokerUrl={broker}",
                "--set-string", f"celery.resultBackend={results}")
    assert proc.returncode == 0, proc.stderr


def test_every_value_is_documented() -> None:
    """Each key in values.yaml has a comment line right above it (or is the only key of a
    commented block, like `type: RuntimeDefault` under `seccompProfile`)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    key = re.compile(r"^(\s*)([A-Za-z][\w.-]*):")
    undocumented = []
    for index, line in enumerate(lines):
        match = key.match(line)
        if not match:
            continue
        above = lines[index - 1].strip() if index else ""
        if above.startswith("#"):
            continue
        parent = lines[index - 1] if index else ""
        indent = len(match.group(1))
        sole_child = (
            key.match(parent) is not None
            and len(parent) - len(parent.lstrip()) < indent
            and lines[index - 2].strip().startswith("#")
            and not any(
                (m := key.match(following)) and len(m.group(1)) == indent
                for following in lines[index + 1:index + 3]
            )
        )
        if not sole_child:
            undocumented.append(f"{index + 1}: {line}")
    assert undocumented == []
