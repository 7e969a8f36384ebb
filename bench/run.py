"""Run every benchmark and print the table (docs/performance.md explains each figure).

    sudo python -m bench [--quick] [--json FILE] [--markdown FILE] [--product DIR]

Sizes are NxM: N nat rules in all (Docker's plus kube-proxy-style chains), M bindings. M at or
below --real-max runs against a real dockerd in a namespace (tests/support/lab.py); larger M against
bench.fakedocker, a recorded-JSON Docker API on a unix socket, with Docker 20.10's rules
loaded by iptables-nft-restore.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time

from bench import fuzz, gen, report
from bench.netns import Netns
from bench.proc import REPO, Exporter, peak_rss_mib

FULL = dict(sizes="1000x100,10000x100,50000x100,10000x1000,50000x1000,50000x5000",
            budget="50000x1000", idle_seconds=60, requests=100, repeat=3, detect_rounds=3,
            churn_seconds=60)  # fmt: skip
QUICK = dict(sizes="1000x100,50000x1000", budget="50000x1000", idle_seconds=20, requests=30,
             repeat=2, detect_rounds=1, churn_seconds=20)  # fmt: skip


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer sizes, shorter windows")
    ap.add_argument("--sizes", help=f"NxM,... (default {FULL['sizes']})")
    ap.add_argument("--budget", help="the NxM where the exporter process is measured in full")
    ap.add_argument("--real-max", type=int, default=100, help="real dockerd up to this M")
    ap.add_argument("--idle-bindings", type=int, default=50)
    ap.add_argument("--idle-seconds", type=float)
    ap.add_argument("--requests", type=int, help="requests per scraper")
    ap.add_argument("--scrapers", default="1,16")
    ap.add_argument("--repeat", type=int)
    ap.add_argument("--detect-rounds", type=int)
    ap.add_argument("--churn-rate", type=float, default=10.0,
                    help="unrelated rule changes a second in the churn scenario")  # fmt: skip
    ap.add_argument("--churn-seconds", type=float, help="each CPU window of the churn scenario")
    ap.add_argument("--no-peers", action="store_true", help="skip python-iptables and madron's")
    ap.add_argument("--fuzz-examples", type=int, default=0,
                    help="Hypothesis examples per fuzz property, at least (bench.fuzz)")  # fmt: skip
    ap.add_argument("--product", help="benchmark the exporter package of another tree")
    ap.add_argument("--json", help="also write every figure as JSON here")
    ap.add_argument("--markdown", help="also write the tables as Markdown here")
    a = ap.parse_args(argv)
    for key, value in (QUICK if a.quick else FULL).items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    a.sizes = [tuple(map(int, s.split("x"))) for s in a.sizes.split(",") if s]
    a.budget = tuple(map(int, a.budget.split("x")))
    if a.budget not in a.sizes:
        a.sizes.append(a.budget)
    a.scrapers = [int(n) for n in a.scrapers.split(",")]
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    if os.geteuid() != 0:
        print("python -m bench needs root (network namespaces, iptables)", file=sys.stderr)
        return 2
    results: dict = {"machine": report.machine(), "sizes": [], "args": _jsonable(a)}
    started = time.monotonic()
    real = [s for s in a.sizes if s[1] <= a.real_max]
    results["real"] = real_docker(a, real)
    for i, size in enumerate(s for s in a.sizes if s[1] > a.real_max):
        results["sizes"].append(fake_size(a, size, i, full=size == a.budget))
    results["sizes"] = results["real"].pop("sizes") + results["sizes"]
    if a.budget[1] > a.real_max:
        results["legacy"] = legacy(a, a.budget)
    results["fuzz"] = fuzz.measure(a.fuzz_examples)
    results["seconds"] = time.monotonic() - started
    text = report.text(results)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(report.markdown(results))
    return 0


def _jsonable(a) -> dict:
    return {k: v for k, v in vars(a).items() if isinstance(v, (str, int, float, list, tuple, bool))}


def _env(a) -> dict:
    env = {**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"}
    if a.product:  # the other tree's exporter first, this tree's bench after it
        env["PYTHONPATH"] = os.pathsep.join([a.product, str(REPO)])
    return env


def in_ns(a, ns: str, module: str, *args: str, timeout: float = 1800) -> dict:
    r = subprocess.run(["nsenter", f"--net=/run/netns/{ns}", sys.executable, "-m", module, *args],
                       cwd=a.product or REPO, env=_env(a), capture_output=True, text=True,
                       timeout=timeout)  # fmt: skip
    if r.returncode != 0:
        raise RuntimeError(f"{module} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return json.loads(r.stdout)


@contextlib.contextmanager
def fake_docker(doc: dict):
    """bench.fakedocker serving `doc` on a unix socket in a temporary directory."""
    d = tempfile.mkdtemp(prefix="dnb-")
    with open(f"{d}/doc.json", "w") as f:
        json.dump(doc, f)
    proc = subprocess.Popen([sys.executable, "-m", "bench.fakedocker", f"{d}/docker.sock",
                             f"{d}/doc.json"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError("bench.fakedocker did not start")
        yield f"unix://{d}/docker.sock"
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        proc.kill()
        proc.wait(10)
        subprocess.run(["rm", "-rf", d], check=False, timeout=30)


def fake_size(a, size: tuple[int, int], i: int, full: bool) -> dict:
    n, m = size
    print(f"[bench] {n} rules x {m} bindings (fake Docker API)", file=sys.stderr, flush=True)
    doc = gen.docker_json(m)
    with fake_docker(doc) as host, Netns(f"f{i}") as ns:
        ns.load(gen.ruleset_text(doc, n))
        ns.bridges(doc)
        out = {"rules": n, "bindings": m, "docker": "fake"}
        out["worker"] = in_ns(a, ns.name, "bench.worker", "--docker-host", host,
                              "--repeat", str(a.repeat))  # fmt: skip
        out["process"] = process(a, ns.name, host, full, "nft")
    return out


def process(a, ns: str, host: str, full: bool, backend: str, flags=()) -> dict:
    """The real exporter in `ns`: time to ready, scrape latency, peak RSS, detection."""
    out: dict = {}
    with Exporter(ns, "--docker.host", host, *flags, product=a.product) as e:
        out["ready_seconds"] = e.wait_ready()
        scrapers = a.scrapers if full else a.scrapers[-1:]
        out["scrape"] = {str(k): in_ns(a, ns, "bench.scrape", e.url, "--scrapers", str(k),
                                        "--requests", str(a.requests), "--gzip")
                         for k in scrapers}  # fmt: skip
        if full:
            out["scrape_identity_16"] = in_ns(
                a,
                ns,
                "bench.scrape",
                e.url,
                "--scrapers",
                str(a.scrapers[-1]),
                "--requests",
                str(a.requests),
            )
            out["detect"] = in_ns(a, ns, "bench.detect", e.url, "--backend", backend,
                                  "--rounds", str(a.detect_rounds), "--timeout", "120")  # fmt: skip
            if backend == "nft":
                out["churn"] = in_ns(a, ns, "bench.churn", e.url, "--pid", str(e.pid),
                                     "--rate", str(a.churn_rate), "--seconds",
                                     str(a.churn_seconds), "--rounds", str(a.detect_rounds))  # fmt: skip
        out["peak_rss_mib"] = peak_rss_mib(e.pid)
    return out


def legacy(a, size: tuple[int, int]) -> dict:
    """The budget size with Docker's rules in the legacy backend: floor, detection (no change
    notification there: the interval), python-iptables and madron's iptables-exporter."""
    n, m = size
    print(f"[bench] {n} rules x {m} bindings, legacy backend", file=sys.stderr, flush=True)
    doc = gen.docker_json(m)
    with fake_docker(doc) as host, Netns("leg") as ns:
        ns.load(gen.ruleset_text(doc, n), "legacy")
        ns.bridges(doc)
        out = {"rules": n, "bindings": m}
        out["worker"] = in_ns(a, ns.name, "bench.worker", "--docker-host", host, "--backend",
                              "legacy", "--repeat", str(a.repeat))  # fmt: skip
        out["process"] = process(a, ns.name, host, True, "legacy")
        if not a.no_peers:
            from bench import madron

            out["peers"] = in_ns(a, ns.name, "bench.peers", "--repeat", str(a.repeat))
            out["madron"] = madron.measure(ns.name, a.requests)
    return out


def real_docker(a, sizes: list[tuple[int, int]]) -> dict:
    """A real dockerd (tests/support/lab.py): idle CPU and detection at --idle-bindings, then the
    small-M sizes with kube-proxy-style chains added to its nat table."""
    from bench import realdocker

    return realdocker.run(a, sizes)
