"""The app CRDs, spec.app and the chart's admission policy agree with api/apps.py."""

from __future__ import annotations

import pytest
from api_crd_schema import REPO_ROOT, crd, root_schema, rules, schema_at, version, walk

from celery_operator import api
from celery_operator.api import apps
from celery_operator.api import defaults as model_defaults

APP_KINDS = ("CeleryApp", "ClusterCeleryApp")
ADMISSION = REPO_ROOT / "charts" / "celery-operator" / "templates" / "admission.yaml"


def _cel(pattern: str) -> str:
    """The CEL rule carrying a Python pattern (backslashes doubled in CEL string literals)."""
    return f"self.matches('{pattern.replace(chr(92), chr(92) * 2)}')"


@pytest.mark.parametrize(
    ("kind", "plural", "short", "scope"),
    [
        ("CeleryApp", api.CELERYAPP_PLURAL, "capp", "Namespaced"),
        ("ClusterCeleryApp", api.CLUSTER_CELERYAPP_PLURAL, "ccapp", "Cluster"),
    ],
)
def test_names_scope_and_version(kind: str, plural: str, short: str, scope: str) -> None:
    spec = crd(kind)["spec"]
    assert crd(kind)["metadata"]["name"] == f"{plural}.{api.GROUP}"
    assert (spec["group"], spec["scope"]) == (api.GROUP, scope)
    assert spec["names"]["kind"] == kind
    assert spec["names"]["plural"] == plural
    assert spec["names"]["shortNames"] == [short]
    assert spec["names"]["categories"] == ["celery"]
    ver = version(kind)
    assert (ver["name"], ver["served"], ver["storage"]) == (api.VERSION, True, True)
    assert ver["subresources"] == {"status": {}}


def test_kinds_are_the_model_kinds() -> None:
    assert apps.APP_KINDS == (api.CELERYAPP_KIND, api.CLUSTER_CELERYAPP_KIND) == APP_KINDS
    for task_kind in ("ScheduledTask", "PeriodicTask"):
        assert schema_at(task_kind, "spec.app.kind")["enum"] == list(apps.APP_KINDS)
        assert schema_at(task_kind, "spec.app.kind")["default"] == model_defaults.APP_KIND
        assert schema_at(task_kind, "spec.app")["required"] == ["name"]


def test_spec_app_is_the_same_on_both_task_kinds() -> None:
    assert schema_at("ScheduledTask", "spec.app") == schema_at("PeriodicTask", "spec.app")


def test_only_the_cluster_kind_has_a_namespace_selector() -> None:
    cluster = schema_at("ClusterCeleryApp", "spec")
    namespaced = schema_at("CeleryApp", "spec")
    assert set(cluster["properties"]) - set(namespaced["properties"]) == {"namespaceSelector"}
    for field in ("transportOptions", "defaults", "policy"):
        assert cluster["properties"][field] == namespaced["properties"][field]
    assert root_schema("CeleryApp")["properties"]["status"] == (
        root_schema("ClusterCeleryApp")["properties"]["status"]
    )


def test_patterns_and_limits_match_the_model() -> None:
    for task_kind in ("ScheduledTask", "PeriodicTask"):
        assert _cel(apps.DNS_SUBDOMAIN_PATTERN) in rules(task_kind, "spec.app.name")
        assert schema_at(task_kind, "spec.app.name")["maxLength"] == apps.DNS_SUBDOMAIN_MAX_LENGTH
    for side in ("broker", "resultBackend"):
        ref = f"spec.{side}.secretKeyRef"
        assert _cel(apps.DNS_SUBDOMAIN_PATTERN) in rules("CeleryApp", f"{ref}.name")
        assert schema_at("CeleryApp", f"{ref}.name")["maxLength"] == apps.DNS_SUBDOMAIN_MAX_LENGTH
        assert _cel(apps.SECRET_KEY_PATTERN) in rules("CeleryApp", f"{ref}.key")
        assert schema_at("CeleryApp", f"{ref}.key")["maxLength"] == apps.SECRET_KEY_MAX_LENGTH
        assert schema_at("CeleryApp", f"spec.{side}")["required"] == ["secretKeyRef"]
    for field, length in (
        ("allowedTasks", apps.TASK_GLOB_MAX_LENGTH),
        ("allowedQueues", apps.QUEUE_GLOB_MAX_LENGTH),
    ):
        assert schema_at("CeleryApp", f"spec.policy.{field}")["maxItems"] == apps.POLICY_ITEMS_MAX
        assert _cel(apps.GLOB_PATTERN) in rules("CeleryApp", f"spec.policy.{field}[]")
        assert schema_at("CeleryApp", f"spec.policy.{field}[]")["maxLength"] == length
    assert schema_at("CeleryApp", "spec.transportOptions.queueOrderStrategy")["enum"] == list(
        apps.QUEUE_ORDER_STRATEGIES
    )
    assert _cel(api.periodic.TIME_ZONE_PATTERN) in rules("CeleryApp", "spec.defaults.timeZone")
    assert schema_at("CeleryApp", "spec.defaults.queue")["maxLength"] == apps.QUEUE_MAX_LENGTH
    operators = "spec.namespaceSelector.matchExpressions[].operator"
    assert schema_at("ClusterCeleryApp", operators)["enum"] == list(apps.SELECTOR_OPERATORS)


def test_conditions_are_the_task_kinds_conditions() -> None:
    assert schema_at("CeleryApp", "status.conditions")["items"] == (
        schema_at("ScheduledTask", "status.conditions")["items"]
    )


@pytest.mark.parametrize("kind", APP_KINDS)
def test_cel_messages_in_the_conventions_voice(kind: str) -> None:
    for path, sub in walk(root_schema(kind)):
        for rule in sub.get("x-kubernetes-validations", []):
            assert rule["message"][0].islower() and not rule["message"].endswith("."), path


@pytest.mark.parametrize("kind", APP_KINDS)
def test_printer_columns(kind: str) -> None:
    columns = {c["name"]: c for c in version(kind)["additionalPrinterColumns"]}
    assert [n for n, c in columns.items() if not c.get("priority")] == ["Ready", "Workers", "Age"]
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Workers"]["jsonPath"] == ".status.workerCount"
    assert columns["Workers"]["type"] == "integer"
    # Never a URL (or a Secret name that could hint at one) in `kubectl get`.
    assert all("broker" not in c["jsonPath"] and "Backend" not in c["jsonPath"]
               for c in columns.values())


def test_admission_policy_translates_globs_like_the_model() -> None:
    text = ADMISSION.read_text()
    translation = "'^' + g.replace('.', '\\\\.').replace('*', '.*').replace('?', '.') + '$'"
    assert text.count(translation) == 4  # names and queues, for both kinds of app
    # The same replacements, in the same order, as glob_to_regex.
    assert apps.glob_to_regex("a.b*?") == "^" + "a.b*?".replace(".", "\\.").replace(
        "*", ".*").replace("?", ".") + "$"
    assert f"'{apps.CELERY_DEFAULT_QUEUE}'" in text
    assert f"params.metadata.name == '{apps.DEFAULT_APP_NAME}'" in text
