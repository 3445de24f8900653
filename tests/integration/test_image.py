"""The container image, built by `make image` (hack/image/build.sh), run for real.

No Docker daemon: `buildah run --isolation chroot --user 65532` starts a process from the
image's filesystem with the host's network, so the operator in the image reaches the test
control plane, Redis and the worker. What the operator gets — entrypoint, arguments,
environment, the Secret's values — is read from the image config and from `helm template`
of the chart, never restated here; its credentials are a token of the chart's
ServiceAccount, so it has exactly the chart's permissions.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import tarfile
import time
import tomllib
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from celery_operator.devstack import KubeEnv, find_binary

from .conftest import holds_for, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "celery-operator"
CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
UID = 65532
KUBECONFIG_IN_IMAGE = "/run/celery-operator/kubeconfig"  # not under /var/run: a symlink


def run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def image() -> str:
    """The image `make image` makes (a warm run reuses it); its name is the chart's default."""
    proc = subprocess.run(["bash", str(ROOT / "hack" / "image" / "build.sh")],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    name = f"{VALUES['image']['repository']}:{CHART_META['appVersion']}"
    run("buildah", "inspect", "--type", "image", name)
    return name


@pytest.fixture(scope="module")
def config(image: str) -> dict[str, Any]:
    """The image's OCI config (User, Entrypoint, Env, Labels)."""
    inspected = json.loads(run("buildah", "inspect", "--type", "image", image).stdout)
    return dict(inspected["OCIv1"]["config"])


@contextmanager
def container(image: str) -> Iterator[tuple[str, Path]]:
    """A working container of the image and its root filesystem as seen from the host."""
    name = run("buildah", "from", "--quiet", "--pull=never", image).stdout.strip()
    try:
        yield name, Path(run("buildah", "mount", name).stdout.strip())
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True, timeout=60)


def in_image(ctr: str, argv: list[str], env: dict[str, str] | None = None,
             volumes: tuple[str, ...] = ()) -> list[str]:
    """The command line that runs `argv` in the container as the image's numeric user."""
    flags = [f"--env={k}={v}" for k, v in (env or {}).items()]
    flags += [f"--volume={v}" for v in volumes]
    return ["buildah", "run", "--isolation", "chroot", f"--user={UID}:{UID}", *flags, ctr,
            "--", *argv]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_ok(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bytes(response.read()) if response.status == 200 else None
    except OSError:
        return None


def operator_pid(parent: int) -> int | None:
    """The process of `celery-operator` under `buildah run` (the kubelet signals it alone)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    # buildah's chroot helpers in between run as the user too: the operator is the python.
    todo = list(children.get(parent, []))
    while todo:
        pid = todo.pop()
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue
        if uid == UID and b"python" in argv[0] and any(b"celery-operator" in a for a in argv):
            return pid
        todo += children.get(pid, [])
    return None


def deployment_and_secret(release: str, namespace: str, *values: str
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
    out = run(str(find_binary("helm")), "template", release, str(CHART), "--namespace",
              namespace, *values).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    secret = next(d for d in docs if d["kind"] == "Secret")
    return deployment, secret


def environment(pod: dict[str, Any], secret: dict[str, Any], namespace: str) -> dict[str, str]:
    """The container's environment as the kubelet builds it from the rendered pod spec."""
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data |= secret.get("stringData") or {}
    # The downward API fields the chart reads (the namespace, and the pod's name and uid
    # for the leader Lease's holder identity).
    pod_fields = {"metadata.namespace": namespace, "metadata.name": "celery-operator-image-0",
                  "metadata.uid": str(uuid.uuid4())}
    env: dict[str, str] = {}
    for var in pod["containers"][0]["env"]:
        source = var.get("valueFrom", {})
        if "secretKeyRef" in source:
            assert source["secretKeyRef"]["name"] == secret["metadata"]["name"]
            env[var["name"]] = data[source["secretKeyRef"]["key"]]
        elif "fieldRef" in source:
            env[var["name"]] = pod_fields[source["fieldRef"]["fieldPath"]]
        else:
            env[var["name"]] = var["value"]
    return env


def serviceaccount_kubeconfig(kube: KubeEnv, namespace: str, account: str, path: Path,
                              server: str | None = None, token: str | None = None) -> Path:
    """A kubeconfig with a token of the chart's ServiceAccount: the pod's credentials."""
    admin = json.loads(kube.kubectl("config", "view", "--minify", "--raw", "--flatten",
                                    "-o", "json").stdout)
    cluster = dict(admin["clusters"][0]["cluster"])
    if server is not None:
        cluster["server"] = server
    token = token or kube.kubectl("--namespace", namespace, "create", "token", account,
                                  "--duration=1h").stdout.strip()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "pod",
        "clusters": [{"name": "target", "cluster": cluster}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "pod", "context": {"cluster": "target", "user": account}}],
    }))
    path.chmod(0o644)  # read by uid 65532, like the projected token
    return path


