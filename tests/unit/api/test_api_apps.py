"""CeleryApp model: spec parsing with field paths, spec.app, policy globs, selectors."""

from __future__ import annotations

import fnmatch
from typing import Any

import pytest
from api_crd_schema import with_defaults
from hypothesis import given
from hypothesis import strategies as st

from celery_operator.api import (
    AppDefaults,
    AppPolicy,
    AppRef,
    InvalidSpec,
    SecretKeyRef,
    parse_app_ref,
    parse_celery_app_spec,
    parse_periodic_task_spec,
    parse_scheduled_task_spec,
    policy_violation,
    render_periodic_task_spec,
    render_scheduled_task_spec,
    selector_matches,
)
from celery_operator.api.apps import (
    describe_app,
    effective_queue,
    glob_matches,
    glob_to_regex,
)

SPEC: dict[str, Any] = {
    "broker": {"secretKeyRef": {"name": "urls", "key": "broker-url"}},
    "resultBackend": {"secretKeyRef": {"name": "urls", "key": "result-backend"}},
}
LABEL = describe_app("CeleryApp", "team-a", "default")


def _errors(raw: Any, *, cluster: bool = False) -> list[str]:
    with pytest.raises(InvalidSpec) as info:
        parse_celery_app_spec(raw, cluster=cluster)
    return [str(e) for e in info.value.errors]


# ---- parsing ----------------------------------------------------------------------------------


def test_minimal_app() -> None:
    spec = parse_celery_app_spec(SPEC, cluster=False)
    assert spec.broker == SecretKeyRef("urls", "broker-url")
    assert spec.result_backend == SecretKeyRef("urls", "result-backend")
    assert spec.transport_options == {}
    assert spec.defaults == AppDefaults()
    assert spec.policy == AppPolicy(None, None)
    assert spec.namespace_selector is None


def test_full_cluster_app() -> None:
    raw = {
        **SPEC,
        "transportOptions": {"visibilityTimeout": 3600, "queueOrderStrategy": "priority"},
        "defaults": {"queue": "reports", "timeZone": "Europe/Berlin", "expires": 60},
        "policy": {"allowedTasks": ["reports.tasks.*"], "allowedQueues": []},
        "namespaceSelector": {"matchLabels": {"team": "a"}},
    }
    spec = parse_celery_app_spec(with_defaults("ClusterCeleryApp", raw), cluster=True)
    assert spec.transport_options == {
        "visibility_timeout": 3600,
        "queue_order_strategy": "priority",
    }
    assert spec.defaults == AppDefaults(queue="reports", time_zone="Europe/Berlin", expires=60)
    assert spec.policy == AppPolicy(allowed_tasks=("reports.tasks.*",), allowed_queues=())
    assert spec.namespace_selector == {"matchLabels": {"team": "a"}}


def test_every_problem_is_reported_with_its_path() -> None:
    raw = {
        "broker": {"secretKeyRef": {"name": "Bad_Name", "key": "a/b"}},
        "transportOptions": {"visibilityTimeout": 0, "queueOrderStrategy": "fifo"},
        "defaults": {"queue": "", "timeZone": "Mars/Olympus", "expires": -1},
        "policy": {"allowedTasks": ["reports.[a]"], "allowedQueues": "q"},
        "namespaceSelector": {"matchLabels": {}},
    }
    assert _errors(raw) == [
        'spec.broker.secretKeyRef.name: Invalid value: "Bad_Name": must be a lowercase RFC 1123 '
        "subdomain: lowercase letters, digits, '-' and '.', starting and ending with a letter "
        "or digit",
        "spec.broker.secretKeyRef.key: Invalid value: \"a/b\": must be a Secret key: letters, "
        "digits, '-', '_' and '.'",
        "spec.resultBackend: Required value",
        "spec.transportOptions.visibilityTimeout: Invalid value: 0: must be greater than or "
        "equal to 1",
        'spec.transportOptions.queueOrderStrategy: Unsupported value: "fifo": supported values: '
        '"priority", "round_robin", "sorted"',
        "spec.defaults.queue: Invalid value: must be 1 to 255 characters",
        'spec.defaults.timeZone: unknown time zone "Mars/Olympus"',
        "spec.defaults.expires: Invalid value: -1: must be greater than or equal to 0",
        "spec.policy.allowedTasks[0]: Invalid value: \"reports.[a]\": must be a glob of letters, "
        "digits, '_', '.', ':', '-', '*' and '?'",
        "spec.policy.allowedQueues: must be an array, not string",
        "spec.namespaceSelector: Forbidden: only a ClusterCeleryApp has a namespaceSelector",
    ]


