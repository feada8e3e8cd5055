"""The dashboard's HTTP server (aiohttp, already the operator's through kopf): the page and its
assets, the list and rollout documents, the event stream, and the steering actions. A thin shell:
what to show is `rules`, who may ask is `guard` (and in-cluster `incluster`), an action is the
plugin's own `run_verb`.

One watch over the ModelDeployments (all namespaces when the caller may list them there, else the
kubeconfig's namespace) runs in a thread; each change goes to every open event stream. Events and
pods are read when a rollout page asks, which it does when that ModelDeployment changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import secrets
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from aiohttp import web

from modelship.core import control
from modelship.core.manifests import MODEL_LABEL
from modelship.kube.storage import (
    SUBJECT_ACCESS_REVIEWS_PATH,
    Forbidden,
    KubeError,
    Storage,
    md_path,
    pods_path,
)
from modelship.plugin.dashboard import charts, guard, incluster, rules
from modelship.plugin.verbs import run_verb
from modelship.plugin.watch import follow_all

ACTIONS = ("promote", "abort", "retry", "pause", "resume", "undo")  # promote {"full": true}: promote --full
HISTORY = 720  # weight points kept per ModelDeployment (one per change seen)
_KEEPALIVE_SECONDS = 15
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
Key = tuple[str, str]


def _key(obj: dict[str, Any]) -> Key:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


@dataclass
class Hub:
    """What the watch has seen: each ModelDeployment, its weights over time, and the streams to tell."""

    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    history: dict[Key, list[dict[str, Any]]] = field(default_factory=dict)
    streams: set[asyncio.Queue[str | None]] = field(default_factory=set)
    scope: str = ""  # "all namespaces" or the namespace watched
    failure: str | None = None  # why the watch stopped, shown on the page

    def seen(self, kind: str, obj: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        if kind == "RESET":
            self.objects.clear()
            self._tell("reset", {})
            return
        key = _key(obj)
        if kind == "DELETED":
            self.objects.pop(key, None)
            self.history.pop(key, None)
            self._tell("gone", {"namespace": key[0], "name": key[1]})
            return
        self.objects[key] = obj
        try:
            point = rules.weight_point(obj, now)
            points = self.history.setdefault(key, [])
            if (
                not points
                or points[-1]["actualWeight"] != point["actualWeight"]
                or points[-1]["weight"] != point["weight"]
            ):
                points.append(point)
                del points[:-HISTORY]
            self._tell("row", rules.row(obj, now))
        except ValueError as err:  # an object this version cannot read: say so, keep watching
            self._tell("row", {"namespace": key[0], "name": key[1], "phase": "Unreadable", "why": str(err)})

    def fail(self, why: str) -> None:
        self.failure = why
        self._tell("failure", {"message": why})

    def rows(self) -> list[dict[str, Any]]:
        now, out = datetime.now(UTC), []
        for key in sorted(self.objects):
            try:
                out.append(rules.row(self.objects[key], now))
            except ValueError as err:
                out.append({"namespace": key[0], "name": key[1], "phase": "Unreadable", "why": str(err)})
        return out

    def close(self) -> None:
        """End every open event stream (the server is stopping)."""
        for queue in self.streams:
            queue.put_nowait(None)

    def _tell(self, event: str, data: dict[str, Any]) -> None:
        message = f"event: {event}\ndata: {json.dumps(data)}\n\n"
        for queue in self.streams:
            queue.put_nowait(message)


def scope_of(kube: Storage, namespace: str, all_namespaces: bool) -> str | None:
    """Where to watch: None (all namespaces) when asked and allowed, else `namespace`."""
    if not all_namespaces:
        return namespace
    try:
        kube.request("GET", md_path(None), query={"limit": "1"})
    except Forbidden:
        return namespace
    return None


def _watch(kube: Storage, scope: str | None, hub: Hub, loop: asyncio.AbstractEventLoop) -> None:
    try:
        for kind, obj in follow_all(kube, scope):
            loop.call_soon_threadsafe(hub.seen, kind, obj)
    except Exception as err:  # the thread's end: tell the page rather than die silently
        loop.call_soon_threadsafe(hub.fail, f"the watch stopped: {err}")


def _asset(name: str) -> bytes:
    return resources.files("modelship.plugin.dashboard").joinpath("static", name).read_bytes()


def app(
    kube: Storage,
    hub: Hub,
    site: guard.Site,
    token: str,
    prometheus: str | None = None,
    mode: incluster.InCluster | None = None,
) -> web.Application:
    """The dashboard's routes, each behind `guard.refusal`. `mode`: in-cluster (behind an auth
    proxy), where `token` is the secret each person's page token is made from."""

    def who(request: web.Request) -> incluster.Identity | str:
        return "" if mode is None else incluster.identity(request.headers, mode)

    def token_of(request: web.Request) -> str:
        return token if mode is None else incluster.session_token(token.encode(), who(request))

    @web.middleware
    async def guarded(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        named = who(request)
        # The proxy names everyone it lets through: a request it did not name did not come through it.
        unnamed = mode is not None and mode.user_header is not None and isinstance(named, str)
        public = request.path == guard.HEALTH or request.path.startswith("/static/")
        why = str(named) if unnamed and not public else None
        why = why or guard.refusal(
            request.path, request.headers, request.query, request.cookies, site, token_of(request)
        )
        if why is not None:
            return web.json_response({"message": why}, status=403)
        response = await handler(request)
        # The page loads nothing from elsewhere, and may not be framed by another site.
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    async def page(request: web.Request) -> web.Response:
        mine = token_of(request)
        named = who(request)
        actions = "on" if mode is None or incluster.action_refusal(mode, named) is None else "off"
        text = (
            _asset("index.html")
            .decode()
            .replace("{{TOKEN}}", mine)
            .replace("{{ACTIONS}}", actions)
            .replace("{{USER}}", html.escape(named.user if isinstance(named, incluster.Identity) else ""))
        )
        response = web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-store"})
        if mode is None:  # a reload of the printed address's page; in-cluster every load gets its token
            response.set_cookie(guard.TOKEN_COOKIE, mine, httponly=True, samesite="Strict", path="/")
        return response

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        kind = next((t for ext, t in _TYPES.items() if name.endswith(ext)), None)
        if kind is None or "/" in name or name.startswith("."):
            raise web.HTTPNotFound()
        try:
            body = _asset(name)
        except FileNotFoundError:
            raise web.HTTPNotFound() from None
        return web.Response(body=body, content_type=kind)

    async def listing(_: web.Request) -> web.Response:
        return web.json_response({"scope": hub.scope, "failure": hub.failure, "rows": hub.rows()})

    async def one(request: web.Request) -> web.Response:
        key = (request.match_info["namespace"], request.match_info["name"])
        obj = hub.objects.get(key)
        if obj is None:
            return web.json_response(
                {"message": f'modeldeployment "{key[1]}" not found in "{key[0]}"'}, status=404
            )

        def read() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
            missing: list[str] = []  # what the caller may not read: said on the page, not an error
            events: list[dict[str, Any]] = []
            pods: list[dict[str, Any]] = []
            try:
                events = kube.events_of(key[0], obj["metadata"]["uid"])
            except Forbidden as err:
                missing.append(f"events: {err}")
            try:
                pods = kube.items(pods_path(key[0]), labelSelector=f"{MODEL_LABEL}={key[1]}")
            except Forbidden as err:
                missing.append(f"pods: {err}")
            return events, pods, missing

        events, pods, missing = await asyncio.to_thread(read)
        try:
            doc = rules.detail(obj, events, pods, list(hub.history.get(key, [])), datetime.now(UTC))
        except ValueError as err:  # a spec or status this version cannot read: say so
            return web.json_response({"message": f"cannot read {key[0]}/{key[1]}: {err}"}, status=422)
        return web.json_response({**doc, "unreadable": missing})

    async def metrics(request: web.Request) -> web.Response:
        key = (request.match_info["namespace"], request.match_info["name"])
        obj = hub.objects.get(key)
        if obj is None:
            return web.json_response(
                {"message": f'modeldeployment "{key[1]}" not found in "{key[0]}"'}, status=404
            )
        history = list(hub.history.get(key, []))
        return web.json_response(await asyncio.to_thread(charts.read, kube, obj, history, prometheus))

    async def act(request: web.Request) -> web.Response:
        namespace, name, verb = (request.match_info[k] for k in ("namespace", "name", "verb"))
        if verb not in ACTIONS:
            return web.json_response(
                {"message": f"unknown action {verb!r}: one of {', '.join(ACTIONS)}"}, status=404
            )
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            return web.json_response({"message": 'the body must be JSON, such as {"full": true}'}, status=400)
        full = bool(body.get("full")) if isinstance(body, dict) else False
        actor = kube
        try:
            if mode is not None:
                person = who(request)
                why = incluster.action_refusal(mode, person)
                if why is not None or not isinstance(person, incluster.Identity):
                    return web.json_response({"message": why}, status=403)
                review = await asyncio.to_thread(
                    kube.create, SUBJECT_ACCESS_REVIEWS_PATH, incluster.access_review(person, namespace, name)
                )
                why = incluster.review_refusal(person, namespace, name, review.get("status") or {})
                if why is not None:
                    return web.json_response({"message": why}, status=403)
                actor = kube.impersonating(person.user, person.groups)  # RBAC and audit see the person
            said = await asyncio.to_thread(run_verb, actor, namespace, name, verb, full and verb == "promote")
        except Forbidden as err:  # the API server's own words: RBAC decided
            message = err.body.get("message", str(err)) if isinstance(err.body, dict) else str(err)
            return web.json_response({"message": message}, status=403)
        except control.NotApplicable as err:
            return web.json_response({"message": str(err)}, status=409)
        except KubeError as err:
            return web.json_response({"message": str(err)}, status=502)
        return web.json_response({"message": said})

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        hub.streams.add(queue)
        try:
            await response.write(f"event: rows\ndata: {json.dumps(hub.rows())}\n\n".encode())
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), _KEEPALIVE_SECONDS)
                except TimeoutError:
                    message = ": keep-alive\n\n"
                if message is None:
                    break
                await response.write(message.encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            hub.streams.discard(queue)
        return response

    application = web.Application(middlewares=[guarded])
    application.router.add_get("/", page)
    application.router.add_get(guard.HEALTH, health)
    application.router.add_get("/static/{name}", asset)
    application.router.add_get("/api/list", listing)
    application.router.add_get("/api/stream", stream)
    application.router.add_get("/api/md/{namespace}/{name}", one)
    application.router.add_get("/api/md/{namespace}/{name}/metrics", metrics)
    application.router.add_post("/api/md/{namespace}/{name}/{verb}", act)
    return application


@dataclass
class Running:
    """A started dashboard: where it listens, its session token (in-cluster: the secret people's
    tokens are made from), and how to stop it."""

    port: int
    token: str
    stop: Callable[[], None]

    @property
    def url(self) -> str:
        """The address to open (with the token: print it only to the person who started it)."""
        return f"http://127.0.0.1:{self.port}/?{guard.TOKEN_QUERY}={self.token}"


def start(
    kube: Storage,
    namespace: str,
    all_namespaces: bool,
    port: int,
    prometheus: str | None = None,
    mode: incluster.InCluster | None = None,
    host: str = "127.0.0.1",
) -> Running:
    """Serve the dashboard in a thread of its own; returns once it listens on `host`. Port 0: any
    free port. `prometheus`: the address charts use for a ModelDeployment that names none in its
    analysis. `mode`: in-cluster, behind an auth proxy (then `host` may be 0.0.0.0)."""
    token = secrets.token_urlsafe(24)
    ready: dict[str, Any] = {}
    started = threading.Event()
    loop = asyncio.new_event_loop()

    async def main() -> None:
        hub = Hub()
        where = await asyncio.to_thread(scope_of, kube, namespace, all_namespaces)
        hub.scope = "all namespaces" if where is None else where
        # Bound first: the Host check needs the port, also when the system chose it (port 0).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        bound = sock.getsockname()[1]
        site = guard.local(bound) if mode is None else guard.public(mode.hosts)
        served = app(kube, hub, site, token, prometheus, mode)
        runner = web.AppRunner(served, access_log=None, shutdown_timeout=5)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        threading.Thread(
            target=_watch, args=(kube, where, hub, loop), daemon=True, name="dashboard-watch"
        ).start()
        ready["port"], ready["runner"], ready["hub"] = bound, runner, hub
        started.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
        except BaseException as err:
            ready["error"] = err
            started.set()
            return
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True, name="dashboard")
    thread.start()
    started.wait()
    if "error" in ready:
        raise ready["error"]

    def stop() -> None:
        async def down() -> None:
            ready["hub"].close()
            await ready["runner"].cleanup()

        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(down(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    return Running(ready["port"], token, stop)