# ---- hygiene ---------------------------------------------------------------------------

def test_image_metadata(image: str, config: dict[str, Any]) -> None:
    assert re.fullmatch(r"\d+:\d+", config["User"]) and config["User"] == f"{UID}:{UID}"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert re.fullmatch(r"[0-9a-f]{40}", labels["org.opencontainers.image.revision"])
    assert labels["org.opencontainers.image.source"] in CHART_META["sources"]
    # The chart runs the image's own entrypoint with flags only.
    assert config["Entrypoint"] == ["celery-operator", "run"]
    with container(image) as (ctr, _):
        version = run(*in_image(ctr, ["celery-operator", "--version"])).stdout.strip()
    assert version == f"celery-operator {CHART_META['appVersion']}"


def test_final_stage_has_no_build_tools_or_caches(image: str) -> None:
    with container(image) as (ctr, root):
        for tool in ("gcc", "cc", "c++", "make", "pip", "pip3"):
            proc = subprocess.run(in_image(ctr, ["sh", "-c", f"command -v {tool}"]),
                                  capture_output=True, text=True, timeout=60)
            assert proc.returncode != 0, f"{tool} in the image: {proc.stdout}"
        no_pip = subprocess.run(in_image(ctr, ["python3", "-m", "pip", "--version"]),
                                capture_output=True, text=True, timeout=60)
        assert no_pip.returncode != 0, no_pip.stdout
        assert not list((root / "opt" / "venv").glob("lib/python3*/site-packages/pip"))
        for cache in ("root/.cache", "src", "var/cache/apt/archives/partial"):
            assert not (root / cache).exists() or not any((root / cache).iterdir()), cache
        assert not list((root / "var" / "cache" / "apt").rglob("*.deb"))
        assert not list((root / "var" / "lib" / "apt" / "lists").glob("*_Packages*"))
        # Nothing in the image belongs to the runtime user: it can write only where the
        # world can, which the test of the running operator checks stays untouched.
        owned = run("find", str(root), "-xdev", "-uid", str(UID)).stdout.split()
        assert owned == []


def test_sbom_beside_the_archive(image: str) -> None:
    sbom = ROOT / "build" / "image" / f"celery-operator-{VERSION}.sbom.txt"
    archive = sbom.with_name(f"celery-operator-{VERSION}.oci.tar")
    assert archive.stat().st_size > 0
    lines = sbom.read_text().splitlines()
    pypi = {ln.split()[1].lower(): ln.split()[2] for ln in lines if ln.startswith("pypi ")}
    debs = {ln.split()[1]: ln.split()[2] for ln in lines if ln.startswith("deb ")}
    assert pypi["celery-operator"] == VERSION
    assert {"kopf", "celery", "kombu", "redis", "kubernetes"} <= set(pypi)
    assert debs["python3.11"].startswith("3.11.")
    assert "pip" not in pypi and "python3-pip-whl" not in debs


# ---- the operator in the image, for real -----------------------------------------------

@pytest.fixture
def release(kube: KubeEnv, broker_url: str, backend_url: str) -> Iterator[tuple[str, list[str]]]:
    """The chart installed (ServiceAccount, RBAC, Secret) into a fresh namespace."""
    namespace = f"img-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", namespace)
    values = ["--set", f"celery.brokerUrl={broker_url}",
              "--set", f"celery.resultBackend={backend_url}",
              "--set", f"metrics.port={free_port()}", "--set", f"health.port={free_port()}",
              "--set", f"watch.namespaces={{{namespace}}}"]
    helm = str(find_binary("helm"))
    run(helm, "install", "image-test", str(CHART), "--namespace", namespace,
        "--kubeconfig", str(kube.kubeconfig), *values, timeout=120)
    try:
        yield namespace, values
    finally:
        subprocess.run([helm, "uninstall", "image-test", "--namespace", namespace,
                        "--kubeconfig", str(kube.kubeconfig)], capture_output=True, timeout=120)


