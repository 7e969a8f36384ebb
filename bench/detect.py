"""Detection latency inside a namespace (run by bench.run under nsenter): delete the first DNAT
rule of nat DOCKER and time until the exporter's /metrics stops calling that port ok; put the
rule back and time until it is ok again.

    python -m bench.detect URL --backend nft|legacy [--rounds 3] [--timeout 60]

Times start when the iptables command starts (the change lands during it): `seconds` is an upper
bound, `seconds - command` a lower one. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request


def ok_value(url: str, port: int) -> float | None:
    """docker_nat_port_state{host_port=PORT,state="ok"} in the exposition, None if absent."""
    req = urllib.request.Request(url, headers={"Accept-Encoding": "identity"})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read().decode()
    needle = f'host_port="{port}"'
    for line in body.splitlines():
        if line.startswith("docker_nat_port_state{") and needle in line and 'state="ok"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def wait(url: str, port: int, want: float, started: float, timeout: float) -> float:
    while True:
        if ok_value(url, port) == want:
            return time.perf_counter() - started
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"port {port}: ok={want} not seen within {timeout}s")
        time.sleep(0.01)


def ipt(tool: str, *args: str) -> float:
    """Seconds `tool -t nat ARGS` took."""
    t = time.perf_counter()
    subprocess.run([tool, "-w", "5", "-t", "nat", *args], check=True, timeout=120,
                   capture_output=True)  # fmt: skip
    return time.perf_counter() - t


def first_dnat(tool: str) -> tuple[list[str], int, int]:
    """(rule spec, index in nat DOCKER, host port) of the first DNAT rule of nat DOCKER."""
    save = subprocess.run([tool + "-save", "-t", "nat"], capture_output=True, text=True,
                          check=True, timeout=120).stdout  # fmt: skip
    docker = [ln for ln in save.splitlines() if ln.startswith("-A DOCKER ")]
    pos = next(i for i, ln in enumerate(docker) if " -j DNAT " in ln)
    spec = docker[pos].split()[2:]
    return spec, pos, int(spec[spec.index("--dport") + 1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--backend", default="nft", choices=("nft", "legacy"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=60)
    a = ap.parse_args()
    tool = f"iptables-{a.backend}"
    spec, pos, port = first_dnat(tool)
    wait(a.url, port, 1.0, time.perf_counter(), a.timeout)
    rounds = []
    for _ in range(a.rounds):
        t = time.perf_counter()
        took = ipt(tool, "-D", "DOCKER", *spec)
        gone = wait(a.url, port, 0.0, t, a.timeout)
        t = time.perf_counter()
        took_back = ipt(tool, "-I", "DOCKER", str(pos + 1), *spec)
        back = wait(a.url, port, 1.0, t, a.timeout)
        rounds.append({"seconds": gone, "command": took, "restore_seconds": back,
                       "restore_command": took_back})  # fmt: skip
    json.dump({"port": port, "rounds": rounds}, sys.stdout)


if __name__ == "__main__":
    main()
