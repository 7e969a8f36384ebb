"""Take one snapshot: read every source (timed, never raising), then build it purely."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from exporter.path.analysis import analyse
from exporter.rules.lazysave import rule_errors
from exporter.serve.snapshot import Snapshot, build
from exporter.sources.docker_api import DEFAULT_HOST, DockerError, read_docker
from exporter.sources.hostnet import host_addresses
from exporter.sources.iptables import read_family
from exporter.sources.nft import read_native, with_native
from exporter.sources.nftwatch import NATIVE


@dataclass(frozen=True, slots=True)
class RefreshOptions:
    docker_host: str = DEFAULT_HOST
    docker_timeout: float = 10.0
    command_timeout: float = 10.0
    host_root: str = "/"
    reader: str = "save"  # save | iptc (legacy only)
    self_test: bool = False
    host_facts: bool = True
    clients: tuple[tuple[str, str], ...] = ()  # (family, address) of the modelled client


class RefreshCache:
    """What the last refresh read and worked out. A `*-save` text byte-identical to the last
    one gives back the same Ruleset (a changed one reuses its unchanged chains), and when the
    Docker state, those Rulesets and everything else analysis reads are all the same as last
    time, the last Analysis is served again. Keys are the inputs themselves, compared whole."""

    def __init__(self) -> None:
        self.saves: dict[str, dict] = {"ipv4": {}, "ipv6": {}}  # family → backend → (text, rs)
        self.last: tuple | None = None  # (inputs, Analysis)

    def analyse(self, state, rules, host_addrs, clients, timings=None):
        inputs = (state, rules, host_addrs, clients)
        if self.last is not None and _same_inputs(self.last[0], inputs):
            return self.last[1]
        result = analyse(state, rules, host_addrs, clients, timings)
        self.last = (inputs, result)
        return result


def _same_inputs(old: tuple, new: tuple) -> bool:
    (s0, r0, a0, c0), (s1, r1, a1, c1) = old, new
    if a0 != a1 or c0 != c1 or r0.keys() != r1.keys():
        return False
    for family, fr in r1.items():
        was = r0[family]
        same = len(was.rulesets) == len(fr.rulesets) and all(
            x is y for x, y in zip(was.rulesets, fr.rulesets, strict=True)
        )  # identity: the same object only comes back for an identical text
        if not same or (was.error, was.nft_error, was.forwarding) != (
            fr.error, fr.nft_error, fr.forwarding
        ):  # fmt: skip
            return False
    return s0 == s1


CACHE = RefreshCache()  # the service's refreshes run one at a time


def take_snapshot(
    opts: RefreshOptions, clock=time.time, cache: RefreshCache | None = CACHE
) -> Snapshot:
    """`cache`: reuse what the last refresh with the same cache parsed and analysed (None:
    compute everything anew)."""
    started, t0 = clock(), time.perf_counter()
    timings: dict[str, float] = {}

    def timed(name, fn, *args):
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            timings[name] = time.perf_counter() - t

    raw, docker_error = None, ""
    try:
        raw = timed("docker", read_docker, opts.docker_host, opts.docker_timeout, opts.host_root)
    except DockerError as exc:
        docker_error = str(exc)
    iptc = opts.reader == "iptc"
    last = cache.saves if cache is not None else {}
    reads = {
        fam: timed(f"rules_{fam}", read_family, fam, opts.command_timeout, iptc, last.get(fam))
        for fam in ("ipv4", "ipv6")
    }
    # Native nftables tables (Docker 29's nftables backend, any other firewall's): every family's
    # rules include them; iptables-nft's own tables are left to iptables-nft-save.
    nft_read = frozenset(f for f, r in reads.items() if "nf_tables" in r.texts)
    if cache is not None:  # reused while `nft monitor` saw no change to a native table
        native = timed("rules_nft", NATIVE.read, read_native, opts.command_timeout, nft_read)
    else:
        native = timed("rules_nft", read_native, opts.command_timeout, nft_read)
    addrs = timed("host_addresses", host_addresses, opts.command_timeout)
    host, host_error = None, ""
    if opts.host_facts:
        host, host_error = timed("hostfacts", _host_facts, opts, raw)
    warnings = tuple(w for r in reads.values() for w in r.warnings)
    warnings += tuple(w for w in (native.error, *native.warnings) if w)
    t = time.perf_counter()
    snap = build(
        started,
        raw,
        docker_error,
        {f: with_native(r.rules, native) for f, r in reads.items()},
        addrs,
        host,
        host_error,
        warnings,
        dict(opts.clients) or None,
        timings,
        cache.analyse if cache is not None else analyse,
    )
    timings["analyse"] = time.perf_counter() - t
    late = _rule_warnings(reads)
    return replace(
        snap,
        duration_seconds=time.perf_counter() - t0,
        timings=timings,
        warnings=snap.warnings + late,
    )


def _rule_warnings(reads) -> tuple[str, ...]:
    """Rules found unreadable while analysis read their chains (lazysave), 5 per ruleset as
    read_family reports the others."""
    out = []
    for fam, r in reads.items():
        for rs in r.rules.rulesets:
            room = max(0, 5 - len(rs.errors))
            out += [f"{fam} {rs.backend}: {e}" for e in rule_errors(rs)[:room]]
    return tuple(out)


def _host_facts(opts: RefreshOptions, raw):
    try:
        from exporter.sources.host import read_host_facts
    except ImportError as exc:
        return None, f"host facts unavailable: {exc}"
    pid = raw.hints.pid if raw is not None else None
    facts = read_host_facts(host_root=opts.host_root, dockerd_pid=pid, self_test=opts.self_test)
    return facts, ""
