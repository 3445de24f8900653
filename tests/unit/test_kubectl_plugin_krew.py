"""The krew manifest installs what the package and the archive build provide."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KREW = ROOT / "plugins" / "krew"


def manifest() -> dict[str, Any]:
    """celery.yaml as krew-release-bot renders it for a tag (sha256 of a stand-in)."""
    text = (KREW / "celery.yaml").read_text()
    text = re.sub(r'\{\{ addURIAndSha "([^"]+)" \.TagName \}\}',
                  lambda m: f"uri: {m[1]}\n      sha256: {'0' * 64}", text)
    rendered: dict[str, Any] = yaml.safe_load(text.replace("{{ .TagName }}", "v1.2.3"))
    return rendered


def test_every_platform_runs_the_launcher_the_archive_carries() -> None:
    spec = manifest()["spec"]
    built = (KREW / "build-archive.sh").read_text()
    assert spec["version"] == "v1.2.3"
    platforms = {(p["selector"]["matchLabels"]["os"], p["selector"]["matchLabels"]["arch"]): p
                 for p in spec["platforms"]}
    assert set(platforms) == {(os, arch) for os in ("linux", "darwin")
                              for arch in ("amd64", "arm64")}
    for (os, arch), platform in platforms.items():
        assert platform["uri"].endswith(f"/v1.2.3/kubectl-celery-{os}-{arch}.tar.gz")
        assert platform["bin"] == "kubectl-celery"
        assert platform["files"] == [{"from": "*", "to": "."}]
    assert 'archive="$out/kubectl-celery-$os-$arch.tar.gz"' in built
    assert (KREW / "kubectl-celery").stat().st_mode & 0o111


def test_the_launcher_and_the_package_run_the_same_entry_point() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubectl-celery"] == "celery_operator.kubectl_plugin.main:entry_point"
    assert 'exec "$venv/bin/kubectl-celery" "$@"' in (KREW / "kubectl-celery").read_text()
