"""The aiohttp application: /metrics, the status page, /-/healthy and /-/ready.

Scrapes render the latest snapshot in a worker thread and cache the text per snapshot and
format, so concurrent scrapers share one rendering and never wait for Docker or iptables.
`/metrics?name[]=docker_nat_port_state&name[]=…` keeps only those series, as client_python and
node_exporter do (not cached: any names may come).
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable

from aiohttp import web
from aiohttp.payload import Payload
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from exporter.web.page import status_page
from exporter.web.security import security_middleware
from exporter.web.webconfig import WebConfig

HOLDER = web.AppKey("holder", object)
MAX_BODY = 4096
SLICE = 256 * 1024


class Body(Payload):
    """A cached body, sent in slices that are views of it. As one bytes object it is copied
    whole per response (aiohttp joins the headers to it before Python 3.12.9, asyncio's
    transport copies what the socket does not take at once): 16 concurrent scrapes of 2.7 MB
    cost that CPU and as many transient copies; a slice waits for the socket to drain first."""

    def __init__(self, value: bytes, content_type: str) -> None:
        super().__init__(value, content_type=content_type)
        self._size = len(value)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self._value.decode(encoding, errors)

    async def write(self, writer) -> None:
        view = memoryview(self._value)
        for at in range(0, len(view), SLICE):
            await writer.write(view[at : at + SLICE])


class Renderer:
    """Exposition bytes per (snapshot, format, gzip), built once in a thread."""

    def __init__(self, registry: CollectorRegistry, holder) -> None:
        self.registry, self.holder = registry, holder
        self.cache: dict[tuple[str, bool], tuple[object, bytes]] = {}
        self.lock = asyncio.Lock()

    async def render(self, accept: str, gzipped: bool, names=()) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept)
        if names:
            only = Only(self.registry, frozenset(names))
            return await asyncio.to_thread(_encode, encoder, only, gzipped), content_type
        snap, key = self.holder.snapshot, (content_type, gzipped)
        cached = self.cache.get(key)
        if cached is None or cached[0] is not snap:
            async with self.lock:
                cached = self.cache.get(key)
                if cached is None or cached[0] is not snap:
                    self._forget(snap)  # an older snapshot's bodies, freed before this one's
                    body = await asyncio.to_thread(_encode, encoder, self.registry, gzipped)
                    cached = self.cache[key] = (snap, body)
        return cached[1], content_type

    def _forget(self, snap) -> None:
        for key in [k for k, (was, _) in self.cache.items() if was is not snap]:
            del self.cache[key]


class Only:
    """The samples of `registry` named in `names` (a sample's name, as client_python filters:
    `docker_nat_port_info`, `..._total`), with their families' HELP and TYPE."""

    def __init__(self, registry: CollectorRegistry, names: frozenset[str]) -> None:
        self.registry, self.names = registry, names

    def collect(self):
        for m in self.registry.collect():
            samples = [x for x in m.samples if x.name in self.names]
            if samples:
                kept = Metric(m.name, m.documentation, m.type, m.unit)
                kept.samples = samples
                yield kept


def _encode(encoder, registry, gzipped: bool) -> bytes:
    fast = getattr(registry, "exposition", None)  # serve.exposition: the same text, sooner
    if fast is not None:
        return fast(encoder, gzipped)
    body = encoder(registry)
    return gzip.compress(body, 1) if gzipped else body


def limit_middleware(max_requests: int):
    sem = asyncio.Semaphore(max_requests) if max_requests > 0 else None

    @web.middleware
    async def middleware(request: web.Request, handler):
        if sem is None:
            return await handler(request)
        if sem.locked():
            return web.Response(status=503, text="too many concurrent requests\n")
        async with sem:
            return await handler(request)

    return middleware


@web.middleware
async def body_limit_middleware(request: web.Request, handler):
    # nothing here reads a body, so aiohttp's client_max_size alone would never refuse one
    if (request.content_length or 0) > MAX_BODY:
        return web.Response(status=413, text="request body too large\n")
    return await handler(request)


def make_app(
    holder,
    registry: CollectorRegistry,
    web_config: WebConfig,
    telemetry_path: str = "/metrics",
    max_requests: int = 40,
    cleanup: Callable | None = None,
    page_refresh: int = 15,
) -> web.Application:
    """`page_refresh`: seconds between reloads of the status page."""
    app = web.Application(
        middlewares=[
            body_limit_middleware,
            limit_middleware(max_requests),
            security_middleware(web_config),
        ],
        client_max_size=MAX_BODY,
    )
    app[HOLDER] = holder
    renderer = Renderer(registry, holder)

    async def metrics(request: web.Request) -> web.Response:
        gzipped = "gzip" in request.headers.get("Accept-Encoding", "")
        names = request.query.getall("name[]", [])
        accept = request.headers.get("Accept", "")
        body, content_type = await renderer.render(accept, gzipped, names)
        headers = {"Content-Encoding": "gzip"} if gzipped else {}
        return web.Response(body=Body(body, content_type), headers=headers)

    async def healthy(request: web.Request) -> web.Response:
        return web.Response(text="OK\n")

    async def ready(request: web.Request) -> web.Response:
        if holder.snapshot is None:
            return web.Response(status=503, text="no snapshot yet\n")
        return web.Response(text="OK\n")

    async def index(request: web.Request) -> web.Response:
        return web.Response(
            text=status_page(holder.snapshot, telemetry_path, page_refresh),
            content_type="text/html",
        )

    app.router.add_get(telemetry_path, metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_get("/", index)
    if cleanup is not None:
        app.cleanup_ctx.append(cleanup)
    return app