def test_not_an_object() -> None:
    assert _errors(["x"]) == ["spec: must be an object, not array"]


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        (
            {"matchExpressions": [{"key": "a", "operator": "In"}]},
            "spec.namespaceSelector.matchExpressions[0].values: Required value: must be "
            "non-empty for In",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            "spec.namespaceSelector.matchExpressions[0].values: Forbidden: must be empty for "
            "Exists",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]},
            'spec.namespaceSelector.matchExpressions[0].operator: Unsupported value: "Gt": '
            'supported values: "In", "NotIn", "Exists", "DoesNotExist"',
        ),
        ({"matchLabels": {"a": 1}}, "spec.namespaceSelector.matchLabels.a: must be a string"),
        ({"matchExpressions": ["x"]}, "spec.namespaceSelector.matchExpressions[0]: must be an "
         "object, not string"),
    ],
)
def test_bad_selectors(selector: dict[str, Any], message: str) -> None:
    assert _errors({**SPEC, "namespaceSelector": selector}, cluster=True) == [message]


def test_too_many_and_too_long_globs() -> None:
    assert _errors({**SPEC, "policy": {"allowedTasks": ["a"] * 65}}) == [
        "spec.policy.allowedTasks: Too many: 65: must have at most 64 items"
    ]
    assert _errors({**SPEC, "policy": {"allowedTasks": ["a" * 201]}}) == [
        "spec.policy.allowedTasks[0]: Too long: may not be more than 200 bytes"
    ]


# ---- spec.app ---------------------------------------------------------------------------------


def test_app_ref_defaults_to_celery_app() -> None:
    assert parse_app_ref({"name": "reports"}) == AppRef("CeleryApp", "reports")
    assert parse_app_ref({"kind": "ClusterCeleryApp", "name": "shared"}) == AppRef(
        "ClusterCeleryApp", "shared"
    )
    assert parse_app_ref(None) is None


def test_bad_app_refs() -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_app_ref({"kind": "Issuer", "name": "X"})
    assert [str(e) for e in info.value.errors] == [
        'spec.app.kind: Unsupported value: "Issuer": supported values: "CeleryApp", '
        '"ClusterCeleryApp"',
        'spec.app.name: Invalid value: "X": must be a lowercase RFC 1123 subdomain: lowercase '
        "letters, digits, '-' and '.', starting and ending with a letter or digit",
    ]
    with pytest.raises(InvalidSpec, match=r"^spec\.app\.name: Required value$"):
        parse_app_ref({})
    with pytest.raises(InvalidSpec, match=r"^spec\.app: must be an object, not string$"):
        parse_app_ref("reports")


def test_tasks_carry_spec_app_both_ways() -> None:
    raw = {"task": {"name": "demo.add"}, "app": {"name": "reports"}}
    scheduled = parse_scheduled_task_spec(with_defaults("ScheduledTask", raw))
    assert scheduled.app == AppRef("CeleryApp", "reports")
    assert render_scheduled_task_spec(scheduled)["app"] == {"kind": "CeleryApp", "name": "reports"}
    assert parse_scheduled_task_spec({"task": {"name": "demo.add"}}).app is None
    periodic_raw = {
        "schedule": {"interval": "1m"},
        "task": {"name": "demo.add"},
        "app": {"kind": "ClusterCeleryApp", "name": "shared"},
    }
    periodic = parse_periodic_task_spec(with_defaults("PeriodicTask", periodic_raw))
    assert periodic.app == AppRef("ClusterCeleryApp", "shared")
    assert parse_periodic_task_spec(render_periodic_task_spec(periodic)) == periodic
    with pytest.raises(InvalidSpec, match=r"spec\.app\.name: Required value"):
        parse_scheduled_task_spec({"task": {"name": "demo.add"}, "app": {"kind": "CeleryApp"}})


