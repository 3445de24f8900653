"""Where the test binaries are: the envtest conventions, then our own build cache."""

from __future__ import annotations

import os
import platform
import re
import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
ENVTEST_MODULES = REPO_ROOT / "hack" / "envtest"

# binary -> (Go module folder under hack/envtest, module whose version keys the cache)
_COMPONENTS = {
    "etcd": ("etcd", "go.etcd.io/etcd/server/v3"),
    "kube-apiserver": ("k8s", "k8s.io/kubernetes"),
    "kubectl": ("k8s", "k8s.io/kubernetes"),
    "helm": ("helm", "helm.sh/helm/v3"),
}


class MissingBinary(FileNotFoundError):
    pass


def envtest_cache() -> Path:
    """The cache hack/envtest/build.sh writes to (same default, same variable)."""
    if env := os.environ.get("ENVTEST_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "celery-operator" / "envtest"


def pinned_version(module_dir: str, module: str) -> str:
    """The version a go.mod under hack/envtest requires: the only place it is written."""
    text = (ENVTEST_MODULES / module_dir / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", text, re.MULTILINE)
    if not match:
        raise MissingBinary(f"{module} is not required in hack/envtest/{module_dir}/go.mod")
    return match.group(1)


def _platform() -> str:
    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return f"{platform.system().lower()}-{machine}"


def built_path(name: str) -> Path:
    module_dir, module = _COMPONENTS[name]
    version = pinned_version(module_dir, module)
    return envtest_cache() / f"{module_dir}-{version}-{_platform()}" / name


def find_binary(name: str) -> Path:
    """TEST_ASSET_<NAME> → $KUBEBUILDER_ASSETS/<name> → our build cache (→ PATH for helm)."""
    env_name = "TEST_ASSET_" + name.upper().replace("-", "_")
    candidates: list[Path] = []
    if value := os.environ.get(env_name):
        candidates.append(Path(value))
    if (assets := os.environ.get("KUBEBUILDER_ASSETS")) and name != "helm":
        candidates.append(Path(assets) / name)
    candidates.append(built_path(name))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    if name == "helm" and (on_path := shutil.which("helm")):
        return Path(on_path)
    raise MissingBinary(
        f"{name} not found (looked at {', '.join(map(str, candidates))}); "
        "run `make envtest` to build it"
    )
