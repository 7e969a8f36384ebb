"""Which of the rules Docker should have installed the kernel holds: expected rules as evidence."""

from __future__ import annotations

from dataclasses import dataclass, replace

from exporter.docker.model import DESIGN_DNAT, DESIGN_ROUTED, Binding, DockerState
from exporter.expect import layouts
from exporter.expect.model import Expected
from exporter.path.owner import DOCKER
from exporter.path.verdict import Verdict
from exporter.rules.family import FamilyRules
from exporter.rules.lazysave import derived
from exporter.rules.model import Ruleset
from exporter.rules.normalize import rule_key

RULED = (DESIGN_DNAT, DESIGN_ROUTED)  # designs for which Docker writes per-port rules


@dataclass(frozen=True, slots=True)
class Evidence:
    expected: Expected
    present: bool


@dataclass(frozen=True, slots=True)
class Expectations:
    jumps: tuple[Evidence, ...]
    bridge_rules: tuple[Evidence, ...]
    per_binding: tuple[tuple[Evidence, ...], ...]  # one entry per state.bindings, in order


class Present:
    """Keys of the kernel's rules, computed only for the chains the expectations look at."""

    def __init__(self, rulesets: tuple[Ruleset, ...]) -> None:
        self.rulesets, self.cache = rulesets, {}

    def __call__(self, e: Expected) -> bool:
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


def expectations(
    state: DockerState, rules: dict[str, FamilyRules], readable: set[str]
) -> Expectations:
    """The global, per-bridge and per-port rules Docker should have installed, each marked present
    or not; nothing for a family whose rules could not be read."""
    nets = {n.id: n for n in state.networks}
    present = {f: Present(fr.rulesets) for f, fr in rules.items()}
    jumps, bridge_rules = [], []
    for family in ("ipv4", "ipv6"):
        active = [b for b in state.bindings if b.family == family and b.design in RULED]
        if not active or family not in readable:
            continue
        has = present[family]
        jumps += [Evidence(e, has(e)) for e in layouts.global_jumps(family, state.daemon)]
        for nid in dict.fromkeys(b.network_id for b in active):
            for e in layouts.for_bridge(nets[nid], family, state.daemon) if nid in nets else ():
                (jumps if e.kind == "jump" else bridge_rules).append(Evidence(e, has(e)))
    per_binding = tuple(
        tuple(
            Evidence(e, present[b.family](e))
            for e in layouts.for_binding(b, state.daemon, nets.get(b.network_id))
        )
        if b.family in readable
        else ()
        for b in state.bindings
    )
    return Expectations(tuple(jumps), tuple(bridge_rules), per_binding)


def missing(b: Binding, own: tuple[Evidence, ...], shared) -> list[Evidence]:
    """The rules Docker's layout expects for `b` (its own, its bridge's, the jumps) not there."""
    return [e for e in own if not e.present] + [
        e
        for e in shared
        if not e.present and e.expected.family == b.family and e.expected.bridge in ("", b.bridge)
    ]


def with_missing(v: Verdict, gone: list[Evidence]) -> Verdict:
    """A verdict other than ok names the first expected rule the kernel lacks for this binding;
    a port that fails while one is missing is Docker's breakage, whoever's rule dropped it."""
    if v.state == "ok" or not gone:
        return v
    reason = f"{v.reason}; expected rule missing: {gone[0].expected.line}"
    return replace(v, reason=reason, owner=DOCKER)
