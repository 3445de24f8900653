"""Mistyped keys against the real API server: refused with the right field's name even when
the client does not ask for strict field validation (which would otherwise drop them)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from celery_operator.api import (
    API_VERSION,
    GROUP,
    PERIODIC_KIND,
    PERIODIC_PLURAL,
    SCHEDULED_KIND,
    SCHEDULED_PLURAL,
    VERSION,
    InvalidSpec,
    parse_periodic_task_spec,
    parse_scheduled_task_spec,
)
from celery_operator.api.slips import CRD_SLIPS, slip_type
from celery_operator.devstack import KubeEnv

pytestmark = pytest.mark.integration

TASK = {"name": "demo.add", "args": [1, 2]}
BASE: dict[str, dict[str, Any]] = {
    SCHEDULED_KIND: {"task": TASK},
    PERIODIC_KIND: {"schedule": {"crontab": {"minute": "0", "hour": "9"}}, "task": TASK},
}
PLURALS = {SCHEDULED_KIND: SCHEDULED_PLURAL, PERIODIC_KIND: PERIODIC_PLURAL}
PARSE = {SCHEDULED_KIND: parse_scheduled_task_spec, PERIODIC_KIND: parse_periodic_task_spec}
# A value of the type each slip is declared with (see SLIP_TYPES).
VALUES: dict[str, Any] = {"int-or-string": "1", "number": 1.5, "boolean": True,
                          "array": [1, "x"], "object": {"queue": "q"}}
SLIPS = [
    (kind, path, key, message)
    for kind, table in CRD_SLIPS.items()
    for path, slips in table.items()
    for key, message in slips.items()
]


def manifest(kind: str, path: str, key: str, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(BASE[kind])
    target = spec
    for part in path.split(".")[1:]:
        target = target[part]
    target[key] = value
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": "slip"}, "spec": spec}


def listed(kube: KubeEnv, namespace: str, kind: str) -> str:
    return str(kube.kubectl("get", "-n", namespace, PLURALS[kind], "-o", "name").stdout).strip()


@pytest.mark.parametrize(("kind", "path", "key", "message"), SLIPS,
                         ids=[f"{kind}-{path}.{key}" for kind, path, key, _ in SLIPS])
def test_a_python_client_without_strict_validation_is_refused_with_the_right_field(
    kube: KubeEnv, namespace: str, custom: client.CustomObjectsApi,
    kind: str, path: str, key: str, message: str,
) -> None:
    obj = manifest(kind, path, key, VALUES[slip_type(key)])
    # The client's default (no fieldValidation) would prune an undeclared key with a warning.
    with pytest.raises(ApiException) as info:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[kind], obj)
    assert info.value.status == 422
    assert f"{path}.{key}: Forbidden: {message}" in json.loads(info.value.body)["message"]
    # The model refuses the same key with the same words.
    with pytest.raises(InvalidSpec) as parsed:
        PARSE[kind](obj["spec"])
    assert [str(e) for e in parsed.value.errors] == [f"{path}.{key}: Forbidden: {message}"]
    assert listed(kube, namespace, kind) == ""


@pytest.mark.parametrize(
    ("kind", "path", "key", "value"),
    [
        (PERIODIC_KIND, "spec.schedule.crontab", "day_of_week", "1"),
        (PERIODIC_KIND, "spec.schedule.crontab", "month_of_year", 6),
        (PERIODIC_KIND, "spec", "max_runs", 1),
        (SCHEDULED_KIND, "spec.task", "routing_key", "reports"),
    ],
)
def test_server_side_apply_and_ignored_validation_are_refused_too(
    kube: KubeEnv, namespace: str, custom: client.CustomObjectsApi,
    kind: str, path: str, key: str, value: Any,
) -> None:
    obj = manifest(kind, path, key, value)
    message = CRD_SLIPS[kind][path][key]
    expected = f"{path}.{key}: Forbidden: {message}"
    proc = kube.kubectl("apply", "--server-side", "-n", namespace, "-f", "-",
                        input=json.dumps(obj), check=False)
    assert proc.returncode != 0, proc.stdout
    assert expected in proc.stderr
    # Even a client that explicitly asks the server to ignore unknown fields.
    with pytest.raises(ApiException) as info:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURALS[kind], obj, field_validation="Ignore"
        )
    assert expected in json.loads(info.value.body)["message"]
    assert listed(kube, namespace, kind) == ""


def test_the_weekly_schedule_written_right_is_stored_as_written(
    namespace: str, custom: client.CustomObjectsApi
) -> None:
    obj = manifest(PERIODIC_KIND, "spec.schedule.crontab", "dayOfWeek", "1")
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PERIODIC_PLURAL, obj
    )
    assert parse_periodic_task_spec(created["spec"]).schedule.cron == "0 9 * * 1"
