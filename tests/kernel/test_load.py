"""Load on the REAL exporter process: many scrapers, slow clients, oversized requests, memory.

The exporter runs in a throwaway namespace with the Docker 20.10 fixture rules and a fake Engine
API (tests/support/faultkit.py); clients run in the same namespace. Every loop is bounded in requests
and time. Latencies and RSS are recorded as figures (docs/reliability.md), not asserted, except
that nothing hangs and memory stays within a generous bound.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import test_faults
from support.faultkit import FakeDocker, load, open_fds, record, rss_kib
from support.netns import Netns
from test_faults import healthy, start

pytestmark = pytest.mark.slow
netns, exporters = test_faults.netns, test_faults.exporters  # the same fixtures


@pytest.fixture
def served(netns, exporters):
    """(exporter, namespace) with a healthy first snapshot, Docker faked."""
    with FakeDocker() as fake:
        exp = start(exporters, netns, fake.url, "--web.max-requests", "0", interval="5s")
        exp.wait_for(healthy, 20, what="healthy")
        yield exp, netns


def test_200_concurrent_scrapers(served, record_property) -> None:
    exp, ns = served
    url = f"{exp.base}/metrics"
    load(ns, url, 50, 10)  # warm up
    before = rss_kib(exp.proc.pid)
    got = load(ns, url, 2000, 200)
    after = rss_kib(exp.proc.pid)
    assert got["codes"] == {"200": 2000}, got
    assert got["n_errors"] == 0
    for k in ("p50", "p95", "p99", "max", "wall"):
        record_property(k, f"{got[k]:.3f}")
    record("load", "2,000 scrapes of /metrics from 200 concurrent aiohttp clients "
           "(--web.max-requests 0)", "all 200, no error",
           p50_ms=round(got["p50"] * 1000, 1), p95_ms=round(got["p95"] * 1000, 1),
           p99_ms=round(got["p99"] * 1000, 1), max_ms=round(got["max"] * 1000, 1),
           wall_s=round(got["wall"], 2), rss_before_mib=round(before / 1024, 1),
           rss_after_mib=round(after / 1024, 1))  # fmt: skip
    assert after - before < 100 * 1024, (before, after)


def test_concurrency_limit_answers_503_at_once(netns, exporters) -> None:
    with FakeDocker() as fake:
        exp = start(exporters, netns, fake.url, "--web.max-requests", "5", interval="5s")
        exp.wait_for(healthy, 20, what="healthy")
        got = load(netns, f"{exp.base}/metrics", 1000, 200)
    assert got["n_errors"] == 0, got
    assert set(got["codes"]) <= {"200", "503"} and got["codes"].get("200", 0) > 0, got
    record("load", "1,000 scrapes from 200 concurrent clients with --web.max-requests 5",
           f"answered 200 x{got['codes'].get('200', 0)}, 503 x{got['codes'].get('503', 0)}; "
           "no error, no hang", max_ms=round(got["max"] * 1000, 1))  # fmt: skip


_SLOW = r"""
import socket, sys, time
port, n, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    socks.append(s)
request = b"X-Slow: " + b"a" * 1000
t0, closed, sent = time.monotonic(), 0, 0
while time.monotonic() - t0 < seconds and closed < n:
    closed = 0
    for s in socks:
        try:
            s.sendall(request[sent % len(request):][:1])
        except OSError:
            closed += 1
    sent += 1
    time.sleep(1)
print(closed, round(time.monotonic() - t0, 1))
"""


def test_slowloris_is_cut_off_and_others_are_served(served) -> None:
    exp, ns = served
    n = 300
    slow = subprocess.Popen(
        ["nsenter", f"--net={ns.path}", sys.executable, "-c", _SLOW, str(exp.port), str(n), "40"],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        time.sleep(2)
        fds = open_fds(exp.proc.pid)
        got = load(ns, f"{exp.base}/metrics", 200, 20)
        assert got["codes"] == {"200": 200}, got
        out, _ = slow.communicate(timeout=60)
    finally:
        if slow.poll() is None:
            os.killpg(slow.pid, 9)
            slow.wait()
    closed, took = out.split()
    assert int(closed) == n, f"only {closed} of {n} trickling connections were closed in {took}s"
    record("load", f"{n} slowloris connections trickling a header byte per second",
           f"others served meanwhile (200 x200, p99 {got['p99'] * 1000:.0f} ms); all {n} cut "
           f"off by the server after {took} s (keep-alive timeout 15 s)",
           exporter_fds_during=fds)  # fmt: skip


def _raw_request(ns: Netns, port: int, payload: bytes) -> str:
    code = (
        "import socket,sys; s=socket.create_connection(('127.0.0.1', int(sys.argv[1])));"
        "s.settimeout(10); s.sendall(sys.stdin.buffer.read());"
        "print(s.recv(200).split(b'\\r\\n')[0].decode())"
    )
    p = ns.run([sys.executable, "-c", code, str(port)], input=payload.decode("latin-1"),
                check=False)  # fmt: skip
    return p.stdout.strip() or p.stderr.strip()[-200:]


@pytest.mark.parametrize(
    ("what", "payload", "status"),
    [
        ("a 100 KB header", b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000
         + b"\r\n\r\n", ("400", "431")),
        ("1,000 headers", b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
         + b"".join(b"X-%d: y\r\n" % i for i in range(1000)) + b"\r\n", ("400", "431")),
        ("a 100 KB request line", b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
         ("400", "414")),
        ("a 1 MB body on GET", b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576"
         b"\r\n\r\n" + b"a" * 1_048_576, ("413",)),
    ],
    ids=["header", "many-headers", "request-line", "body"],
)  # fmt: skip
def test_oversized_requests_are_refused(served, what, payload, status) -> None:
    exp, ns = served
    before = rss_kib(exp.proc.pid)
    line = _raw_request(ns, exp.port, payload)
    assert line.split(" ")[1:2] and line.split(" ")[1] in status, line
    assert exp.get().status == 200
    record("load", f"oversized request: {what}", line,
           rss_growth_mib=round((rss_kib(exp.proc.pid) - before) / 1024, 1))  # fmt: skip


def test_memory_is_bounded_over_many_scrapes(served) -> None:
    exp, ns = served
    url = f"{exp.base}/metrics"
    load(ns, url, 200, 20)
    samples = [rss_kib(exp.proc.pid)]
    for _ in range(3):
        load(ns, url, 1000, 50)
        samples.append(rss_kib(exp.proc.pid))
    growth = samples[-1] - samples[1]
    assert growth < 30 * 1024, samples  # a leak per scrape would grow with each round
    record("load", "3 rounds of 1,000 scrapes (50 concurrent), RSS after each",
           f"RSS {', '.join(f'{s / 1024:.1f}' for s in samples)} MiB",
           growth_after_first_round_mib=round(growth / 1024, 1))  # fmt: skip
