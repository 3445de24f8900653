"""Binary lookup follows the envtest conventions: TEST_ASSET_<NAME>, KUBEBUILDER_ASSETS, cache."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from celery_operator.devstack import assets


def _exe(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("TEST_ASSET_KUBE_APISERVER", "KUBEBUILDER_ASSETS", "TEST_ASSET_ETCD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ENVTEST_DIR", str(tmp_path / "cache"))


def test_test_asset_variable_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    own = _exe(tmp_path / "own" / "kube-apiserver")
    _exe(tmp_path / "kb" / "kube-apiserver")
    monkeypatch.setenv("TEST_ASSET_KUBE_APISERVER", str(own))
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path / "kb"))
    assert assets.find_binary("kube-apiserver") == own


def test_kubebuilder_assets_before_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    kb = _exe(tmp_path / "kb" / "etcd")
    _exe(assets.built_path("etcd"))
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path / "kb"))
    assert assets.find_binary("etcd") == kb


def test_cache_is_keyed_by_the_version_in_go_mod() -> None:
    path = assets.built_path("kube-apiserver")
    version = assets.pinned_version("k8s", "k8s.io/kubernetes")
    assert version.startswith("v1.36.")
    assert f"k8s-{version}-" in str(path)
    assert assets.pinned_version("etcd", "go.etcd.io/etcd/server/v3").startswith("v3.6.")
    assert assets.pinned_version("helm", "helm.sh/helm/v3").startswith("v3.21.")


def test_missing_binary_says_how_to_build_it() -> None:
    with pytest.raises(assets.MissingBinary, match="make envtest"):
        assets.find_binary("etcd")
