"""One refresh: read every source (timed, never raising) into Readings, then assess them."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from exporter.hostfacts import HostFacts
from exporter.path.evidence import expectations
from exporter.readings import Readings
from exporter.rules.family import FamilyRules
from exporter.rules.lazysave import looked_at
from exporter.rules.model import FAMILIES
from exporter.rules.nftjson import is_native
from exporter.serve.gcpause import gc_paused
from exporter.serve.overlap import Started
from exporter.serve.snapshot import Snapshot, assess
from exporter.serve.state import RefreshState
from exporter.sources.chains import reread
from exporter.sources.daemonstart import read_daemon_start
from exporter.sources.docker_api import DEFAULT_HOST, DockerError, read_docker
from exporter.sources.hostnet import host_addresses, read_netstate, with_forwarding
from exporter.sources.ipset import read_ipsets
from exporter.sources.iptables import read_family
from exporter.sources.nft import read_native, with_native

AGAIN = 2  # analyses again at most, after reading chains found stale


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


def take_snapshot(
    opts: RefreshOptions, state: RefreshState | None = None, clock=time.time
) -> Snapshot:
    """Read and assess. `state`: what earlier refreshes with the same state left to reuse
    (None: a fresh one, nothing reused). The cyclic garbage collector waits (serve.gcpause)."""
    with gc_paused():
        return _take(opts, state if state is not None else RefreshState(), clock)


def _take(opts: RefreshOptions, state: RefreshState, clock) -> Snapshot:
    readings, clients = read_host(opts, state, clock), dict(opts.clients) or None
    snap = assess(readings, clients, state.analyse, state.decode)
    for _ in range(AGAIN):
        again = _with_stale_read(opts, state, readings)
        if again is None:
            break
        readings = again
        snap = assess(readings, clients, state.analyse, state.decode)
    return snap


def _with_stale_read(opts: RefreshOptions, state: RefreshState, r: Readings) -> Readings | None:
    """`r` with the chains the analysis looked up although they changed since their text was
    read (and were not read again, as nothing had looked at them) read now; None if none."""
    rules, changed = dict(r.rules), False
    for family, fr in r.rules.items():
        rs = next((x for x in fr.rulesets if x.backend == "nf_tables" and not is_native(x)), None)
        stale = state.stale[family]
        wanted = {(t, c) for t, cs in stale.items() for c in cs if rs and looked_at(rs, t, c)}
        if not wanted:
            continue
        again = reread(rs, stale, opts.command_timeout, wanted)
        if again is None:  # read everything of this family again
            read = read_family(family, opts.command_timeout, opts.reader == "iptc",
                               state.saves[family])  # fmt: skip
            state.rules_read(family, True, "nf_tables" in read.texts)
            again = next((x for x in read.rules.rulesets if x.backend == "nf_tables"), None)
            if again is None:
                continue
        else:
            state.saves[family]["nf_tables"] = (state.saves[family]["nf_tables"][0], again)
        rulesets = tuple(again if x is rs else x for x in fr.rulesets)
        rules[family], changed = replace(fr, rulesets=rulesets), True
    return replace(r, rules=rules) if changed else None


def read_host(opts: RefreshOptions, state: RefreshState, clock=time.time) -> Readings:
    """Docker, every backend's rules, the host's addresses and (when due) its facts, now. The
    reads overlap (serve.overlap): each starts at once but the native nftables read, which
    waits for the rules' (it needs to know which families iptables-nft read), and the daemon
    start, which waits for Docker's pid. `timings` holds each read's own duration. The state
    is read before the threads start and updated after they are joined, here."""
    started, t0 = clock(), time.perf_counter()
    stale = {fam: state.changed_chains(fam) for fam in FAMILIES}
    iptc, timeout = opts.reader == "iptc", opts.command_timeout
    docker = Started(_docker, opts)
    prewarm = Started(_prewarm, docker, state)
    first, *others = FAMILIES  # IPv4's rules, the most text: read here, the rest in threads
    rules = {
        fam: Started(read_family, fam, timeout, iptc, state.saves[fam], stale[fam])
        for fam in others
    }  # each family's read alone touches its state.saves and state.stale entries
    ipsets_read = Started(read_ipsets, timeout)
    net_token = state.net.token()  # before the reads: a change told during them counts
    kept = state.net_kept(net_token)  # the host's network as last read, if nothing changed
    addrs_read = Started(host_addresses, timeout) if kept is None else None
    net_read = Started(read_netstate, timeout) if kept is None else None
    facts = Started(_iptables_facts, opts) if opts.host_facts and state.host_due() else None
    daemon = Started(_daemon_start, opts, docker, facts, state.host) if opts.host_facts else None
    rules[first] = Started.here(read_family, first, timeout, iptc, state.saves[first], stale[first])
    reads = {fam: rules[fam].result() for fam in FAMILIES}
    for fam, r in reads.items():
        state.rules_read(fam, stale[fam] is None, "nf_tables" in r.texts)
    # Native nftables tables (Docker 29's nftables backend, any other firewall's): every family's
    # rules include them; iptables-nft's own tables are left to iptables-nft-save.
    nft_read = frozenset(f for f, r in reads.items() if "nf_tables" in r.texts)
    # reused while `nft monitor` saw no change to a native table
    native_read = Started.here(state.native.read, read_native, timeout, nft_read)
    native = native_read.result()
    raw, docker_error = docker.result()
    prewarm.result()  # done with the state's decode before assess() uses it
    ipsets = ipsets_read.result()
    if kept is None:
        addrs, net = addrs_read.result(), net_read.result()
        state.net_read(net_token, addrs, net)
    else:
        addrs, net = kept[0], with_forwarding(kept[1])
    host, host_error = None, ""
    if facts is not None:
        iptables, host_error = facts.result()
        state.host_read(iptables)
    if daemon is not None:
        host = daemon.result()
    jobs = {"docker": docker, "prewarm": prewarm, **{f"rules_{f}": rules[f] for f in FAMILIES},
            "rules_nft": native_read, "ipsets": ipsets_read, "host_addresses": addrs_read,
            "host_net": net_read, "hostfacts": facts, "daemon_start": daemon}  # fmt: skip
    timings = {k: job.seconds for k, job in jobs.items() if job is not None}
    warnings = tuple(w for r in reads.values() for w in r.warnings)
    warnings += tuple(w for w in (native.error, *native.warnings) if w)
    warnings += net.errors
    warnings += ipsets.warnings + ((ipsets.error,) if ipsets.error and _uses_sets(reads) else ())
    rules = {f: replace(with_native(r.rules, native), ipsets=ipsets.sets) for f, r in reads.items()}
    return Readings(
        started, raw, docker_error, rules, addrs, host, host_error, warnings, timings, t0, net
    )


def _docker(opts: RefreshOptions):
    """(raw Docker state, "") or (None, the error)."""
    try:
        return read_docker(opts.docker_host, opts.docker_timeout, opts.host_root), ""
    except DockerError as exc:
        return None, str(exc)


def _prewarm(docker: Started, state: RefreshState) -> None:
    """Once Docker has answered, what the analysis will need of it alone, made while the rules
    are still being read: `state.decode` keeps the Docker state for the same answers,
    `expect.model.make` the expected rules, `rules.ruleline` their parsed lines. A `*-save` of
    50,000 rules prints its first byte after ~0.4 s; until then this thread has the
    interpreter to itself. Nothing when the answers are the last ones (their rules were made
    then; a refresh after one rule changed would only compete with the chain's read). Any
    error is left for the analysis to meet and report."""
    raw, _ = docker.result()
    if raw is None:
        return
    try:
        last = state.decoded
        docker_state = state.decode(raw.containers, raw.networks, raw.info, raw.version, raw.hints)
        if last is not None and docker_state is last[1]:
            return
        # the analysis's own call, against no rules: every expected rule made, none present
        expectations(docker_state, {f: FamilyRules(f, ()) for f in FAMILIES}, set(FAMILIES))
    except Exception:  # the same calls in assess() meet it and report it
        return


def _uses_sets(reads) -> bool:
    """Whether a rule read matches an ipset (then not reading them is worth a warning)."""
    return any("--match-set" in text for r in reads.values() for text in r.texts.values())


def _iptables_facts(opts: RefreshOptions):
    try:
        from exporter.sources.host import read_iptables_facts
    except ImportError as exc:
        return None, f"host facts unavailable: {exc}"
    return read_iptables_facts(host_root=opts.host_root, self_test=opts.self_test), ""


def _daemon_start(opts: RefreshOptions, docker: Started, facts: Started | None, iptables):
    """HostFacts: the iptables facts (read now when `facts`, else the cached `iptables`) with
    the boot and dockerd start times read now, once Docker's pid is known."""
    raw, _ = docker.result()
    if facts is not None:
        iptables, _ = facts.result()
    if iptables is None:
        return None
    pid = raw.hints.pid if raw is not None else None
    return HostFacts(iptables, *read_daemon_start(opts.host_root, pid))
