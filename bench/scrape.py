"""Scrape latency inside a namespace (run by bench.run under nsenter):

    python -m bench.scrape URL --scrapers 16 --requests 100 [--gzip] [--client raw|aiohttp]

`scrapers` concurrent clients, each sending `requests` GETs in a row on a kept-alive connection,
as Prometheus would (Accept: text/plain; Accept-Encoding: gzip with --gzip, else identity). A
request's latency runs from sending it to the last byte of its body. Prints JSON: p50, p99, max
(s), requests, per_second, statuses, bytes (of the last body).

The default client (`raw`) reads each response into one preallocated buffer (an asyncio
BufferedProtocol) and parses only the status line, Content-Length or the chunk sizes: on 2 CPUs
shared with the exporter, aiohttp's client spends 2-2.5 ms of CPU per 2.7 MB body, twice what the
exporter spends sending it, and that CPU was showing up in the exporter's latency. `aiohttp` is
the old client, kept to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

BUFFER = 1 << 20


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Response(asyncio.BufferedProtocol):
    """One HTTP/1.1 connection's responses, their bodies counted and dropped."""

    def __init__(self) -> None:
        self.buf = bytearray(BUFFER)
        self.head = bytearray()  # the headers, or a chunk-size line, while incomplete
        self.done: asyncio.Future | None = None
        self.closed = False
        self.transport = None
        self.status, self.left, self.chunked, self.last, self.size = 0, -1, False, False, 0
        self.in_head, self.keep = True, True

    def connection_made(self, transport) -> None:
        self.transport = transport

    def expect(self) -> asyncio.Future:
        """A future for the next response: (status, body bytes, whether the server keeps the
        connection)."""
        self.head.clear()
        self.status, self.left, self.chunked, self.last, self.size = 0, -1, False, False, 0
        self.in_head, self.keep = True, True
        self.done = asyncio.get_running_loop().create_future()
        return self.done

    def get_buffer(self, sizehint: int):
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        view = memoryview(self.buf)[:nbytes]
        while view and self.done is not None and not self.done.done():
            view = self._head(view) if self.in_head else self._body(view)

    def _head(self, view):
        self.head += view
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return view[:0]
        rest = len(self.head) - end - 4
        lines = bytes(self.head[:end]).decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ", 2)[:2]
        fields = dict(x.split(":", 1) for x in lines[1:] if ":" in x)
        fields = {k.strip().lower(): v.strip().lower() for k, v in fields.items()}
        self.status, self.in_head = int(status), False
        self.keep = fields.get("connection", "") != "close" and version == "HTTP/1.1"
        self.chunked = "chunked" in fields.get("transfer-encoding", "")
        self.left = int(fields.get("content-length", -1)) if not self.chunked else -1
        self.head.clear()
        self._finish_if_empty()
        return view[len(view) - rest :] if rest else view[:0]

    def _body(self, view):
        if self.chunked:
            return self._chunks(view)
        if self.left < 0:  # till the server closes
            self.size += len(view)
            return view[:0]
        n = min(self.left, len(view))
        self.size, self.left = self.size + n, self.left - n
        self._finish_if_empty()
        return view[n:]

    def _chunks(self, view):
        """A chunked body, minimally: `left` is what remains of the current chunk and its
        CRLF; -1 while a size line is read."""
        if self.left > 0:
            n = min(self.left, len(view))
            self.left -= n
            if self.left == 0 and not self.last:
                self.left = -1
            self._finish_if_empty()
            return view[n:]
        self.head += view
        end = self.head.find(b"\r\n")
        if end < 0:
            return view[:0]
        rest = len(self.head) - end - 2
        size = int(bytes(self.head[:end]).split(b";")[0], 16)
        self.head.clear()
        self.size, self.left, self.last = self.size + size, size + 2, size == 0  # no trailers
        return view[len(view) - rest :] if rest else view[:0]

    def _finish_if_empty(self) -> None:
        if self.left == 0 and self.done is not None and not self.done.done():
            self.done.set_result((self.status, self.size, self.keep))

    def eof_received(self):
        return False

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.done is not None and not self.done.done():
            if self.left < 0 and not self.in_head and not self.chunked:
                self.done.set_result((self.status, self.size, False))
            else:
                self.done.set_exception(exc or ConnectionError("closed mid-response"))


async def scrape_raw(url: str, scrapers: int, requests: int, headers: dict) -> dict:
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    lines = [f"GET {path} HTTP/1.1", f"Host: {u.netloc}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    size = 0

    async def connect():
        return (await loop.create_connection(Response, host, port))[1]

    async def one(n: int) -> None:
        nonlocal size
        conn = await connect()
        for _ in range(n):
            if conn.closed:
                conn = await connect()
            done = conn.expect()
            t = time.perf_counter()
            conn.transport.write(request)
            status, size, keep = await done
            latencies.append(time.perf_counter() - t)
            statuses[status] = statuses.get(status, 0) + 1
            if not keep:
                conn.transport.close()
                conn.closed = True
        conn.transport.close()

    await one(1)  # warm: the first render
    latencies.clear(), statuses.clear()
    started = time.perf_counter()
    await asyncio.gather(*(one(requests) for _ in range(scrapers)))
    return _summary(latencies, statuses, time.perf_counter() - started, size)


async def scrape_aiohttp(url: str, scrapers: int, requests: int, headers: dict) -> dict:
    import aiohttp

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=scrapers)
    size = 0
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:

        async def one() -> None:
            nonlocal size
            for _ in range(requests):
                t = time.perf_counter()
                async with session.get(url, headers=headers) as r:
                    size = len(await r.read())
                latencies.append(time.perf_counter() - t)
                statuses[r.status] = statuses.get(r.status, 0) + 1

        async with session.get(url, headers=headers) as r:  # warm: the first render
            await r.read()
        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(scrapers)))
        wall = time.perf_counter() - started
    return _summary(latencies, statuses, wall, size)


def _summary(latencies, statuses, wall: float, size: int) -> dict:
    return {"p50": pct(latencies, 50), "p99": pct(latencies, 99), "max": max(latencies),
            "requests": len(latencies), "per_second": len(latencies) / wall,
            "statuses": statuses, "bytes": size}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--scrapers", type=int, default=1)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--gzip", action="store_true")
    ap.add_argument("--client", choices=("raw", "aiohttp"), default="raw")
    a = ap.parse_args()
    headers = {"Accept": "text/plain;version=0.0.4",
               "Accept-Encoding": "gzip" if a.gzip else "identity"}  # fmt: skip
    fn = scrape_raw if a.client == "raw" else scrape_aiohttp
    json.dump(asyncio.run(fn(a.url, a.scrapers, a.requests, headers)), sys.stdout)


if __name__ == "__main__":
    main()
