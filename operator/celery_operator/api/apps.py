"""CeleryApp and ClusterCeleryApp: which broker a task goes to, and what it may run there.

Pure: the typed spec of both kinds, `spec.app` on tasks, the policy check (task-name and
queue globs) and label-selector matching. The same glob rules are compiled to CEL by the
chart's ValidatingAdmissionPolicy; unit tests keep the patterns equal to the CRDs'.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from celery_operator.api import defaults
from celery_operator.api._fields import Reader, describe, join
from celery_operator.api.bounds import SECONDS_MAX
from celery_operator.api.errors import InvalidSpec
from celery_operator.api.names import CELERYAPP_KIND, CLUSTER_CELERYAPP_KIND
from celery_operator.api.zones import read_time_zone

APP_KINDS = (CELERYAPP_KIND, CLUSTER_CELERYAPP_KIND)
# The fields of a task's spec.app (the parser refuses any other).
APP_REF_FIELDS = ("kind", "name")
# A task without spec.app uses the CeleryApp of this name in its namespace, if any.
DEFAULT_APP_NAME = "default"
# On a ClusterCeleryApp: "true" makes it the cluster default (the chart sets it).
DEFAULT_APP_ANNOTATION = "celeryoperator.dev/default-app"
# Celery's default queue: what a task without a queue (and without an app default) uses.
CELERY_DEFAULT_QUEUE = "celery"

# Shared with the CRDs (unit tests compare): Kubernetes' own rules for object names and
# Secret keys, and globs made of task-name/queue characters plus * and ?, which keeps
# their translation to a regular expression (here and in CEL) free of metacharacters.
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_SUBDOMAIN_MAX_LENGTH = 253
SECRET_KEY_PATTERN = "^[-._a-zA-Z0-9]+$"
SECRET_KEY_MAX_LENGTH = 253
GLOB_PATTERN = "^[A-Za-z0-9_.:*?-]+$"
TASK_GLOB_MAX_LENGTH = 200
QUEUE_GLOB_MAX_LENGTH = 255
POLICY_ITEMS_MAX = 64
QUEUE_MAX_LENGTH = 255
QUEUE_ORDER_STRATEGIES = ("priority", "round_robin", "sorted")
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")

_DNS_SUBDOMAIN = re.compile(DNS_SUBDOMAIN_PATTERN)
_SECRET_KEY = re.compile(SECRET_KEY_PATTERN)
_GLOB = re.compile(GLOB_PATTERN)
_DNS_MESSAGE = (
    "must be a lowercase RFC 1123 subdomain: lowercase letters, digits, '-' and '.', "
    "starting and ending with a letter or digit"
)
_GLOB_MESSAGE = "must be a glob of letters, digits, '_', '.', ':', '-', '*' and '?'"


@dataclass(frozen=True)
class AppRef:
    """spec.app of a task: a CeleryApp in the task's namespace, or a ClusterCeleryApp."""

    kind: str
    name: str


@dataclass(frozen=True)
class SecretKeyRef:
    """One key of a Secret (in the app's namespace; the operator's for a cluster app)."""

    name: str
    key: str


@dataclass(frozen=True)
class AppPolicy:
    """Globs a task must match. None allows everything; an empty tuple allows nothing."""

    allowed_tasks: tuple[str, ...] | None = None
    allowed_queues: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AppDefaults:
    """Applied to the tasks of the app when they leave these unset."""

    queue: str | None = None
    time_zone: str | None = None
    expires: int | None = None  # seconds after the due time


@dataclass(frozen=True)
class CeleryAppSpec:
    """A parsed CeleryApp or ClusterCeleryApp spec.

    `transport_options` uses Celery's names (visibility_timeout, queue_order_strategy),
    ready for broker_transport_options. `namespace_selector` is only ever set on a
    ClusterCeleryApp; None there means no namespace may use it.
    """

    broker: SecretKeyRef
    result_backend: SecretKeyRef
    transport_options: Mapping[str, Any]
    defaults: AppDefaults
    policy: AppPolicy
    namespace_selector: Mapping[str, Any] | None = None


