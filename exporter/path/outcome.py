"""What walking a chain or a hook gives: an Outcome, per part of the client class when the
rules split it (SPLIT), and how per-part outcomes combine."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.path.fastcopy import replace
from exporter.path.mangle import mangled
from exporter.path.matching import Packet
from exporter.path.sources import Sources
from exporter.rules.model import Rule


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: str  # ACCEPT DROP REJECT RETURN DNAT REDIRECT NAT UNKNOWN, or SPLIT (see parts)
    rule: Rule | None = None
    to: tuple[str, int | None] | None = None
    why: str = ""
    # SPLIT: the outcome for each part of the packet's client class, ((Sources, Outcome), ...)
    parts: tuple = ()
    owner: str = ""  # who set a deciding chain policy (path.owner), "" when a rule decides
    out: Packet | None = None  # the packet as it leaves (its marks, its conntrack state)

    def same(self, other: Outcome) -> bool:
        return self.verdict == other.verdict and self.to == other.to and self.parts == other.parts


class Fork(Exception):
    """A hook's outcome differs between parts of the client class: judge walks each part."""

    def __init__(self, parts: tuple[Sources, ...]) -> None:
        super().__init__(f"{len(parts)} source classes")
        self.parts = parts


STOPS = ("DROP", "REJECT", "UNKNOWN")


def combine(parts) -> Outcome:
    """One outcome from per-part outcomes: nested splits flattened, parts that continue the
    same way (and with the same marks) merged, so the walk after them runs once, and so are
    parts dropped by rules of one chain (a blocklist of 50 prefixes is one class; its reason
    names the rule that drops the most addresses)."""
    merged: dict[tuple, list] = {}  # key → [sources, outcome, its part's size, rules]
    for s, o in parts:
        for ps, po in o.parts if o.verdict == "SPLIT" else ((s, o),):
            key, size = _merge_key(po), ps.size()
            m = merged.get(key)
            if m is None:
                merged[key] = [ps, po, size, {id(po.rule)}]
                continue
            m[0] = m[0] | ps
            m[3].add(id(po.rule))
            if size > m[2]:
                m[1], m[2] = po, size
    out = []
    for ps, po, _, rules in merged.values():
        if len(rules) > 1 and po.verdict in ("DROP", "REJECT"):
            more, r = len(rules) - 1, po.rule
            po = replace(po, why=f"and {more} more rule{'s' * (more > 1)} of {r.table}/{r.chain}")
        out.append((ps, po))
    return out[0][1] if len(out) == 1 else Outcome("SPLIT", parts=tuple(out))


def _merge_key(o: Outcome) -> tuple:
    if o.verdict in ("DROP", "REJECT"):
        r = o.rule
        return ("DROP", r.backend, r.table, r.chain) if r else ("DROP", o.why)
    if o.verdict == "UNKNOWN":
        return ("UNKNOWN", o.rule, o.why)
    return (o.verdict, o.to, mangled(o.out))


@dataclass(frozen=True, slots=True)
class Settled:
    """Part of the client class stopped at a hook while the rest walked on."""

    sources: Sources
    outcome: Outcome
    table: str
    chain: str
    reply: bool
