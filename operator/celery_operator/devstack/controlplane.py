"""etcd + kube-apiserver on loopback, or an existing cluster behind the same interface."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from celery_operator.devstack.assets import REPO_ROOT, MissingBinary, find_binary
from celery_operator.devstack.certs import Pki, make_pki
from celery_operator.devstack.processes import ManagedProcess, free_port, wait_until

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

CRD_DIR = REPO_ROOT / "crds"


class KubeEnv:
    """What tests need of a cluster: a kubeconfig, kubectl and API clients."""

    kubeconfig: Path

    def __init__(self, kubeconfig: Path, kubectl_path: Path) -> None:
        self.kubeconfig = kubeconfig
        self.kubectl_path = kubectl_path

    def env(self) -> dict[str, str]:
        """The process environment pointing a child (kubectl, the operator) at this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this cluster; raises with its stderr when `check`."""
        proc = subprocess.run(
            [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(
                proc.returncode, proc.args, output=proc.stdout, stderr=proc.stderr
            )
        return proc

    def api_client(self) -> ApiClient:
        """A fresh `kubernetes` client bound to this kubeconfig."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def install_crds(self, crd_dir: Path = CRD_DIR) -> None:
        """Apply our CRDs and wait until the API server serves them."""
        files = sorted(crd_dir.glob("*.yaml"))
        if not files:
            return
        args = [a for f in files for a in ("-f", str(f))]
        self.kubectl("apply", "--server-side", "--force-conflicts", *args)
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", *args)


class ExistingCluster(KubeEnv):
    """USE_EXISTING_CLUSTER=true: the cluster $KUBECONFIG points at; nothing is started."""

    def __init__(self, kubeconfig: Path | None = None) -> None:
        path = kubeconfig or Path(
            os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config"))
        )
        try:
            kubectl = find_binary("kubectl")
        except MissingBinary:
            found = shutil.which("kubectl")
            if not found:
                raise
            kubectl = Path(found)
        super().__init__(path, kubectl)

    def start(self) -> ExistingCluster:
        self.install_crds()
        return self

    def stop(self) -> None:
        pass


class ControlPlane(KubeEnv):
    """A real etcd and kube-apiserver on free loopback ports, with a self-made CA."""

    def __init__(self, workdir: Path | None = None, apiserver_flags: Sequence[str] = ()) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="celery-operator-cp-"))
        self.apiserver_flags = list(apiserver_flags)
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.api_port = free_port()
        self.pki: Pki | None = None
        self.etcd: ManagedProcess | None = None
        self.apiserver: ManagedProcess | None = None
        super().__init__(self.workdir / "kubeconfig", find_binary("kubectl"))

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def start(self, timeout: float = 120.0) -> ControlPlane:
        self.pki = make_pki(self.workdir / "pki")
        self._start_etcd()
        self._start_apiserver(timeout)
        self._write_kubeconfig()
        self.install_crds()
        return self

    def _start_etcd(self) -> None:
        client = f"http://127.0.0.1:{self.etcd_port}"
        self.etcd = ManagedProcess(
            "etcd",
            [
                str(find_binary("etcd")),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{self.etcd_peer_port}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            log_path=self.workdir / "logs" / "etcd.log",
        ).start()
        wait_until(lambda: _http_ok(f"{client}/health"), 60, what="etcd /health")

    def _apiserver_argv(self) -> list[str]:
        assert self.pki is not None
        p = self.pki
        return [
            str(find_binary("kube-apiserver")),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.api_port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={p.server_cert}",
            f"--tls-private-key-file={p.server_key}",
            f"--client-ca-file={p.ca_cert}",
            f"--service-account-issuer={self.url}/",
            f"--service-account-key-file={p.sa_pub}",
            f"--service-account-signing-key-file={p.sa_key}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            "--disable-admission-plugins=ServiceAccount",
            "--endpoint-reconciler-type=none",
            "--v=1",
            *self.apiserver_flags,
        ]

    def _start_apiserver(self, timeout: float) -> None:
        self.apiserver = ManagedProcess(
            "kube-apiserver",
            self._apiserver_argv(),
            log_path=self.workdir / "logs" / "kube-apiserver.log",
        ).start()
        try:
            wait_until(self._ready, timeout, interval=0.25, what="kube-apiserver /readyz")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.apiserver.log_tail()}") from exc

    def _ready(self) -> bool:
        assert self.apiserver is not None
        if not self.apiserver.running():
            raise RuntimeError(f"kube-apiserver exited:\n{self.apiserver.log_tail()}")
        assert self.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        ctx.load_cert_chain(str(self.pki.client_cert), str(self.pki.client_key))
        return _http_ok(f"{self.url}/readyz", ctx)

    def restart_apiserver(self, down_seconds: float = 0.0, timeout: float = 120.0) -> None:
        """Stop kube-apiserver (etcd keeps the data), optionally stay down, start it again."""
        assert self.apiserver is not None
        self.apiserver.stop()
        time.sleep(down_seconds)
        self._start_apiserver(timeout)

    def _write_kubeconfig(self) -> None:
        assert self.pki is not None
        config: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "envtest",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority": str(self.pki.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate": str(self.pki.client_cert),
                        "client-key": str(self.pki.client_key),
                    },
                }
            ],
            "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": "admin"}}],
            "current-context": "envtest",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))

    def stop(self) -> None:
        for proc in (self.apiserver, self.etcd):
            if proc is not None:
                proc.stop()


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False
