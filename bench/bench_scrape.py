"""Scrape latency of the exporter's /metrics with many bindings (a benchmark, not a test).

Builds a synthetic Docker 20.10 host with N published IPv4 bindings (Docker API JSON shaped
like tests/fixtures/d2010_*.json plus the matching iptables-save text: DNAT, ACCEPT and hairpin
MASQUERADE per binding; a few DNATs left out so some ports are `proxied`), serves it with
exporter.service.build_app in a separate process on 127.0.0.1, and scrapes it with aiohttp
clients: 1 and 16 concurrent scrapers, R requests each.

    python bench/bench_scrape.py [--bindings 1000] [--requests 200] [--concurrency 1,16]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gzip
import ipaddress
import json
import multiprocessing
import pathlib
import resource
import statistics
import sys
import time
from collections import Counter

FIX = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures"
HOST_ADDRS = (("lo", "127.0.0.1"), ("eth0", "192.0.2.1"), ("docker0", "172.17.0.1"))
PORTS_PER_CONTAINER = 2
FIRST_HOST_PORT = 20000
MISSING_DNAT_EVERY = 100  # every 100th binding has no DNAT: proxied, with a reason


def _load(name: str):
    return json.loads((FIX / f"d2010_{name}.json").read_text())


def synthetic_docker(bindings: int):
    """(containers, networks) JSON: bindings/2 containers on the default bridge, 2 ports each."""
    template = next(c for c in _load("containers") if c["Names"] == ["/web"])
    base = ipaddress.ip_address("172.17.0.2")
    containers, port = [], FIRST_HOST_PORT
    for i in range((bindings + PORTS_PER_CONTAINER - 1) // PORTS_PER_CONTAINER):
        c = copy.deepcopy(template)
        c["Id"] = f"{i:064x}"
        c["Names"] = [f"/svc{i:04d}"]
        ports = []
        for k in range(min(PORTS_PER_CONTAINER, bindings - len(containers) * PORTS_PER_CONTAINER)):
            ports.append({"IP": "0.0.0.0", "PrivatePort": 8000 + k, "PublicPort": port,
                          "Type": "tcp"})  # fmt: skip
            port += 1
        c["Ports"] = ports
        net = c["NetworkSettings"]["Networks"]["bridge"]
        net["IPAddress"] = str(base + i)
        net["EndpointID"] = f"{i:064x}"
        hi, lo = divmod(i + 2, 256)
        net["MacAddress"] = f"02:42:ac:11:{hi:02x}:{lo:02x}"
        containers.append(c)
    return containers, _load("networks")


def synthetic_rules(containers) -> str:
    """iptables-save text: the fixture's docker0 layout plus per-binding rules."""
    head_filter, head_nat = [], []
    section = None
    for line in (FIX / "d2010_iptables.txt").read_text().splitlines():
        if line.startswith("*"):
            section = line
        if "br-" in line or "--dport" in line or line.startswith(("#", "COMMIT")):
            continue  # keep docker0's chains and jumps, drop the fixture's own bindings
        (head_filter if section == "*filter" else head_nat).append(line)
    accept, masq, dnat = [], [], []
    n = 0
    for c in containers:
        ip = c["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        for p in c["Ports"]:
            cport, hport = p["PrivatePort"], p["PublicPort"]
            accept.append(f"-A DOCKER -d {ip}/32 ! -i docker0 -o docker0 -p tcp -m tcp "
                          f"--dport {cport} -j ACCEPT")  # fmt: skip
            masq.append(f"-A POSTROUTING -s {ip}/32 -d {ip}/32 -p tcp -m tcp --dport {cport} "
                        "-j MASQUERADE")  # fmt: skip
            if n % MISSING_DNAT_EVERY != MISSING_DNAT_EVERY - 1:
                dnat.append(f"-A DOCKER ! -i docker0 -p tcp -m tcp --dport {hport} -j DNAT "
                            f"--to-destination {ip}:{cport}")  # fmt: skip
            n += 1
    lines = [*head_filter, *accept, "COMMIT", *head_nat, *masq, *dnat, "COMMIT"]
    return "\n".join(lines) + "\n"


def build_snapshot(bindings: int):
    from exporter.analysis import FamilyRules
    from exporter.docker_decode import DaemonHints
    from exporter.iptsave import parse_save
    from exporter.snapshot import build
    from exporter.sources.docker_api import DockerRaw

    containers, networks = synthetic_docker(bindings)
    text = synthetic_rules(containers)
    hints = DaemonHints(pid=4242, cmdline=("dockerd",), proxy_argvs=None)
    raw = DockerRaw(containers, networks, _load("info"), _load("version"), hints)
    t = time.perf_counter()
    rules = {
        "ipv4": FamilyRules("ipv4", (parse_save(text, "ipv4", "nf_tables"),)),
        "ipv6": FamilyRules("ipv6", (parse_save("", "ipv6", "nf_tables"),)),
    }
    snap = build(time.time(), raw, "", rules, HOST_ADDRS)
    return snap, time.perf_counter() - t, text.count("\n-A ")


def serve(bindings: int, conn) -> None:
    """Child process: build the snapshot, serve it, report the port, run until killed."""
    from aiohttp import web
    from prometheus_client.exposition import generate_latest

    from exporter.refresh import RefreshOptions
    from exporter.service import ServeConfig, build_app
    from exporter.web.webconfig import WebConfig

    snap, build_seconds, rule_count = build_snapshot(bindings)
    cfg = ServeConfig(host="127.0.0.1", port=0, telemetry_path="/metrics", web=WebConfig(),
                      max_requests=40, interval=3600.0, debounce=0.01, host_interval=3600.0,
                      max_bindings=5000, log_level="info", log_format="logfmt")  # fmt: skip
    app, holder, _ = build_app(cfg, RefreshOptions(host_facts=False), lambda o: snap, watch=False)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        while holder.snapshot is None:
            await asyncio.sleep(0.01)
        registry, renders = _registry_of(app), []
        for _ in range(20):  # paid once per snapshot (the app caches the text), never per scrape
            t = time.perf_counter()
            generate_latest(registry)
            renders.append(time.perf_counter() - t)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        conn.send({"port": runner.addresses[0][1], "build": build_seconds, "rules": rule_count,
                   "ports": len(snap.ports), "render": renders, "rss_kib": rss,
                   "states": Counter(p.verdict.state for p in snap.ports)})  # fmt: skip
        while True:
            await asyncio.sleep(3600)

    asyncio.run(main())


def _registry_of(app):
    """A registry equal to the one behind /metrics (same collector, same holder)."""
    from prometheus_client import CollectorRegistry

    from exporter.collector import SnapshotCollector
    from exporter.web.app import HOLDER

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(app[HOLDER], 5000))
    return registry


