"""`docker-nat-exporter serve`: validate the configuration, then run the HTTP exporter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass

from aiohttp import web

from exporter import __version__, logs
from exporter.config import ConfigError, parse_duration, parse_listen, parse_percent
from exporter.serve.collector import SnapshotCollector
from exporter.serve.exposition import ServeRegistry
from exporter.serve.refresh import RefreshOptions
from exporter.serve.scheduler import Holder, Scheduler
from exporter.sources.arenas import one_malloc_arena
from exporter.sources.watch import DockerEvents, NetEvents, NftEvents, NftMonitor
from exporter.web.app import make_app
from exporter.web.webconfig import WebConfig, WebConfigError, load_web_config

log = logging.getLogger("docker_nat_exporter")
KEEPALIVE_TIMEOUT = 15.0  # seconds; aiohttp's run_app default is 75


@dataclass(frozen=True, slots=True)
class ServeConfig:
    host: str
    port: int
    telemetry_path: str
    web: WebConfig
    max_requests: int
    interval: float
    debounce: float
    host_interval: float
    max_bindings: int
    log_level: str
    log_format: str
    cpu_budget: float = 0.05  # a fraction of one core (serve.pace)


def _count(text: str, flag: str) -> int:
    if not text.strip().isdigit():
        raise ConfigError(f"--{flag}: {text!r} is not a non-negative whole number")
    return int(text)


def serve_config(v: dict) -> ServeConfig:
    host, port = parse_listen(v["web.listen-address"])
    path = v["web.telemetry-path"]
    if not path.startswith("/") or path in ("/", "/-/healthy", "/-/ready"):
        raise ConfigError(f"--web.telemetry-path: {path!r} must be a path like /metrics")
    try:
        web_config = load_web_config(v["web.config.file"] or None)
    except WebConfigError as exc:
        raise ConfigError(f"--web.config.file: {exc}") from None
    for name in ("log.level", "log.format"):
        if v[name] not in {"log.level": logs.LEVELS, "log.format": ("logfmt", "json")}[name]:
            raise ConfigError(f"--{name}: {v[name]!r} is not allowed")
    return ServeConfig(
        host=host,
        port=port,
        telemetry_path=path,
        web=web_config,
        max_requests=_count(v["web.max-requests"], "web.max-requests"),
        interval=parse_duration(v["refresh.interval"], "refresh.interval"),
        debounce=parse_duration(v["refresh.debounce"], "refresh.debounce"),
        cpu_budget=parse_percent(v["refresh.cpu-budget"], "refresh.cpu-budget"),
        host_interval=parse_duration(
            v["refresh.host-facts-interval"], "refresh.host-facts-interval"
        ),
        max_bindings=_count(v["max-bindings"], "max-bindings"),
        log_level=v["log.level"],
        log_format=v["log.format"],
    )


def build_app(cfg: ServeConfig, opts: RefreshOptions, snapshot_fn=None, watch: bool = True):
    """The application with its refresh loop and watchers in one cleanup context."""
    holder = Holder()
    registry = ServeRegistry(SnapshotCollector(holder, cfg.max_bindings))
    kwargs = {"snapshot_fn": snapshot_fn} if snapshot_fn else {}
    sched = Scheduler(opts, cfg.interval, cfg.debounce, cfg.host_interval, holder, **kwargs,
                      cpu_budget=cfg.cpu_budget)  # fmt: skip

    @contextlib.asynccontextmanager
    async def background(app: web.Application):
        loop = asyncio.get_running_loop()

        def notify(why: str) -> None:
            loop.call_soon_threadsafe(sched.trigger, why)

        tasks, nft = [], _ruleset_watcher(sched) if watch else None
        if nft:  # subscribed before the first refresh reads: no change falls in between
            tasks.append(asyncio.create_task(nft.run(), name="nft-watch"))
        if watch:  # links, addresses, routes, rules, forwarding switches: as a rule change
            tasks.append(
                asyncio.create_task(
                    NetEvents(sched.trigger, sched.state.net).run(), name="net-watch"
                )
            )
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(sched.run(), name="refresh"))
        events = DockerEvents(opts.docker_host, notify) if watch else None
        if events:
            events.start()
        try:
            yield
        finally:
            if events:
                events.close()
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            if isinstance(nft, NftMonitor):
                await nft.close()
            elif nft:
                nft.close()

    page_refresh = round(min(max(cfg.interval, 5.0), 60.0))  # the page follows the snapshots
    app = make_app(
        holder,
        registry,
        cfg.web,
        cfg.telemetry_path,
        cfg.max_requests,
        cleanup=background,
        page_refresh=page_refresh,
    )
    return app, holder, sched


def _ruleset_watcher(sched: Scheduler) -> NftEvents | NftMonitor | None:
    """The kernel's nf_tables notifications; `nft monitor` where no netlink socket can be had."""
    try:
        NftEvents.open().close()
    except OSError as exc:
        log.debug("nf_tables notifications: %s; trying nft monitor", exc)
        return NftMonitor(sched) if NftMonitor.available() else None
    return NftEvents(sched)


def run_service(ns, opts: RefreshOptions) -> int:
    cfg = serve_config(vars(ns))
    logs.setup(cfg.log_level, cfg.log_format)
    one_malloc_arena()  # before the first refresh's threads
    for w in cfg.web.warnings:
        log.warning("web config: %s", w)
    app, _, _ = build_app(cfg, opts)

    def listening(addresses: list) -> None:
        log.info(
            "docker-nat-exporter %s listening on %s%s (docker %s, refresh every %gs)",
            __version__,
            ", ".join(_address(a) for a in addresses),
            " with TLS" if cfg.web.tls else "",
            opts.docker_host,
            cfg.interval,
        )

    try:
        asyncio.run(serve(app, cfg, listening))
    except OSError as exc:
        raise ConfigError(f"--web.listen-address: cannot listen: {exc.strerror or exc}") from None
    return 0


async def serve(app: web.Application, cfg: ServeConfig, listening) -> None:
    """Serve `app` until SIGINT or SIGTERM. `listening` gets the bound addresses once the socket
    is bound and listening, so a port in use never logs "listening on"."""
    # keepalive_timeout also bounds a client trickling its request headers: aiohttp closes a
    # connection still waiting for a complete request this long after it opened (or went idle)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=KEEPALIVE_TIMEOUT)
    await runner.setup()
    try:
        site = web.TCPSite(runner, cfg.host or None, cfg.port, ssl_context=cfg.web.ssl_context())
        await site.start()
        listening(runner.addresses)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def _address(sockname) -> str:
    host, port = sockname[0], sockname[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
