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
from exporter.rules.model import Chain, Ruleset
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
    """Whether the kernel holds an expected rule. An `iptables-save` line equal to the expected
    text is the rule (both are parsed by the same parser: same text, same key), so the lines of
    the chains looked at are compared first; the keys of a chain's rules are computed only when
    an expected rule is not found there by its text (a missing or differently spelled rule)."""

    def __init__(self, rulesets: tuple[Ruleset, ...]) -> None:
        self.rulesets, self.texts, self.keys = rulesets, {}, {}

    def __call__(self, e: Expected) -> bool:
        where = (e.table, e.chain)
        if _plain(e):
            texts = self.texts.get(where)
            if texts is None:
                texts = self.texts[where] = _union(self.rulesets, e, "texts", _chain_texts)
            if e.text in texts:
                return True
        keys = self.keys.get(where)
        if keys is None:
            keys = self.keys[where] = _union(self.rulesets, e, "keys", _chain_keys)
        return e.key in keys


def _plain(e: Expected) -> bool:
    """An expected `iptables-save` rule whose words are split alike by str.split and by the
    kernel lines' reader (no quoting), so equal lines mean equal keys."""
    return not e.display and e.text.startswith("-A ") and not any(q in e.text for q in "\"'\\")


def _union(rulesets: tuple[Ruleset, ...], e: Expected, kind: str, make) -> frozenset:
    out: frozenset = frozenset()
    for rs in rulesets:
        t = rs.tables.get(e.table)
        got = derived(t.chains, e.chain, kind, make) if t is not None else None
        out = out | got if got else out
    return out


def _chain_keys(chain: Chain) -> frozenset:
    return frozenset(map(rule_key, chain.rules))


def _chain_texts(chain: Chain) -> frozenset:
    return frozenset(r.text for r in chain.rules)


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
