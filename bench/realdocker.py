"""The real-dockerd part of the benchmark (tests/support/lab.py's recipe): idle CPU and detection
latency at --idle-bindings bindings, then the small-M sizes, with kube-proxy-style chains added
to the daemon's own nat table."""

from __future__ import annotations

import sys
import time

from bench import gen
from bench.proc import REPO, Exporter, cpu_seconds, peak_rss_mib
from bench.run import in_ns, process

SETTLE = 5.0  # after /-/ready: let the first refreshes (and host facts) finish


def _start(lab, image: str, first: int, count: int) -> None:
    """Containers first..first+count-1, two IPv4 bindings each, over bridge and 2 user nets."""
    nets = ("bridge", "bnet0", "bnet1")
    for k in range(first, first + count):
        hp = gen.FIRST_HOST_PORT + 2 * k
        lab.docker("run", "-d", "--name", f"b{k}", "--network", nets[k % 3],
                   "-p", f"0.0.0.0:{hp}:80", "-p", f"0.0.0.0:{hp + 1}:53/udp",
                   image, "sleep", "1000000")  # fmt: skip


def run(a, sizes: list[tuple[int, int]]) -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    from support.lab import IMAGE, Lab

    print("[bench] real dockerd", file=sys.stderr, flush=True)
    out: dict = {"sizes": []}
    idle_c = (a.idle_bindings + 1) // 2
    total_c = max([idle_c] + [(m + 1) // 2 for _, m in sizes])
    with Lab(ipv6=False) as lab:
        for net in ("bnet0", "bnet1"):
            lab.docker("network", "create", net)
        t = time.monotonic()
        _start(lab, IMAGE, 0, idle_c)
        out["container_start_seconds"] = (time.monotonic() - t) / idle_c
        out["idle"] = idle(a, lab, 2 * idle_c)
        _start(lab, IMAGE, idle_c, total_c - idle_c)
        base = lab.iptables_save()
        docker_nat = sum(1 for ln in lab.iptables_save(table="nat").splitlines()
                         if ln.startswith("-A "))  # fmt: skip
        for n, _ in sizes:
            print(f"[bench] {n} rules x {2 * total_c} bindings (real dockerd)", file=sys.stderr,
                  flush=True)  # fmt: skip
            lab.iptables_restore(base)
            if n - docker_nat >= 4:
                lab.iptables_restore(gen.kube_restore(n - docker_nat), noflush=True)
            size = {"rules": n, "bindings": 2 * total_c, "docker": "real"}
            size["worker"] = in_ns(a, lab.host_ns, "bench.worker", "--docker-host",
                                   lab.docker_host, "--repeat", str(a.repeat))  # fmt: skip
            size["process"] = process(a, lab.host_ns, lab.docker_host, False, "nft")
            out["sizes"].append(size)
        lab.iptables_restore(base)
    return out


def idle(a, lab, bindings: int) -> dict:
    """CPU of the exporter (and its children) with the default 15 s interval, nothing
    changing; then detection with the same process."""
    with Exporter(lab.host_ns, "--docker.host", lab.docker_host, product=a.product) as e:
        e.wait_ready()
        time.sleep(SETTLE)
        c0, t0 = cpu_seconds(e.pid), time.monotonic()
        time.sleep(a.idle_seconds)
        c1, t1 = cpu_seconds(e.pid), time.monotonic()
        out = {"bindings": bindings, "seconds": t1 - t0, "cpu_seconds": c1 - c0,
               "percent_of_core": 100 * (c1 - c0) / (t1 - t0)}  # fmt: skip
        out["detect"] = in_ns(a, lab.host_ns, "bench.detect", e.url, "--backend", "nft",
                              "--rounds", str(a.detect_rounds), "--timeout", "60")  # fmt: skip
        out["peak_rss_mib"] = peak_rss_mib(e.pid)
    return out
