"""The HTTP side: pages, the full YAML, the server-sent event stream and actions."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, tzinfo
from importlib.resources import files
from typing import Any

from aiohttp import web

from celery_operator.api import PERIODIC_KIND, PERIODIC_PLURAL, SCHEDULED_KIND, SCHEDULED_PLURAL
from celery_operator.api.names import PARENT_LABEL
from celery_operator.kube.client import Rejected
from celery_operator.kube.objects import Unreachable
from celery_operator.scheduling.periodic_plan import controller_uid

from . import pages
from .actions import perform
from .feed import Live
from .html import as_yaml
from .queries import TableQuery, overview, select
from .rows import schedule_row, task_row
from .store import Cache

STATIC = files("celery_operator.dashboard") / "static"
STATIC_TYPES = {"app.js": "text/javascript", "style.css": "text/css"}
KEEPALIVE_SECONDS = 15.0
HEADERS = {  # the page loads nothing from elsewhere and is framed by nobody
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Dashboard:
    """The pages over the caches that `live`'s watches feed."""

    def __init__(self, live: Live, zone: tzinfo, allowed_hosts: frozenset[str] | None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.live, self.objects = live, live.objects
        self.tasks, self.schedules, self.hub = live.tasks, live.schedules, live.hub
        self.zone, self.clock, self.allowed_hosts = zone, clock, allowed_hosts
        self.token = secrets.token_urlsafe(24)  # actions must come from our own page

    # ---- pages --------------------------------------------------------------------------

    def _problems(self) -> list[str]:
        found = [c.problem for c in (self.tasks, self.schedules) if c.problem]
        if not found:
            found = [pages.loading(kind, *cache.loaded()) for kind, cache in (
                (SCHEDULED_KIND, self.tasks), (PERIODIC_KIND, self.schedules))
                if not cache.synced]
        return [p for p in found if p]

    def _respond(self, request: web.Request, view: pages.View) -> web.Response:
        if request.query.get("fragment"):
            text = pages.problems_html(self._problems()) + view.body
        else:
            text = pages.layout(view, self.token, self._problems())
        return web.Response(text=text, content_type="text/html")

    async def overview(self, request: web.Request) -> web.Response:
        now = self.clock()
        data = overview(self.tasks.rows(), self.schedules.rows(), now)
        return self._respond(request, pages.overview_page(data, now, self.zone))

    async def task_list(self, request: web.Request) -> web.Response:
        query = TableQuery.from_params(request.query)
        rows = self.tasks.rows()
        namespaces = sorted({r.namespace for r in rows})
        view = pages.tasks_page(select(rows, query), query, namespaces, self.clock(), self.zone)
        return self._respond(request, view)

    async def schedule_list(self, request: web.Request) -> web.Response:
        return self._respond(request, pages.schedules_page(self.schedules.rows(), self.clock(),
                                                           self.zone))

    def _cached(self, request: web.Request, cache: Cache[Any]) -> dict[str, Any] | None:
        return cache.get((request.match_info["namespace"], request.match_info["name"]))

    def _missing(self, request: web.Request, plural: str) -> web.Response:
        """A page that turns into the object when it appears (it may be just created)."""
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        view = pages.missing_page(plural, namespace, name, self.tasks.synced
                                  and self.schedules.synced)
        response = self._respond(request, view)
        response.set_status(404)
        return response

    async def _events(self, kind: str, obj: dict[str, Any]) -> list[dict[str, Any]] | str:
        meta = obj["metadata"]
        try:
            return await asyncio.to_thread(self.objects.events, meta["namespace"], kind,
                                           meta["name"])
        except Rejected as exc:
            return f"Events: Error from server ({exc.reason}): {exc.message}"
        except Unreachable as exc:
            return f"Events: cannot reach the Kubernetes API server: {exc}"

    async def task_detail(self, request: web.Request) -> web.Response:
        obj = self._cached(request, self.tasks)
        if obj is None:
            return self._missing(request, SCHEDULED_PLURAL)
        events = await self._events(SCHEDULED_KIND, obj)
        view = pages.task_detail(obj, events, self.clock(), self.zone, task_row(obj))
        return self._respond(request, view)

    async def schedule_detail(self, request: web.Request) -> web.Response:
        obj = self._cached(request, self.schedules)
        if obj is None:
            return self._missing(request, PERIODIC_PLURAL)
        meta = obj["metadata"]
        runs = [run for run in self.tasks.objects()
                if (run["metadata"].get("labels") or {}).get(PARENT_LABEL) == meta["name"]
                and run["metadata"].get("namespace") == meta["namespace"]
                and controller_uid(run["metadata"]) == meta.get("uid")]
        events = await self._events(PERIODIC_KIND, obj)
        view = pages.schedule_detail(obj, runs, events, self.clock(), self.zone,
                                     schedule_row(obj))
        return self._respond(request, view)

    async def full_yaml(self, request: web.Request) -> web.Response:
        plural = request.match_info["plural"]
        if plural not in (SCHEDULED_PLURAL, PERIODIC_PLURAL):
            raise web.HTTPNotFound()
        obj = self._cached(request, self.tasks if plural == SCHEDULED_PLURAL else self.schedules)
        if obj is None:
            raise web.HTTPNotFound(text="not found (deleted, or not visible to your "
                                   "credentials)")
        return web.Response(text=as_yaml(obj), content_type="text/plain", charset="utf-8")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC_TYPES:
            raise web.HTTPNotFound()
        return web.Response(body=(STATIC / name).read_bytes(), content_type=STATIC_TYPES[name])

    # ---- live updates and actions -------------------------------------------------------

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        queue = self.hub.subscribe()
        try:
            await response.write(b": connected\n\n")
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                await response.write(f"data: {message}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.hub.unsubscribe(queue)
        return response

    async def action(self, request: web.Request) -> web.Response:
        if not secrets.compare_digest(request.headers.get("X-Dashboard-Token", ""), self.token):
            raise web.HTTPForbidden(text="actions come from the dashboard's own page")
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="the request body must be JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="the request body must be a JSON object")
        outcome = await asyncio.to_thread(perform, self.objects, body, self.zone)
        return web.json_response({"ok": outcome.ok, "message": outcome.message},
                                 status=200 if outcome.ok else 422)

    # ---- the application ----------------------------------------------------------------

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Only requests naming our own address (no DNS rebinding from a web page), and
        the same security headers on every answer."""
        if self.allowed_hosts is not None and request.host not in self.allowed_hosts:
            raise web.HTTPForbidden(text=f"unexpected Host {request.host!r}")
        response = await handler(request)
        if not response.prepared:
            response.headers.update(HEADERS)
        return response

    def app(self) -> web.Application:
        application = web.Application(middlewares=[self.guard])
        d = "{namespace}/{name}"
        application.add_routes([
            web.get("/", self.overview),
            web.get(f"/{SCHEDULED_PLURAL}", self.task_list),
            web.get(f"/{SCHEDULED_PLURAL}/{d}", self.task_detail),
            web.get(f"/{PERIODIC_PLURAL}", self.schedule_list),
            web.get(f"/{PERIODIC_PLURAL}/{d}", self.schedule_detail),
            web.get("/yaml/{plural}/" + d, self.full_yaml),
            web.get("/static/{name}", self.static),
            web.get("/events", self.stream),
            web.post("/action", self.action),
        ])

        async def attach(_: web.Application) -> None:
            self.hub.attach(asyncio.get_running_loop())

        application.on_startup.append(attach)
        return application
