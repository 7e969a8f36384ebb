"""Rules in Docker's chains that serve no live binding (left behind by a crash or a bad restart)."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.docker.model import Binding
from exporter.expect import nftables
from exporter.rules.family import FamilyRules
from exporter.rules.model import Rule, Ruleset
from exporter.rules.normalize import norm_addr, norm_proto, split_endpoint


@dataclass(frozen=True, slots=True)
class StaleRule:
    family: str
    backend: str
    table: str
    chain: str
    ref: str
    text: str


def stale_rules(fr: FamilyRules, bindings: tuple[Binding, ...]) -> list[StaleRule]:
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
            if r.target == "DNAT" and dnat_sig(r) not in dnat_live:
                out.append(StaleRule(fr.family, rs.backend, "nat", "DOCKER", r.ref, r.text))
        for r in _chain_rules(rs, "filter", "DOCKER"):
            sig = accept_sig(r)
            if r.target == "ACCEPT" and sig is not None and sig not in accept_live:
                out.append(StaleRule(fr.family, rs.backend, "filter", "DOCKER", r.ref, r.text))
    found = nftables.stale(fr.rulesets, fr.family, dnat_sig, accept_sig, dnat_live, accept_live)
    return out + [StaleRule(fr.family, *s) for s in found]


def _chain_rules(rs: Ruleset, table: str, chain: str) -> tuple[Rule, ...]:
    t = rs.tables.get(table)
    c = t.chains.get(chain) if t else None
    return c.rules if c else ()


def _port_cond(r: Rule) -> tuple[str, int] | None:
    proto = port = None
    for c in r.conds:  # the first -p, the first plain --dport with a value
        if c.option == "-p":
            proto = norm_proto(c.values[0]) if proto is None else proto
        elif c.option == "--dport" and port is None and not c.negated and c.values:
            port = c.values[0]
    return (proto, int(port)) if proto and port and port.isdigit() else None


def dnat_sig(r: Rule):
    """(protocol, host port, container address, container port) of a DNAT rule, or None."""
    pc, to = _port_cond(r), split_endpoint(r.target_opt("--to-destination") or "")
    if pc is None or to is None:
        return None
    return (pc[0], pc[1], to[0], to[1] if to[1] is not None else pc[1])


def accept_sig(r: Rule):
    """(protocol, container address, container port) of a per-port ACCEPT rule, or None."""
    pc = _port_cond(r)
    if pc is None:
        return None
    dst = next((norm_addr(c.values[0]) for c in r.conds if c.option == "-d" and not c.negated), "")
    if not dst or dst.endswith("/0"):
        return None
    return (pc[0], dst.rsplit("/", 1)[0], pc[1])