def test_operator_from_the_image_runs_a_task(
    kube: KubeEnv, image: str, config: dict[str, Any], release: tuple[str, list[str]],
    celery_worker: object, tmp_path: Path,
) -> None:
    namespace, values = release
    deployment, secret = deployment_and_secret("image-test", namespace, *values)
    pod = deployment["spec"]["template"]["spec"]
    spec = pod["containers"][0]
    env = environment(pod, secret, namespace) | {"KUBECONFIG": KUBECONFIG_IN_IMAGE}
    kubeconfig = serviceaccount_kubeconfig(kube, namespace, pod["serviceAccountName"],
                                           tmp_path / "kubeconfig")
    # The chart's emptyDirs, as host folders the runtime user may write.
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    mounts = [m for m in spec["volumeMounts"] if m["name"] in empty_dirs]
    volumes = [f"{kubeconfig}:{KUBECONFIG_IN_IMAGE}:ro"]
    for mount in mounts:
        host = tmp_path / mount["name"]
        host.mkdir()
        host.chmod(0o1777)
        volumes.append(f"{host}:{mount['mountPath']}")
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    log = tmp_path / "operator.log"

    with container(image) as (ctr, root), log.open("w") as out:
        before = set(run("find", str(root), "-xdev", "-newer", str(root / "etc" / "passwd"),
                         timeout=120).stdout.split())
        proc = subprocess.Popen(
            in_image(ctr, [*config["Entrypoint"], *spec["args"]], env, tuple(volumes)),
            stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: http_ok(f"http://127.0.0.1:{ports['health']}/healthz") is not None
                     or proc.poll() is not None, 90, "the operator's liveness endpoint")
            assert proc.poll() is None, log.read_text()
            metrics = http_ok(f"http://127.0.0.1:{ports['http-metrics']}/metrics")
            assert metrics is not None and b"# TYPE" in metrics, log.read_text()

            kube.kubectl("--namespace", namespace, "apply", "-f",
                         str(ROOT / "examples" / "scheduledtask-now.yaml"))

            def phase() -> str:
                return kube.kubectl("--namespace", namespace, "get", "scheduledtask", "add-now",
                                    "-o", "jsonpath={.status.phase}").stdout
            wait_for(lambda: phase() == "Succeeded" or proc.poll() is not None, 90,
                     "add-now to succeed")
            assert phase() == "Succeeded", log.read_text()
            result = kube.kubectl("--namespace", namespace, "get", "scheduledtask", "add-now",
                                  "-o", "jsonpath={.status.result}").stdout
            assert result == "5"

            # SIGTERM to the operator, as the kubelet sends it; it must be gone within the
            # grace period the chart gives it.
            pid = operator_pid(proc.pid)
            assert pid is not None
            started = time.monotonic()
            os.kill(pid, signal.SIGTERM)
            code = proc.wait(timeout=pod["terminationGracePeriodSeconds"])
            assert time.monotonic() - started < pod["terminationGracePeriodSeconds"]
            assert code == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        # No write outside the emptyDirs: nothing in the root filesystem changed but the
        # mount points buildah made for the volumes (the kubelet makes its own) and the
        # folders holding them, whose mtime moves when a mount point is made in them (/run
        # for /run/celery-operator: whether it was already newer than /etc/passwd depends on
        # when the image was built). A write anywhere else still shows as the file itself.
        after = set(run("find", str(root), "-xdev", "-newer", str(root / "etc" / "passwd"),
                        timeout=120).stdout.split())
        mount_points = {Path(KUBECONFIG_IN_IMAGE)} | {Path(m["mountPath"]) for m in mounts}
        allowed = mount_points | {parent for p in mount_points for parent in p.parents}
        assert after - before <= {str(root) + str(p) for p in allowed} | {str(root)}
        assert "forbidden" not in log.read_text().lower()


# ---- bad input -------------------------------------------------------------------------

