"""Reading the CRDs in crds/ for tests: schemas, defaults, rules, and a schema defaulter."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
CRD_FILES = {
    "ScheduledTask": REPO_ROOT / "crds" / "celeryoperator.dev_scheduledtasks.yaml",
    "PeriodicTask": REPO_ROOT / "crds" / "celeryoperator.dev_periodictasks.yaml",
    "CeleryApp": REPO_ROOT / "crds" / "celeryoperator.dev_celeryapps.yaml",
    "ClusterCeleryApp": REPO_ROOT / "crds" / "celeryoperator.dev_clusterceleryapps.yaml",
}


@cache
def crd(kind: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_FILES[kind].read_text())
    return loaded


def version(kind: str) -> dict[str, Any]:
    versions: list[dict[str, Any]] = crd(kind)["spec"]["versions"]
    assert len(versions) == 1
    return versions[0]


def root_schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = version(kind)["schema"]["openAPIV3Schema"]
    return schema


def schema_at(kind: str, path: str) -> dict[str, Any]:
    """The schema of a dotted field path such as "spec.task.name" ("[]" = list items)."""
    schema = root_schema(kind)
    for part in path.split("."):
        if part.endswith("[]"):
            schema = schema["properties"][part[:-2]]["items"]
        else:
            schema = schema["properties"][part]
    return schema


def walk(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every (path, schema) below `schema`; list items appear as "<path>[]"."""
    for name, sub in schema.get("properties", {}).items():
        sub_path = f"{path}.{name}" if path else name
        yield sub_path, sub
        yield from walk(sub, sub_path)
    if "items" in schema:
        yield f"{path}[]", schema["items"]
        yield from walk(schema["items"], f"{path}[]")
    additional = schema.get("additionalProperties")
    if isinstance(additional, Mapping):
        yield f"{path}{{}}", additional
        yield from walk(additional, f"{path}{{}}")


def defaults(kind: str) -> dict[str, Any]:
    """Path -> default of every field with a schema default, except `{}` on objects
    (those only switch on the defaults of their fields)."""
    return {
        path: sub["default"]
        for path, sub in walk(root_schema(kind))
        if "default" in sub and sub["default"] != {}
    }


def rules(kind: str, path: str) -> list[str]:
    return [v["rule"] for v in schema_at(kind, path).get("x-kubernetes-validations", [])]


def apply_defaults(schema: Mapping[str, Any], value: Any) -> Any:
    """What the API server's structural defaulting does to `value` (objects only)."""
    if not isinstance(value, Mapping):
        return copy.deepcopy(value)
    result = {k: copy.deepcopy(v) for k, v in value.items()}
    for name, sub in schema.get("properties", {}).items():
        if name not in result and "default" in sub:
            result[name] = copy.deepcopy(sub["default"])
        if name in result:
            result[name] = apply_defaults(sub, result[name])
    return result


def with_defaults(kind: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """`spec` as the API server would store it, schema defaults filled in."""
    filled: dict[str, Any] = apply_defaults(schema_at(kind, "spec"), spec)
    return filled
