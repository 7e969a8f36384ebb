"""One size, measured in-process inside the namespace that holds its rules (run by bench.run):

    nsenter --net=/run/netns/NS python -m bench.worker --docker-host unix://SOCK [--repeat 3]

Prints one JSON object: the floor (each `*-save` command and the Docker API calls alone, and
`iptables-nft -S DOCKER`), full refreshes (cold: nothing cached; warm: nothing changed; changed:
one DNAT rule deleted; on nf_tables with the RefreshState told of each change, as the service's
change feed tells it: a quiet refresh reads no rules, a changed chain is read alone), wall and
CPU seconds, and the refresh's own work split into steps, each timed alone (min of --repeat).
Works against an older exporter tree too (PYTHONPATH): missing pieces are reported as null.
"""

from __future__ import annotations

import argparse
import gzip
import inspect
import json
import os
import sys
import time
from collections import Counter

from exporter.docker.decode import decode_state
from exporter.expect import model as expected
from exporter.path.analysis import analyse
from exporter.rules.family import FamilyRules
from exporter.rules.iptsave import parse_save
from exporter.serve.refresh import RefreshOptions, take_snapshot
from exporter.sources import iptables as ipt
from exporter.sources.docker_api import client, read_docker
from exporter.sources.hostnet import host_addresses
from exporter.sources.proc import legacy_tables
from exporter.sources.run import run

try:  # this tree's optimisations (absent from the baseline tree)
    from exporter.rules.lazysave import parse_save_lazy
    from exporter.serve.state import RefreshState
except ImportError:
    parse_save_lazy = RefreshState = None
try:  # rule lines read once per process (a cold refresh starts without them)
    from exporter.rules.ruleline import forget as forget_lines
except ImportError:

    def forget_lines() -> None:
        pass


try:  # the nf_tables change feed: a change names its chain, read alone
    from exporter.rules.nftevents import Change
except ImportError:
    Change = None


def best(fn, repeat: int, setup=None):
    """(min seconds, result of the fastest run); `setup` before each, untimed."""
    out = None
    for _ in range(repeat):
        if setup is not None:
            setup()
        t = time.perf_counter()
        r = fn()
        took = time.perf_counter() - t
        if out is None or took < out[0]:
            out = (took, r)
    return out


def save_tools() -> list[list[str]]:
    """The `*-save` commands a refresh runs here (as sources.iptables decides)."""
    tools = []
    for fam in ("ipv4", "ipv6"):
        nft = ipt.save_tool(fam, "nf_tables")
        if nft:
            tools.append([nft])
        if legacy_tables(fam) and ipt.save_tool(fam, "legacy"):
            tools.append([ipt.save_tool(fam, "legacy")])
    return tools


def docker_calls(host: str) -> None:
    api = client(host, 30)
    try:
        api.containers(), api.networks(), api.info(), api.version()
    finally:
        api.close()


def cpu() -> float:
    """CPU seconds of this process and of its reaped children (the commands a refresh runs)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def refresh(opts, cache, cold: bool = False) -> tuple[float, dict, object]:
    """(wall seconds, timings with "cpu": the CPU seconds it took, Snapshot)."""
    if cold and hasattr(expected.make, "cache_clear"):
        expected.make.cache_clear()
    if cold:
        forget_lines()
    kwargs = {"state": cache} if RefreshState is not None else {}
    t, c = time.perf_counter(), cpu()
    snap = take_snapshot(opts, **kwargs)
    took, timings = time.perf_counter() - t, dict(snap.timings)
    timings["cpu"] = cpu() - c
    return took, timings, snap


def with_feed(a):
    """A RefreshState as the service keeps one: on nf_tables, fed by the change feed (the
    changes `changed` makes are told to it, as the kernel tells the service's)."""
    if RefreshState is None:
        return None
    state = RefreshState()
    if a.backend == "nft" and Change is not None:
        state.chains.started()
    if hasattr(state, "net"):  # the rtnetlink feed runs (the bench changes no link or route)
        state.net.started()
    return state


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docker-host", required=True)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--backend", default="nft", choices=("nft", "legacy"))
    a = ap.parse_args()
    out: dict = {"lazy": parse_save_lazy is not None}
    tools = save_tools()
    out["floor_save"] = {t[0]: best(lambda t=t: run(t, 60), a.repeat)[0] for t in tools}
    docker_calls(a.docker_host)  # the SDK's import is paid once per process, not per refresh
    out["floor_docker"] = best(lambda: docker_calls(a.docker_host), a.repeat)[0]
    if a.backend == "nft":  # what a refresh after one change in nat DOCKER reads instead
        chain = ["iptables-nft", "-t", "nat", "-S", "DOCKER"]
        out["floor_chain"] = best(lambda: run(chain, 60), a.repeat)[0]
    opts = RefreshOptions(docker_host=a.docker_host, host_facts=False, command_timeout=60)
    fresh = (lambda: RefreshState()) if RefreshState else (lambda: None)
    runs = [refresh(opts, fresh(), cold=True) for _ in range(a.repeat)]
    total, timings, snap = min(runs, key=lambda r: r[0])
    out["cold"] = {"total": total, "timings": timings}
    out["states"] = dict(Counter(p.verdict.state for p in snap.ports))
    out["bindings"] = len(snap.ports)
    out["rules"] = {f"{b} {f}": n for b, f, n in snap.backend_rules}
    out["stale"] = len(snap.stale)
    out["warnings"] = list(snap.warnings)[:5]
    cache = with_feed(a)
    refresh(opts, cache)
    out["warm"] = dict(zip(("total", "timings"), min((refresh(opts, cache)[:2] for _ in range(a.repeat)), key=lambda r: r[0]), strict=True))  # fmt: skip
    out["stages"] = stages(a, snap)
    out["changed"] = changed(a, opts, cache)
    json.dump(out, sys.stdout)


