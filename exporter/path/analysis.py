"""Docker state and kernel rules together: per-port verdicts, evidence, jumps, stale rules."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, replace

from exporter.docker.model import DESIGN_DNAT, DESIGN_ROUTED, Binding, DockerState
from exporter.expect import iptables as exp
from exporter.path.matching import REMOTE, Env
from exporter.path.verdict import Probe, Verdict, judge
from exporter.path.walk import IndexedRuleset, _endpoint
from exporter.rules.lazysave import derived
from exporter.rules.model import Rule, Ruleset
from exporter.rules.normalize import norm_addr, norm_proto, rule_key


@dataclass(frozen=True, slots=True)
class FamilyRules:
    family: str
    rulesets: tuple[Ruleset, ...]  # every backend that holds tables for this family
    error: str = ""  # non-empty: the rules could not be read at all
    # Why the native nftables tables are not in `rulesets` ("" when they are: sources.nft).
    nft_error: str = "native nftables tables not read"
    forwarding: bool | None = None  # net.ipv4.ip_forward / net.ipv6.conf.all.forwarding


@dataclass(frozen=True, slots=True)
class Evidence:
    expected: exp.Expected
    present: bool


@dataclass(frozen=True, slots=True)
class PortReport:
    binding: Binding
    verdict: Verdict
    rules: tuple[Evidence, ...]


@dataclass(frozen=True, slots=True)
class StaleRule:
    family: str
    backend: str
    table: str
    chain: str
    ref: str
    text: str


@dataclass(frozen=True, slots=True)
class Analysis:
    ports: tuple[PortReport, ...]
    jumps: tuple[Evidence, ...]
    bridge_rules: tuple[Evidence, ...]
    stale: tuple[StaleRule, ...]


class _Present:
    """Keys of the kernel's rules, computed only for the chains the expectations look at."""

    def __init__(self, rulesets: tuple[Ruleset, ...]) -> None:
        self.rulesets, self.cache = rulesets, {}

    def __call__(self, e: exp.Expected) -> bool:
        keys = self.cache.get((e.table, e.chain))
        if keys is None:
            keys = self.cache[(e.table, e.chain)] = set().union(
                *(_chain_keys(rs, e.table, e.chain) for rs in self.rulesets)
            )
        return e.key in keys


def _chain_keys(rs: Ruleset, table: str, chain: str) -> frozenset:
    t = rs.tables.get(table)
    if t is None:
        return frozenset()
    keys = derived(t.chains, chain, "keys", lambda c: frozenset(map(rule_key, c.rules)))
    return keys or frozenset()


def _chain_rules(rs: Ruleset, table: str, chain: str) -> tuple[Rule, ...]:
    t = rs.tables.get(table)
    c = t.chains.get(chain) if t else None
    return c.rules if c else ()


def analyse(
    state: DockerState,
    rules: dict[str, FamilyRules],
    host_addrs: tuple[tuple[str, str], ...] | None,
    clients: dict[str, str] | None = None,
    timings: dict[str, float] | None = None,
) -> Analysis:
    """`host_addrs` are (interface, address) pairs of the host; None when unknown. `timings`,
    when given, gets the seconds spent on expected rules ("expect"), on the packet walks
    ("evaluate") and on stale rules ("stale")."""
    lap = _Laps(timings)
    nets = {n.id: n for n in state.networks}
    env = _env(state)
    owners = {(b.container_ip, b.container_port): b.container for b in state.bindings}
    indexed = {f: [IndexedRuleset(rs) for rs in fr.rulesets] for f, fr in rules.items()}
    present = {f: _Present(fr.rulesets) for f, fr in rules.items()}
    readable = {f for f, fr in rules.items() if not fr.error}
    nft_unread = {}
    if state.daemon.generation == "nftables":  # Docker's rules are all in native tables
        nft_unread = {f: rules[f].nft_error for f in readable if rules[f].nft_error}
        readable -= set(nft_unread)
    jumps, bridge_rules, ports = [], [], []
    for family in ("ipv4", "ipv6"):
        active = [b for b in state.bindings if b.family == family and b.design in _RULED]
        if not active or family not in readable:
            continue
        has = present[family]
        jumps += [Evidence(e, has(e)) for e in exp.global_jumps(family, state.daemon)]
        for nid in dict.fromkeys(b.network_id for b in active):
            for e in exp.for_bridge(nets[nid], family, state.daemon) if nid in nets else ():
                (jumps if e.kind == "jump" else bridge_rules).append(Evidence(e, has(e)))
    evidence = [
        tuple(
            Evidence(e, present[b.family](e))
            for e in exp.for_binding(b, state.daemon, nets.get(b.network_id))
        )
        if b.family in readable
        else ()
        for b in state.bindings
    ]
    lap("expect")
    shared = jumps + bridge_rules
    probes = _Probes(host_addrs, env)
    for b, own in zip(state.bindings, evidence, strict=True):
        fam_ok = b.family in readable
        rs = indexed.get(b.family) if fam_ok else None
        client = (clients or {}).get(b.family, REMOTE)
        fwd = rules[b.family].forwarding if fam_ok else None
        v = judge(b, state.daemon, rs, env, probes(b), owners, client, fwd)
        if b.family in nft_unread and b.design in _RULED:
            v = Verdict("unknown", f"nftables firewall backend: {nft_unread[b.family]}")
        ports.append(PortReport(b, _with_missing(v, b, own, shared), own))
    lap("evaluate")
    stale = [s for f in readable for s in _stale(rules[f], state.bindings)]
    lap("stale")
    return Analysis(tuple(ports), tuple(jumps), tuple(bridge_rules), tuple(stale))