# ---- parsing ---------------------------------------------------------------------------------


def parse_app_ref(raw: Any, path: str = "spec.app") -> AppRef | None:
    """The AppRef in `raw` (the value of spec.app), None when unset. Raises InvalidSpec."""
    reader = Reader()
    ref = read_app_ref(reader, {"app": raw}, path.rpartition(".")[0])
    reader.raise_if_invalid()
    return ref


def app_ref_of(spec: Mapping[str, Any]) -> AppRef | None:
    """spec.app of a raw task spec, leniently: None when unset or unreadable (such a spec
    is Invalid anyway; its in-flight task is still followed through the default app)."""
    try:
        return parse_app_ref(spec.get("app"))
    except InvalidSpec:
        return None


def describe_key(key: str) -> str:
    """describe_app from an app key ("CeleryApp/<ns>/<name>", "ClusterCeleryApp/<name>")."""
    kind, _, rest = key.partition("/")
    return f"{kind} {rest}" if rest else key


def read_app_ref(reader: Reader, spec: Mapping[str, Any], path: str) -> AppRef | None:
    """spec.app of a task spec, errors recorded on `reader`."""
    raw = reader.mapping(spec, "app", path)
    if raw is None:
        return None
    path = join(path, "app")
    reader.no_other_keys(raw, path, APP_REF_FIELDS)
    kind = reader.string(raw, "kind", path, choices=APP_KINDS)
    name = _read_name(reader, raw, "name", path)
    if name is None or (kind is None and raw.get("kind") is not None):
        return None
    return AppRef(kind=kind or defaults.APP_KIND, name=name)


def render_app_ref(ref: AppRef) -> dict[str, str]:
    return {"kind": ref.kind, "name": ref.name}


def parse_celery_app_spec(raw: Any, *, cluster: bool) -> CeleryAppSpec:
    """Parse `spec` of a CeleryApp (cluster=False) or ClusterCeleryApp (cluster=True).

    Raises InvalidSpec listing every problem with its field path (e.g. `spec.broker`).
    """
    reader = Reader()
    path = "spec"
    if not isinstance(raw, Mapping):
        reader.error(path, f"must be an object, not {describe(raw)}")
        reader.raise_if_invalid()
    broker = _read_secret_ref(reader, raw, "broker", path)
    backend = _read_secret_ref(reader, raw, "resultBackend", path)
    transport = _read_transport_options(reader, raw, path)
    app_defaults = _read_defaults(reader, raw, path)
    policy = _read_policy(reader, raw, path)
    selector: Mapping[str, Any] | None = None
    if cluster:
        selector = _read_selector(reader, raw, "namespaceSelector", path)
    elif raw.get("namespaceSelector") is not None:
        reader.error(
            join(path, "namespaceSelector"),
            "Forbidden: only a ClusterCeleryApp has a namespaceSelector",
        )
    reader.raise_if_invalid()
    assert broker is not None and backend is not None
    return CeleryAppSpec(
        broker=broker,
        result_backend=backend,
        transport_options=transport,
        defaults=app_defaults,
        policy=policy,
        namespace_selector=selector,
    )


def _read_name(reader: Reader, raw: Mapping[str, Any], key: str, path: str) -> str | None:
    name = reader.string(
        raw, key, path, required=True, pattern=_DNS_SUBDOMAIN, pattern_message=_DNS_MESSAGE
    )
    if name is not None and len(name) > DNS_SUBDOMAIN_MAX_LENGTH:
        reader.error(
            join(path, key), f"Too long: may not be more than {DNS_SUBDOMAIN_MAX_LENGTH} bytes"
        )
        return None
    return name


