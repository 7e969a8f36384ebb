"""Docker state and kernel rules together: per-port verdicts, evidence, jumps, stale rules.

`analyse` runs four steps: the rules Docker should have installed, marked present or not
(path.evidence); where a remote client's packets arrive (path.probes); the packet walk's verdict
per binding (path.verdict); and the rules in Docker's chains that serve nothing (path.stale).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from exporter.docker.model import Binding, DockerState
from exporter.netstate import NetState
from exporter.path.evidence import (
    RULED,
    Evidence,
    Expectations,
    expectations,
    missing,
    with_missing,
)
from exporter.path.index import IndexedRuleset
from exporter.path.probes import Probes, client_spaces, network_env
from exporter.path.route import Routing
from exporter.path.stale import StaleRule, stale_rules
from exporter.path.verdict import Verdict, judge
from exporter.rules.family import FamilyRules


@dataclass(frozen=True, slots=True)
class PortReport:
    binding: Binding
    verdict: Verdict
    rules: tuple[Evidence, ...]


@dataclass(frozen=True, slots=True)
class Analysis:
    ports: tuple[PortReport, ...]
    jumps: tuple[Evidence, ...]
    bridge_rules: tuple[Evidence, ...]
    stale: tuple[StaleRule, ...]


def analyse(
    state: DockerState,
    rules: dict[str, FamilyRules],
    host_addrs: tuple[tuple[str, str], ...] | None,
    clients: dict[str, str] | None = None,
    timings: dict[str, float] | None = None,
    net: NetState | None = None,
    trace: list | None = None,
) -> Analysis:
    """`host_addrs` are (interface, address) pairs of the host; None when unknown. `timings`,
    when given, gets the seconds spent on expected rules ("expect"), on the packet walks
    ("evaluate") and on stale rules ("stale"). `net`: the host's links, routes and forwarding
    switches (None: not read, not judged). `trace`, when given, gets what each binding's walks
    read (a tuple per binding, see Ports) and, last, the walks' Env (path.reuse)."""
    lap = Laps(timings)
    readable, nft_unread = readable_rules(state, rules)
    exp = expectations(state, rules, readable)
    lap("expect")
    judge_port = Ports(
        state, rules, readable, nft_unread, exp, host_addrs, clients, net, trace is not None
    )
    ports = []
    for b, own in zip(state.bindings, exp.per_binding, strict=True):
        port, reads = judge_port(b, own)
        ports.append(port)
        if trace is not None:
            trace.append(reads)
    if trace is not None:
        trace.append(judge_port.env)
    lap("evaluate")
    stale = [s for f in readable for s in stale_rules(rules[f], state.bindings)]
    lap("stale")
    return Analysis(tuple(ports), exp.jumps, exp.bridge_rules, tuple(stale))


def readable_rules(state: DockerState, rules: dict[str, FamilyRules]):
    """The families whose rules were read, and the reason of those whose native tables (where
    Docker's rules are) were not."""
    readable = {f for f, fr in rules.items() if not fr.error}
    nft_unread = {}
    if state.daemon.generation == "nftables":  # Docker's rules are all in native tables
        nft_unread = {f: rules[f].nft_error for f in readable if rules[f].nft_error}
        readable -= set(nft_unread)
    return readable, nft_unread


class Ports:
    """Walk a remote client's packet for a binding and name what decided it. With `record`, each
    call also gives what the walks read: (table, chain, packet, candidate rules) per chain
    looked at, (None, chains, None, None) where a chain's outcome was another walk's."""

    def __init__(self, state, rules, readable, nft_unread, exp: Expectations, host_addrs,
                 clients, net, record: bool = False) -> None:  # fmt: skip
        ipsets = {s.name: s for f in readable for s in rules[f].ipsets}
        env = network_env(state, [rs for f in readable for rs in rules[f].rulesets],
                          ipsets.values())  # fmt: skip
        self.env = replace(env, tape=[]) if record else env
        self.state, self.rules, self.readable, self.nft_unread = state, rules, readable, nft_unread
        self.owners = {(b.container_ip, b.container_port): b.container for b in state.bindings}
        self.indexed = {f: [IndexedRuleset(rs) for rs in rules[f].rulesets] for f in readable}
        self.shared = exp.jumps + exp.bridge_rules
        self.probes = Probes(host_addrs, self.env)
        self.spaces = client_spaces(state, host_addrs, clients or {})
        self.net = net

    def __call__(self, b: Binding, own: tuple[Evidence, ...]) -> tuple[PortReport, tuple]:
        tape = self.env.tape
        fam_ok = b.family in self.readable
        fwd = Routing(self.net, self.rules[b.family].forwarding if fam_ok else None)
        gone = missing(b, own, self.shared)
        rs, st = self.indexed.get(b.family), self.state
        v = judge(b, st.daemon, rs, self.env, self.probes(b), self.owners, self.spaces[b.family],
                  fwd, bool(gone))  # fmt: skip
        if b.family in self.nft_unread and b.design in RULED:
            why = f"nftables firewall backend: {self.nft_unread[b.family]}"
            v = Verdict("unknown", "nft_unreadable", why)
        reads = ()
        if tape is not None:
            reads = tuple(tape)
            tape.clear()
        return PortReport(b, with_missing(v, gone), own), reads


class Laps:
    """Adds the seconds since the last lap to `timings[name]` (nothing when timings is None)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings, self.last = timings, time.perf_counter()

    def __call__(self, name: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[name] = self.timings.get(name, 0.0) + now - self.last
            self.last = now