class _Laps:
    """Adds the seconds since the last lap to `timings[name]` (nothing when timings is None)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings, self.last = timings, time.perf_counter()

    def __call__(self, name: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[name] = self.timings.get(name, 0.0) + now - self.last
            self.last = now


_RULED = (DESIGN_DNAT, DESIGN_ROUTED)


def _env(state: DockerState) -> Env:
    ext = [n for n in state.networks if n.bridge and not n.internal]
    sets = {
        "docker-ext-bridges-v4": tuple(ipaddress.ip_network(s) for n in ext for s in n.subnets4),
        "docker-ext-bridges-v6": tuple(ipaddress.ip_network(s) for n in ext for s in n.subnets6),
    }
    return Env(frozenset(n.bridge for n in state.networks if n.bridge), sets)


class _Probes:
    """`_probes` with the host's external addresses sorted out once per family, not per port."""

    def __init__(self, host_addrs, env: Env) -> None:
        self.host_addrs, self.env, self.usable = host_addrs, env, {}

    def __call__(self, b: Binding) -> list[Probe]:
        if not b.wildcard:
            return _probes(b, self.host_addrs, self.env)
        if b.family not in self.usable:
            self.usable[b.family] = _probes(b, self.host_addrs, self.env)
        return self.usable[b.family]


def _probes(b: Binding, host_addrs, env: Env) -> list[Probe]:
    if not b.wildcard:
        iif = next((i for i, a in host_addrs or () if a == b.host_ip), None)
        return [Probe(b.host_ip, iif)]
    usable = [(i, a) for i, a in host_addrs or () if _external(i, a, b.family, env)]
    return [Probe(a, i) for i, a in usable] or [Probe(None, None)]


def _external(iface: str, addr: str, family: str, env: Env) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    if (ip.version == 6) != (family == "ipv6") or ip.is_loopback or ip.is_link_local:
        return False
    return iface not in env.bridges


def _with_missing(v: Verdict, b: Binding, own: tuple[Evidence, ...], shared) -> Verdict:
    if v.state == "ok":
        return v
    relevant = [e for e in own if not e.present] + [
        e
        for e in shared
        if not e.present and e.expected.family == b.family and e.expected.bridge in ("", b.bridge)
    ]
    if not relevant:
        return v
    return replace(v, reason=f"{v.reason}; expected rule missing: {relevant[0].expected.line}")


def _stale(fr: FamilyRules, bindings: tuple[Binding, ...]) -> list[StaleRule]:
    """DNAT and per-port ACCEPT rules in Docker's chains that serve no live binding."""
    dnat_live = {
        (b.protocol, b.host_port, b.container_ip, b.container_port)
        for b in bindings
        if b.family == fr.family
    }
    accept_live = {(b.protocol, b.container_ip, b.container_port) for b in bindings}
    out = []
    for rs in fr.rulesets:
        for r in _chain_rules(rs, "nat", "DOCKER"):
            if r.target == "DNAT" and _dnat_sig(r) not in dnat_live:
                out.append(StaleRule(fr.family, rs.backend, "nat", "DOCKER", r.ref, r.text))
        for r in _chain_rules(rs, "filter", "DOCKER"):
            sig = _accept_sig(r)
            if r.target == "ACCEPT" and sig is not None and sig not in accept_live:
                out.append(StaleRule(fr.family, rs.backend, "filter", "DOCKER", r.ref, r.text))
    from exporter.expect.nftables import (
        stale as nft_stale,  # Docker's nftables backend (late: import cycle)
    )

    found = nft_stale(fr.rulesets, fr.family, _dnat_sig, _accept_sig, dnat_live, accept_live)
    return out + [StaleRule(fr.family, *s) for s in found]


def _port_cond(r: Rule) -> tuple[str, int] | None:
    proto = next((norm_proto(c.values[0]) for c in r.conds if c.option == "-p"), None)
    dports = (c for c in r.conds if c.option == "--dport" and not c.negated and c.values)
    port = next((c.values[0] for c in dports), None)
    return (proto, int(port)) if proto and port and port.isdigit() else None


def _dnat_sig(r: Rule):
    pc, to = _port_cond(r), _endpoint(r.target_opt("--to-destination") or "")
    if pc is None or to is None:
        return None
    return (pc[0], pc[1], to[0], to[1] if to[1] is not None else pc[1])


def _accept_sig(r: Rule):
    pc = _port_cond(r)
    dst = next((norm_addr(c.values[0]) for c in r.conds if c.option == "-d" and not c.negated), "")
    if pc is None or not dst or dst.endswith("/0"):
        return None
    return (pc[0], dst.rsplit("/", 1)[0], pc[1])
