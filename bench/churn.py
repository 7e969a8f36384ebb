"""The exporter under unrelated rule churn, inside a namespace (run by bench.run under nsenter):

    python -m bench.churn URL --pid PID [--rate 10] [--seconds 30] [--rounds 3]

A churner adds and deletes a filter INPUT rule (`iptables-nft -I INPUT -s 198.51.100.X -j
DROP`, then `-D`), `rate` changes a second, as fail2ban or a CrowdSec bouncer would. First the
exporter's CPU (process `pid` and its children, bench.proc.cpu_seconds) over `seconds` with
nothing else going on; then the same window under churn; then, still under churn, detection:
the first DNAT rule of nat DOCKER deleted, /metrics polled until that port is no longer ok,
the rule put back, polled until ok again (bench.detect); a round not seen within --timeout
is null. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request

from bench.detect import first_dnat, ipt
from bench.proc import cpu_seconds

WARMUP = 5.0  # seconds of churn before the window: let the exporter reach its pace


class Churner:
    """Alternately inserts and deletes one INPUT rule, one command every 1/rate seconds."""

    def __init__(self, rate: float, tool: str = "iptables-nft") -> None:
        self.period, self.tool = 1.0 / rate, tool
        self.stop = threading.Event()
        self.changes = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        due, n = time.monotonic(), 0
        while not self.stop.is_set():
            addr = f"198.51.100.{n // 2 % 250 + 1}"
            op = "-I" if n % 2 == 0 else "-D"
            subprocess.run([self.tool, "-w", "5", op, "INPUT", "-s", addr, "-j", "DROP"],
                           check=True, capture_output=True, timeout=60)  # fmt: skip
            n += 1
            self.changes = n
            due += self.period
            self.stop.wait(max(0.0, due - time.monotonic()))
        if n % 2:  # leave no rule behind
            addr = f"198.51.100.{(n - 1) // 2 % 250 + 1}"
            subprocess.run([self.tool, "-w", "5", "-D", "INPUT", "-s", addr, "-j", "DROP"],
                           check=False, capture_output=True, timeout=60)  # fmt: skip

    def __enter__(self) -> Churner:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(120)


def cpu_window(pid: int, seconds: float, churner: Churner | None = None) -> dict:
    c0, t0, n0 = cpu_seconds(pid), time.monotonic(), churner.changes if churner else 0
    time.sleep(seconds)
    c1, t1, n1 = cpu_seconds(pid), time.monotonic(), churner.changes if churner else 0
    return {"seconds": t1 - t0, "cpu_seconds": c1 - c0, "percent_of_core": 100 * (c1 - c0) / (t1 - t0),
            "changes_per_second": (n1 - n0) / (t1 - t0)}  # fmt: skip


POLL = 0.05  # seconds between two reads of /metrics (each is ~2 MB at 1,000 bindings)
UP = re.compile(rb'^docker_nat_source_up\{source="iptables"\} 1', re.M)


def seen(url: str, port: int) -> float | None:
    """The port's state="ok" value, or None while the iptables source is down (every port is
    then `unknown`: that is not a detection)."""
    req = urllib.request.Request(url, headers={"Accept-Encoding": "identity"})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
    if not UP.search(body):
        return None
    line = re.search(rb'^docker_nat_port_state\{[^}]*host_port="%d"[^}]*state="ok"\} (\S+)$'
                     % port, body, re.M)  # fmt: skip
    return float(line.group(1)) if line else None


def wait(url: str, port: int, want: float, started: float, timeout: float) -> float | None:
    """Seconds since `started` until the port's ok series is `want` with the iptables source
    up; None past `timeout`."""
    while time.perf_counter() - started <= timeout:
        if seen(url, port) == want:
            return time.perf_counter() - started
        time.sleep(POLL)
    return None


def detect_rounds(url: str, target: tuple, rounds: int, timeout: float) -> dict:
    spec, pos, port = target
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        took = ipt("iptables-nft", "-D", "DOCKER", *spec)
        gone = wait(url, port, 0.0, t, timeout)
        t = time.perf_counter()
        took_back = ipt("iptables-nft", "-I", "DOCKER", str(pos + 1), *spec)
        back = wait(url, port, 1.0, t, timeout)
        out.append({"seconds": gone, "command": took, "restore_seconds": back,
                    "restore_command": took_back})  # fmt: skip
        if back is None:  # not seen under churn: the caller waits once the churn has stopped
            break
        time.sleep(1.0)  # not back to back: each deletion lands in a running churn
    return {"port": port, "rounds": out}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=60.0)
    a = ap.parse_args()
    out: dict = {"rate": a.rate}
    target = first_dnat("iptables-nft")  # before the churn: a full save may not finish during it
    if wait(a.url, target[2], 1.0, time.perf_counter(), a.timeout) is None:
        raise SystemExit(f"port {target[2]} not ok before the churn")
    out["quiet"] = cpu_window(a.pid, a.seconds)
    with Churner(a.rate) as churner:
        time.sleep(WARMUP)
        out["churn"] = cpu_window(a.pid, a.seconds, churner)
        out["detect"] = detect_rounds(a.url, target, a.rounds, a.timeout)
    t = time.perf_counter()
    out["detect"]["ok_after_churn"] = wait(a.url, target[2], 1.0, t, 300)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