def _exits_with_one_clear_line(
    image: str, config: dict[str, Any], release: tuple[str, list[str]], words: str,
    change_env: Any, volumes: tuple[str, ...] = (),
) -> None:
    """Run the chart's operator from the image with `change_env` applied to its env: it
    must exit 2 with exactly one `error:` line holding `words`, and no traceback."""
    namespace, values = release
    deployment, secret = deployment_and_secret("image-test", namespace, *values)
    pod = deployment["spec"]["template"]["spec"]
    env = change_env(environment(pod, secret, namespace))
    with container(image) as (ctr, _):
        proc = subprocess.run(
            in_image(ctr, [*config["Entrypoint"], *pod["containers"][0]["args"]], env,
                     volumes),
            capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and words in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_half_of_the_secret_exits_with_one_clear_line(
    image: str, config: dict[str, Any], release: tuple[str, list[str]],
) -> None:
    """A Secret without the result backend: exit 2 (Kubernetes restarts and reports it)."""
    def without_backend(env: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in env.items() if k != "CELERY_RESULT_BACKEND"}

    _exits_with_one_clear_line(image, config, release, "CELERY_RESULT_BACKEND",
                               without_backend)


def test_no_kubernetes_credentials_exits_with_one_clear_line(
    image: str, config: dict[str, Any], release: tuple[str, list[str]],
) -> None:
    """No service account and a kubeconfig that does not exist: it can never work, so
    exit 2 with one line (not kopf retrying every minute)."""
    _exits_with_one_clear_line(image, config, release, "Kubernetes credentials",
                               lambda env: env | {"KUBECONFIG": "/nonexistent/kubeconfig"})


def test_refused_credentials_exit_with_one_clear_line(
    kube: KubeEnv, image: str, config: dict[str, Any], release: tuple[str, list[str]],
    tmp_path: Path,
) -> None:
    """A token the API server refuses (401) will not start working by itself: exit 2 with
    one line, not kopf's re-authentication tracebacks."""
    namespace, _ = release
    account = deployment_and_secret("image-test", namespace, *release[1])[0][
        "spec"]["template"]["spec"]["serviceAccountName"]
    kubeconfig = serviceaccount_kubeconfig(kube, namespace, account,
                                           tmp_path / "kubeconfig", token="not-a-token")
    _exits_with_one_clear_line(image, config, release, "401 Unauthorized",
                               lambda env: env | {"KUBECONFIG": KUBECONFIG_IN_IMAGE},
                               (f"{kubeconfig}:{KUBECONFIG_IN_IMAGE}:ro",))


def test_unreachable_api_server_is_retried_with_backoff(
    kube: KubeEnv, image: str, config: dict[str, Any], release: tuple[str, list[str]],
    tmp_path: Path,
) -> None:
    """The API server may come back (a control-plane upgrade): keep trying, never exit."""
    namespace, values = release
    deployment, secret = deployment_and_secret("image-test", namespace, *values)
    pod = deployment["spec"]["template"]["spec"]
    kubeconfig = serviceaccount_kubeconfig(kube, namespace, pod["serviceAccountName"],
                                           tmp_path / "kubeconfig",
                                           server=f"https://127.0.0.1:{free_port()}")
    env = environment(pod, secret, namespace) | {"KUBECONFIG": KUBECONFIG_IN_IMAGE}
    log = tmp_path / "operator.log"
    with container(image) as (ctr, _), log.open("w") as out:
        proc = subprocess.Popen(
            in_image(ctr, [*config["Entrypoint"], *pod["containers"][0]["args"]], env,
                     (f"{kubeconfig}:{KUBECONFIG_IN_IMAGE}:ro", f"{tmp_path}:/tmp")),
            stdout=out, stderr=subprocess.STDOUT)
        try:
            def retries() -> int:
                return log.read_text().count("will retry")
            wait_for(lambda: retries() >= 3 or proc.poll() is not None, 60,
                     "three retries of the API server")
            holds_for(lambda: proc.poll() is None, 3, "the operator keeps running")
            attempts = [int(m) for m in re.findall(r"Request attempt #(\d+)/", log.read_text())]
            assert attempts and max(attempts) >= 3, log.read_text()
        finally:
            if proc.poll() is None:
                pid = operator_pid(proc.pid)
                os.kill(pid if pid is not None else proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=pod["terminationGracePeriodSeconds"])
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=30)


# ---- release path ----------------------------------------------------------------------

def test_chart_package_carries_the_crds(tmp_path: Path) -> None:
    env = {**os.environ, "HELM": str(find_binary("helm"))}
    proc = subprocess.run(["bash", str(ROOT / "hack" / "image" / "chart-package.sh")],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    archive = ROOT / proc.stdout.strip()
    assert archive.name == f"celery-operator-{CHART_META['version']}.tgz"
    with tarfile.open(archive) as tar:
        packed = {Path(m.name).name: tar.extractfile(m).read()  # type: ignore[union-attr]
                  for m in tar.getmembers() if m.name.startswith("celery-operator/crds/")}
    assert packed == {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