async def scrape(url: str, scrapers: int, requests: int, headers: dict[str, str]):
    import aiohttp

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    sizes: set[int] = set()
    connector = aiohttp.TCPConnector(limit=scrapers)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:

        async def one_scraper() -> None:
            for _ in range(requests):
                t = time.perf_counter()
                async with session.get(url, headers=headers) as r:
                    body = await r.read()
                latencies.append(time.perf_counter() - t)
                statuses[r.status] = statuses.get(r.status, 0) + 1
                sizes.add(len(body))

        started = time.perf_counter()
        await asyncio.gather(*(one_scraper() for _ in range(scrapers)))
        wall = time.perf_counter() - started
    return latencies, statuses, sizes, wall


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bindings", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=200, help="requests per scraper")
    ap.add_argument("--concurrency", default="1,16", help="comma-separated scraper counts")
    args = ap.parse_args()

    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=serve, args=(args.bindings, child), daemon=True)
    server.start()
    try:
        if not parent.poll(120):
            print("server did not start within 120 s", file=sys.stderr)
            return 1
        info = parent.recv()
        url = f"http://127.0.0.1:{info['port']}/metrics"
        states = ", ".join(f"{k} {v}" for k, v in sorted(info["states"].items()))
        print(f"synthetic host: {info['ports']} bindings ({states}), {info['rules']} rules; "
              f"snapshot build (parse + analyse) {info['build'] * 1000:.0f} ms")  # fmt: skip
        r = info["render"]
        print(f"exposition render per snapshot (uncached, in-process): "
              f"p50 {statistics.median(r) * 1000:.1f} ms, max {max(r) * 1000:.1f} ms")  # fmt: skip
        print(f"server max RSS after build and render: {info['rss_kib'] / 1024:.0f} MiB")
        asyncio.run(scrape(url, 1, 1, {}))  # warm the cache
        rows = []
        for fmt, headers in (("text", {"Accept-Encoding": "identity"}),
                             ("text+gzip", {"Accept-Encoding": "gzip"})):  # fmt: skip
            for n in (int(x) for x in args.concurrency.split(",")):
                lat, statuses, sizes, wall = asyncio.run(scrape(url, n, args.requests, headers))
                rows.append((fmt, n, len(lat), pct(lat, 50), pct(lat, 99), max(lat),
                             len(lat) / wall, statuses, sizes))  # fmt: skip
        body = asyncio.run(_fetch(url))
        lines = body.count(b"\n")
        print(f"exposition size: {len(body):,} bytes, {lines:,} lines, "
              f"{len(gzip.compress(body, 1)):,} bytes gzipped (level 1)")  # fmt: skip
        print()
        print(f"{'format':<10} {'scrapers':>8} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'max ms':>8} {'req/s':>8}  status  body bytes")  # fmt: skip
        for fmt, n, count, p50, p99, mx, rate, statuses, sizes in rows:
            print(f"{fmt:<10} {n:>8} {count:>8} {p50 * 1000:>8.2f} {p99 * 1000:>8.2f} "
                  f"{mx * 1000:>8.2f} {rate:>8.0f}  {statuses}  {sorted(sizes)}")  # fmt: skip
        return 0
    finally:
        server.kill()
        server.join(10)


async def _fetch(url: str) -> bytes:
    import aiohttp

    identity = {"Accept-Encoding": "identity"}
    async with aiohttp.ClientSession() as session, session.get(url, headers=identity) as r:
        return await r.read()


if __name__ == "__main__":
    sys.exit(main())