def _read_secret_ref(
    reader: Reader, raw: Mapping[str, Any], key: str, path: str
) -> SecretKeyRef | None:
    holder = reader.mapping(raw, key, path, required=True)
    if holder is None:
        return None
    path = join(path, key)
    ref = reader.mapping(holder, "secretKeyRef", path, required=True)
    if ref is None:
        return None
    path = join(path, "secretKeyRef")
    name = _read_name(reader, ref, "name", path)
    secret_key = reader.string(
        ref,
        "key",
        path,
        required=True,
        pattern=_SECRET_KEY,
        pattern_message="must be a Secret key: letters, digits, '-', '_' and '.'",
    )
    if secret_key is not None and len(secret_key) > SECRET_KEY_MAX_LENGTH:
        reader.error(
            join(path, "key"), f"Too long: may not be more than {SECRET_KEY_MAX_LENGTH} bytes"
        )
        secret_key = None
    if name is None or secret_key is None:
        return None
    return SecretKeyRef(name=name, key=secret_key)


def _read_transport_options(reader: Reader, raw: Mapping[str, Any], path: str) -> dict[str, Any]:
    options = reader.mapping(raw, "transportOptions", path)
    if options is None:
        return {}
    path = join(path, "transportOptions")
    result: dict[str, Any] = {}
    timeout = reader.integer(options, "visibilityTimeout", path, minimum=1, maximum=SECONDS_MAX)
    if timeout is not None:
        result["visibility_timeout"] = timeout
    strategy = reader.string(options, "queueOrderStrategy", path, choices=QUEUE_ORDER_STRATEGIES)
    if strategy is not None:
        result["queue_order_strategy"] = strategy
    return result


def _read_defaults(reader: Reader, raw: Mapping[str, Any], path: str) -> AppDefaults:
    values = reader.mapping(raw, "defaults", path)
    if values is None:
        return AppDefaults()
    path = join(path, "defaults")
    queue = reader.string(values, "queue", path)
    if queue is not None and not 1 <= len(queue) <= QUEUE_MAX_LENGTH:
        reader.error(
            join(path, "queue"), f"Invalid value: must be 1 to {QUEUE_MAX_LENGTH} characters"
        )
        queue = None
    zone = read_time_zone(reader, values, path) if values.get("timeZone") is not None else None
    expires = reader.integer(values, "expires", path, minimum=0, maximum=SECONDS_MAX)
    return AppDefaults(queue=queue, time_zone=zone, expires=expires)


def _read_globs(
    reader: Reader, raw: Mapping[str, Any], key: str, path: str, max_length: int
) -> tuple[str, ...] | None:
    items = reader.sequence(raw, key, path)
    if items is None:
        return None
    field = join(path, key)
    if len(items) > POLICY_ITEMS_MAX:
        reader.error(field, f"Too many: {len(items)}: must have at most {POLICY_ITEMS_MAX} items")
        return None
    globs: list[str] = []
    for index, item in enumerate(items):
        where = f"{field}[{index}]"
        if not isinstance(item, str):
            reader.error(where, f"must be a string, not {describe(item)}")
        elif not _GLOB.fullmatch(item):
            reader.error(where, f'Invalid value: "{item}": {_GLOB_MESSAGE}')
        elif len(item) > max_length:
            reader.error(where, f"Too long: may not be more than {max_length} bytes")
        else:
            globs.append(item)
    return tuple(globs)


def _read_policy(reader: Reader, raw: Mapping[str, Any], path: str) -> AppPolicy:
    values = reader.mapping(raw, "policy", path)
    if values is None:
        return AppPolicy()
    path = join(path, "policy")
    return AppPolicy(
        allowed_tasks=_read_globs(reader, values, "allowedTasks", path, TASK_GLOB_MAX_LENGTH),
        allowed_queues=_read_globs(reader, values, "allowedQueues", path, QUEUE_GLOB_MAX_LENGTH),
    )