# ---- policy -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("glob", "value", "matches"),
    [
        ("reports.tasks.*", "reports.tasks.send", True),
        ("reports.tasks.*", "reports.tasks.sub.send", True),  # * crosses dots
        ("reports.tasks.*", "reports.tasks", False),
        ("reports.tasks.*", "reportsXtasks.send", False),  # '.' is literal
        ("reports.tasks.*", "other.reports.tasks.send", False),  # anchored at the start
        ("demo.ad?", "demo.add", True),
        ("demo.ad?", "demo.adds", False),  # anchored at the end
        ("demo.ad?", "demo.ad", False),
        ("*", "anything:at.all", True),
        ("a-b_c:d", "a-b_c:d", True),
    ],
)
def test_glob_matching(glob: str, value: str, matches: bool) -> None:
    assert glob_matches(glob, value) is matches


_ALPHABET = "ab._:-"


@given(
    st.text(alphabet=_ALPHABET + "*?", min_size=1, max_size=8),
    st.text(alphabet=_ALPHABET, max_size=10),
)
def test_globs_mean_what_fnmatch_means(glob: str, value: str) -> None:
    assert glob_matches(glob, value) == fnmatch.fnmatchcase(value, glob)


def test_glob_regex_escapes_only_dots() -> None:
    assert glob_to_regex("a.b*c?") == r"^a\.b.*c.$"


def test_policy_violation_messages() -> None:
    policy = AppPolicy(allowed_tasks=("reports.tasks.*", "demo.*"), allowed_queues=("reports-*",))
    assert policy_violation(policy, "reports.tasks.send", "reports-low", LABEL) is None
    assert policy_violation(policy, "billing.refund", "reports-low", LABEL) == (
        'spec.task.name: "billing.refund" is not allowed by CeleryApp team-a/default '
        "(allowedTasks: reports.tasks.*, demo.*)"
    )
    assert policy_violation(policy, "demo.add", "billing", LABEL) == (
        'spec.task.queue: "billing" is not allowed by CeleryApp team-a/default '
        "(allowedQueues: reports-*)"
    )
    # No queue: Celery's default queue is what is checked.
    assert policy_violation(policy, "demo.add", None, LABEL) == (
        'spec.task.queue: "celery" is not allowed by CeleryApp team-a/default '
        "(allowedQueues: reports-*)"
    )


def test_omitted_lists_allow_everything_and_empty_lists_nothing() -> None:
    assert policy_violation(AppPolicy(), "any.task", "any-queue", LABEL) is None
    cluster = describe_app("ClusterCeleryApp", None, "shared")
    assert policy_violation(AppPolicy(allowed_tasks=()), "any.task", None, cluster) == (
        'spec.task.name: "any.task" is not allowed by ClusterCeleryApp shared '
        "(allowedTasks: [] allows none)"
    )
    assert policy_violation(AppPolicy(allowed_queues=()), "t", "q", cluster) == (
        'spec.task.queue: "q" is not allowed by ClusterCeleryApp shared '
        "(allowedQueues: [] allows none)"
    )


def test_effective_queue() -> None:
    assert effective_queue("mine", AppDefaults(queue="app")) == "mine"
    assert effective_queue(None, AppDefaults(queue="app")) == "app"
    assert effective_queue(None, AppDefaults()) == "celery"


# ---- selectors --------------------------------------------------------------------------------

NS = {"team": "a", "tier": "gold"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        (None, False),  # no selector: no namespace may use the app
        ({}, True),  # {}: every namespace
        ({"matchLabels": {"team": "a"}}, True),
        ({"matchLabels": {"team": "a", "tier": "silver"}}, False),
        ({"matchLabels": {"env": "prod"}}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold", "x"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["silver"]}]}, False),
        ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["gold"]}]}, False),
        ({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["test"]}]}, True),
        ({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "env", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "env", "operator": "DoesNotExist"}]}, True),
        ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, False),
        (
            {
                "matchLabels": {"team": "a"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["silver"]}],
            },
            False,
        ),
    ],
)
def test_selector_matches(selector: dict[str, Any] | None, matches: bool) -> None:
    assert selector_matches(selector, NS) is matches
