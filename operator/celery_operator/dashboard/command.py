"""`kubectl celery dashboard` and `celery-operator dashboard`: flags, binding, browser."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import socket
import sys
import webbrowser
from collections.abc import Sequence

from celery_operator.kube.objects import NoCredentials, connect
from celery_operator.kubectl_plugin.main import local_zone

from .feed import Live

LOOPBACK = "127.0.0.1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0,
                        help="port to serve on (default: a free one)")
    parser.add_argument("--address", default=LOOPBACK,
                        help=f"address to serve on (default {LOOPBACK}; any other prints a "
                        "warning: whoever reaches it acts with your credentials)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    parser.add_argument("-n", "--namespace", default=None,
                        help="show only this namespace (default: every namespace you may "
                        "list, else the kubeconfig context's)")
    parser.add_argument("--context", default=None, help="kubeconfig context to use")
    parser.add_argument("--kubeconfig", default=None,
                        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def _bind(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(128)  # connections wait in the backlog until the server runs
    return sock


def _url(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}/"


async def _serve(live: Live, hosts: frozenset[str] | None, sock: socket.socket) -> None:
    # Imported once the first lists are under way: they overlap aiohttp's import.
    from aiohttp import web

    from .server import Dashboard

    dashboard = Dashboard(live, local_zone(), hosts)
    runner = web.AppRunner(dashboard.app(), access_log=None)  # no request logs
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def run(args: argparse.Namespace, prog: str) -> int:
    try:
        objects, context_namespace = connect(args.kubeconfig, args.context)
    except NoCredentials as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        sock = _bind(args.address, args.port)
    except OSError as exc:
        print(f"error: cannot serve on {args.address}:{args.port}: {exc.strerror}",
              file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    local = _loopback(args.address)
    if not local:
        print(f"warning: serving on {args.address}, not loopback: anyone who can reach it "
              "sees and acts with your Kubernetes credentials", file=sys.stderr)
    hosts = frozenset({f"{LOOPBACK}:{port}", f"localhost:{port}", f"[::1]:{port}"}) if local \
        else None
    live = Live(objects, args.namespace, args.namespace or context_namespace)
    live.start()
    url = _url(LOOPBACK if args.address in ("0.0.0.0", "::") else args.address, port)
    print(f"{prog}: serving on {url} (Ctrl-C to stop)", flush=True)
    if not args.no_browser:
        webbrowser.open(url)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(live, hosts, sock))
    live.stop()
    return 0


def main(prog: str, argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog=prog, description="A local web UI over "
                                     "ScheduledTasks and PeriodicTasks, with your kubeconfig's "
                                     "credentials.")
    add_arguments(parser)
    return run(parser.parse_args(list(argv)), prog)
