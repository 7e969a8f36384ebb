"""Scrape latency inside a namespace (run by bench.run under nsenter):

    python -m bench.scrape URL --scrapers 16 --requests 100 [--gzip]

`scrapers` concurrent clients (aiohttp), each sending `requests` GETs in a row, as Prometheus
would (Accept: text/plain; Accept-Encoding: gzip with --gzip). Prints JSON: p50, p99, max (s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def scrape(url: str, scrapers: int, requests: int, headers: dict) -> dict:
    import aiohttp

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=scrapers)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:

        async def one() -> None:
            for _ in range(requests):
                t = time.perf_counter()
                async with session.get(url, headers=headers) as r:
                    await r.read()
                latencies.append(time.perf_counter() - t)
                statuses[r.status] = statuses.get(r.status, 0) + 1

        async with session.get(url, headers=headers) as r:  # warm: the first render
            await r.read()
        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(scrapers)))
        wall = time.perf_counter() - started
    return {"p50": pct(latencies, 50), "p99": pct(latencies, 99), "max": max(latencies),
            "requests": len(latencies), "per_second": len(latencies) / wall,
            "statuses": statuses}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--scrapers", type=int, default=1)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--gzip", action="store_true")
    a = ap.parse_args()
    headers = {"Accept": "text/plain;version=0.0.4",
               "Accept-Encoding": "gzip" if a.gzip else "identity"}  # fmt: skip
    json.dump(asyncio.run(scrape(a.url, a.scrapers, a.requests, headers)), sys.stdout)


if __name__ == "__main__":
    main()