def stages(a, snap) -> dict:
    """Each step of a cold refresh alone: parse (split + the chains analysis reads), decode,
    expect, evaluate, stale, render (+ gzip as Prometheus asks for it)."""
    text = run(["iptables-nft-save" if a.backend == "nft" else "iptables-legacy-save"], 60).stdout
    backend = "nf_tables" if a.backend == "nft" else "legacy"
    raw = read_docker(a.docker_host, 30)
    addrs = host_addresses(10)
    st: dict = {}
    if parse_save_lazy is not None:
        st["split"], rs = best(lambda: parse_save_lazy(text, "ipv4", backend), a.repeat)
        # which chains a cold analysis reads, then: split + reading exactly those
        rules = {"ipv4": FamilyRules("ipv4", (rs,)), "ipv6": FamilyRules("ipv6", ())}
        analyse(decode_state(raw.containers, raw.networks, raw.info, raw.version, raw.hints),
                rules, addrs)  # fmt: skip
        read = {t: list(tb.chains.parsed) for t, tb in rs.tables.items()}

        def parse():
            r = parse_save_lazy(text, "ipv4", backend)
            for t, names in read.items():
                for n in names:
                    r.tables[t].chains[n]
            return r

        st["parse"], rs = best(parse, a.repeat, forget_lines)
        st["chains_read"] = sum(map(len, read.values()))
        st["rules_parsed"] = sum(len(rs.tables[t].chains[n].rules) for t in read for n in read[t])
    else:
        st["parse"], rs = best(lambda: parse_save(text, "ipv4", backend), a.repeat)
        st["rules_parsed"] = rs.rule_count()
    st["decode"], state = best(
        lambda: decode_state(raw.containers, raw.networks, raw.info, raw.version, raw.hints),
        a.repeat,
    )
    rules = {"ipv4": FamilyRules("ipv4", (rs,)), "ipv6": FamilyRules("ipv6", ())}
    laps: list[dict] = []
    for _ in range(a.repeat):
        if hasattr(expected.make, "cache_clear"):
            expected.make.cache_clear()
        t, tm = time.perf_counter(), {}
        try:
            analyse(state, rules, addrs, None, tm)
        except TypeError:  # baseline tree: no per-step timings
            analyse(state, rules, addrs)
        tm["analyse"] = time.perf_counter() - t
        laps.append(tm)
    for key in ("expect", "evaluate", "stale", "analyse"):
        st[key] = min(lap[key] for lap in laps) if key in laps[0] else None
    st["render"], body = best(lambda: render(snap), a.repeat)
    if gzips():  # the tree's exposition gzips itself, each run of ports' lines apart, kept
        st["gzip"], zipped = min((gzip_after(snap) for _ in range(a.repeat)), key=lambda r: r[0])
        st["render_again_gz"] = render_again(snap, a.repeat, True)  # only changed runs gzipped
    else:
        st["gzip"], zipped = best(lambda: gzip.compress(body, 1), a.repeat)
    st["render_again"] = render_again(snap, a.repeat)
    st["exposition_bytes"], st["exposition_gzip_bytes"] = len(body), len(zipped)
    return st