def _read_selector(
    reader: Reader, raw: Mapping[str, Any], key: str, path: str
) -> Mapping[str, Any] | None:
    selector = reader.mapping(raw, key, path)
    if selector is None:
        return None
    path = join(path, key)
    labels = reader.mapping(selector, "matchLabels", path)
    for label, value in (labels or {}).items():
        if not isinstance(value, str):
            reader.error(join(join(path, "matchLabels"), label), "must be a string")
    expressions = reader.sequence(selector, "matchExpressions", path) or ()
    for index, expression in enumerate(expressions):
        _check_expression(reader, expression, f"{join(path, 'matchExpressions')}[{index}]")
    return selector


def _check_expression(reader: Reader, expression: Any, path: str) -> None:
    if not isinstance(expression, Mapping):
        reader.error(path, f"must be an object, not {describe(expression)}")
        return
    reader.string(expression, "key", path, required=True)
    operator = reader.string(
        expression, "operator", path, required=True, choices=SELECTOR_OPERATORS
    )
    values = reader.sequence(expression, "values", path)
    if values is not None and not all(isinstance(v, str) for v in values):
        reader.error(join(path, "values"), "must be an array of strings")
    if operator in ("In", "NotIn") and not values:
        reader.error(join(path, "values"), f"Required value: must be non-empty for {operator}")
    if operator in ("Exists", "DoesNotExist") and values:
        reader.error(join(path, "values"), f"Forbidden: must be empty for {operator}")


# ---- policy and selectors --------------------------------------------------------------------


def glob_to_regex(glob: str) -> str:
    """The anchored regular expression of a glob: * is any run of characters, ? one.

    GLOB_PATTERN leaves '.' as the only regex metacharacter to escape; the chart's CEL does
    the very same replacements.
    """
    return "^" + glob.replace(".", "\\.").replace("*", ".*").replace("?", ".") + "$"


def glob_matches(glob: str, value: str) -> bool:
    return re.match(glob_to_regex(glob), value) is not None


def describe_app(kind: str, namespace: str | None, name: str) -> str:
    """How messages name an app: `CeleryApp team-a/default`, `ClusterCeleryApp shared`."""
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def effective_queue(task_queue: str | None, app_defaults: AppDefaults) -> str:
    """The queue a task ends up on: its own, else the app's default, else Celery's."""
    return task_queue or app_defaults.queue or CELERY_DEFAULT_QUEUE


def _rule(field: str, globs: Sequence[str]) -> str:
    return f"{field}: {', '.join(globs)}" if globs else f"{field}: [] allows none"


def policy_violation(
    policy: AppPolicy, task_name: str, queue: str | None, app_label: str
) -> str | None:
    """None when the app's policy allows this task; else a message naming field and rule.

    `queue` is the effective queue (see effective_queue; None means Celery's default).
    `app_label` names the app as describe_app does.
    """
    allowed = policy.allowed_tasks
    if allowed is not None and not any(glob_matches(g, task_name) for g in allowed):
        return (
            f'spec.task.name: "{task_name}" is not allowed by {app_label} '
            f"({_rule('allowedTasks', allowed)})"
        )
    queues = policy.allowed_queues
    shown = queue or CELERY_DEFAULT_QUEUE
    if queues is not None and not any(glob_matches(g, shown) for g in queues):
        return (
            f'spec.task.queue: "{shown}" is not allowed by {app_label} '
            f"({_rule('allowedQueues', queues)})"
        )
    return None


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a metav1.LabelSelector selects these labels. None selects nothing, {} all."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or ():
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or ()
        present = key in labels
        if operator == "In":
            ok = present and labels[key] in values
        elif operator == "NotIn":
            ok = not present or labels[key] not in values
        elif operator == "Exists":
            ok = present
        elif operator == "DoesNotExist":
            ok = not present
        else:  # the schema refuses other operators; select nothing rather than guess
            ok = False
        if not ok:
            return False
    return True
