"""The aiohttp application: /metrics, the status page, /-/healthy and /-/ready.

Scrapes render the latest snapshot in a worker thread and cache the text per snapshot and
format, so concurrent scrapers share one rendering and never wait for Docker or iptables.
`/metrics?name[]=docker_nat_port_state&name[]=…` keeps only those series, as client_python and
node_exporter do (not cached: any names may come).
"""

from __future__ import annotations

import asyncio
import gzip
import html
import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from exporter import __version__
from exporter.cli.report import header_lines
from exporter.web.security import security_middleware
from exporter.web.webconfig import WebConfig

HOLDER = web.AppKey("holder", object)
MAX_BODY = 4096


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
                    body = await asyncio.to_thread(_encode, encoder, self.registry, gzipped)
                    cached = self.cache[key] = (snap, body)
        return cached[1], content_type


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
) -> web.Application:
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
        headers = {"Content-Type": content_type}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    async def healthy(request: web.Request) -> web.Response:
        return web.Response(text="OK\n")

    async def ready(request: web.Request) -> web.Response:
        if holder.snapshot is None:
            return web.Response(status=503, text="no snapshot yet\n")
        return web.Response(text="OK\n")

    async def index(request: web.Request) -> web.Response:
        return web.Response(
            text=status_page(holder.snapshot, telemetry_path), content_type="text/html"
        )

    app.router.add_get(telemetry_path, metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_get("/", index)
    if cleanup is not None:
        app.cleanup_ctx.append(cleanup)
    return app


def _escape(text: str) -> str:
    # lone surrogates (JSON allows them) cannot be sent as UTF-8: they become "?"
    return html.escape(text).encode("utf-8", "replace").decode("utf-8")


def status_page(s, telemetry_path: str) -> str:
    e = _escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>docker-nat-exporter</title>",
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}"
        ".bad{color:#b00}</style></head><body>",
        f"<h1>docker-nat-exporter {e(__version__)}</h1>",
        f"<p><a href='{e(telemetry_path)}'>Metrics</a> · <a href='/-/healthy'>healthy</a> · "
        "<a href='/-/ready'>ready</a></p>",
    ]
    if s is None:
        parts.append("<p>No snapshot yet: the first refresh is running.</p></body></html>")
        return "".join(parts)
    age = time.time() - s.taken_at
    parts.append(f"<p>Snapshot taken {age:.1f} s ago in {s.duration_seconds:.3f} s.</p>")
    parts.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in header_lines(s)) + "</ul>")
    bad = [p for p in s.ports if p.verdict.state != "ok"]
    parts.append(f"<h2>Ports not ok: {len(bad)} of {len(s.ports)}</h2>")
    if bad:
        parts.append("<table><tr><th>state</th><th>container</th><th>port</th><th>reason</th></tr>")
        for p in bad:
            b = p.binding
            port = f"{b.host_ip_display}:{b.host_port}/{b.protocol}"
            parts.append(
                f"<tr class='bad'><td>{e(p.verdict.state)}</td><td>{e(b.container)}</td>"
                f"<td>{e(port)}</td><td>{e(p.verdict.reason)}</td></tr>"
            )
        parts.append("</table>")
    missing = [j for j in s.jumps if not j.present]
    if missing:
        parts.append("<h2>Missing jumps</h2><ul>")
        parts += [f"<li>{e(j.expected.family)}: {e(j.expected.line)}</li>" for j in missing]
        parts.append("</ul>")
    if s.stale:
        parts.append("<h2>Stale rules</h2><ul>")
        parts += [f"<li>{e(r.family)} {e(r.ref)}: {e(r.text)}</li>" for r in s.stale]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "".join(parts)