class Holder:
    errors = {"docker": 0, "iptables": 0, "ip6tables": 0}

    def __init__(self, snap) -> None:
        self.snapshot = snap


def gzips() -> bool:
    """Whether the tree's serve.exposition renders gzipped bodies itself."""
    try:
        from exporter.serve.exposition import Exposition
    except ImportError:
        return False
    return "gzip" in inspect.signature(Exposition.__call__).parameters


def renderer(snap, gz: bool = False):
    """A function rendering the holder's snapshot as the service does (serve.exposition where
    the tree has it: each port's lines kept while they are the same), and the holder. `gz`:
    gzipped by the exposition (only where gzips())."""
    from prometheus_client import CollectorRegistry, generate_latest

    from exporter.serve.collector import SnapshotCollector

    holder = Holder(snap)
    collector = SnapshotCollector(holder, 100_000)
    try:
        from exporter.serve.exposition import Exposition
    except ImportError:  # an older tree: prometheus_client's encoder over everything
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        return lambda: generate_latest(registry), holder
    fast = Exposition(collector)
    if gz:
        return lambda: fast(generate_latest, True), holder
    return lambda: fast(generate_latest), holder


def render(snap, gz: bool = False) -> bytes:
    """The first rendering of a snapshot: every port's lines made."""
    return renderer(snap, gz)[0]()


def gzip_after(snap) -> tuple[float, bytes]:
    """(seconds, body): the gzipped body of a snapshot just rendered uncompressed (its lines
    kept, not compressed yet): what gzip adds to a first rendering."""
    from prometheus_client import generate_latest

    from exporter.serve.collector import SnapshotCollector
    from exporter.serve.exposition import Exposition

    fast = Exposition(SnapshotCollector(Holder(snap), 100_000))
    fast(generate_latest)
    t = time.perf_counter()
    body = fast(generate_latest, True)
    return time.perf_counter() - t, body


def render_again(snap, repeat: int, gz: bool = False) -> float:
    """A new snapshot whose ports show what the last one's did (what a refresh after an
    unrelated or a one-rule change renders): seconds, min of `repeat`. Its ports are new
    objects, as after a change to a chain every walk reads (nat DOCKER): the rendering finds
    none of them by identity (after a refresh that walked nothing again it would)."""
    from dataclasses import replace

    fn, holder = renderer(snap, gz)
    fn()
    times = []
    for i in range(repeat):
        ports = tuple(replace(p) for p in snap.ports)
        holder.snapshot = replace(snap, ports=ports, taken_at=snap.taken_at + i + 1)
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def changed(a, opts, cache) -> dict | None:
    """Delete one DNAT rule, refresh with the warm cache (it must see the change), put it back,
    refresh again (it must see that too)."""
    tool = "iptables-nft" if a.backend == "nft" else "iptables-legacy"
    text = run([tool + "-save", "-t", "nat"], 60).stdout
    docker = [ln for ln in text.splitlines() if ln.startswith("-A DOCKER ")]
    dnat = next((i for i, ln in enumerate(docker) if " -j DNAT " in ln), None)
    if dnat is None:
        return None
    spec = docker[dnat].split()[2:]
    port = int(spec[spec.index("--dport") + 1])
    t = time.perf_counter()
    run([tool, "-w", "5", "-t", "nat", "-D", "DOCKER", *spec], 60)
    took_delete = time.perf_counter() - t
    told = feed(cache, a)
    total, timings, snap = refresh(opts, cache)
    seen = {p.binding.host_port: p.verdict.state for p in snap.ports}.get(port)
    run([tool, "-w", "5", "-t", "nat", "-I", "DOCKER", str(dnat + 1), *spec], 60)
    feed(cache, a)
    back = refresh(opts, cache)[2]
    again = {p.binding.host_port: p.verdict.state for p in back.ports}.get(port)
    return {"total": total, "timings": timings, "state_after_delete": seen,
            "state_after_restore": again, "delete_command": took_delete,
            "feed": told}  # fmt: skip


def feed(state, a) -> bool:
    """Tell `state` of the change to nat DOCKER, as the kernel tells the service."""
    if state is None or not hasattr(state, "chains") or a.backend != "nft" or Change is None:
        return False
    state.chains.changed(Change("ip", "nat", "DOCKER", "rule"))
    return True


if __name__ == "__main__":
    main()
