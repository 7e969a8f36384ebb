"""Chains indexed by exact destination address, (protocol, destination port) and interface, so
a lookup visits the few rules that can concern a packet instead of scanning tens of thousands.
For a packet from a class of clients, rules whose source test (`-s`) none of them passes are
left out too (Docker's MASQUERADE rules in nat POSTROUTING name its own subnets)."""

from __future__ import annotations

from operator import attrgetter

from exporter.path.matching import LOCAL, Packet
from exporter.path.sources import Sources
from exporter.rules.lazysave import derived
from exporter.rules.model import Rule, Ruleset
from exporter.rules.normalize import norm_addr, norm_proto

LOOKUP = attrgetter("dst", "proto", "dport", "oif", "iif")  # all that the buckets look at


class IndexedChain:
    """A chain's rules bucketed by one exact, non-negated condition each: destination address,
    (protocol, destination port), output or input interface. `candidates` returns, in order,
    the rules that can match a packet: the unbucketed ones and those of its buckets."""

    __slots__ = ("by_dst", "by_iif", "by_oif", "by_port", "generic", "generic_by_src", "memo",
                 "rules", "sourced")  # fmt: skip

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.rules = rules
        self.generic: list[int] = []
        self.by_dst: dict[str, list[int]] = {}
        self.by_port: dict[tuple[str, int], list[int]] = {}
        self.by_oif: dict[str, list[int]] = {}
        self.by_iif: dict[str, list[int]] = {}
        self.memo: dict[tuple, tuple[Rule, ...]] = {}  # candidates per packet key
        self.sourced = {i: t for i, r in enumerate(rules) if (t := _sources(r))}  # their -s
        self.generic_by_src: dict[Sources, list[int]] = {}  # generic, filtered per class
        buckets = {"dst": self.by_dst, "port": self.by_port, "oif": self.by_oif, "iif": self.by_iif}
        for i, r in enumerate(rules):
            kind, key = _index_key(r)
            if kind is None:
                self.generic.append(i)
            else:
                buckets[kind].setdefault(key, []).append(i)

    def candidates(self, p: Packet) -> tuple[Rule, ...]:
        key = LOOKUP(p)
        if self.sourced and type(p.src) is Sources:
            key = (key, p.src)
        hit = self.memo.get(key)
        if hit is None:
            if len(self.memo) >= 16384:  # an index lives as long as its chain is unchanged
                self.memo.clear()
            hit = self.memo[key] = self._candidates(p)
        return hit

    def _candidates(self, p: Packet) -> tuple[Rule, ...]:
        extra: list[int] = []
        if type(p.dst) is Sources:  # a reply to a class of clients: those inside it
            extra.extend(i for k, v in self.by_dst.items() if p.dst.contains(k) for i in v)
        else:
            _pick(extra, self.by_dst, None if p.dst == LOCAL else p.dst)  # LOCAL: any of them
        if p.dport is None:
            extra.extend(i for k, v in self.by_port.items() if k[0] == p.proto for i in v)
        else:
            extra.extend(self.by_port.get((p.proto, p.dport), ()))
        _pick(extra, self.by_oif, p.oif)
        _pick(extra, self.by_iif, p.iif)
        if self.sourced and type(p.src) is Sources:
            generic = self._generic_for(p.src)
            extra = self._let_through(extra, p.src)
        else:
            generic = self.generic
        hits = sorted([*generic, *extra]) if extra else generic
        return tuple(self.rules[i] for i in hits)

    def _generic_for(self, src: Sources) -> list[int]:
        """The unbucketed rules whose source tests some of `src` passes, once per class (each
        binding's packet differs, its class of clients mostly does not)."""
        hit = self.generic_by_src.get(src)
        if hit is None:
            if len(self.generic_by_src) >= 1024:
                self.generic_by_src.clear()
            hit = self.generic_by_src[src] = self._let_through(self.generic, src)
        return hit

    def _let_through(self, hits: list[int], src: Sources) -> list[int]:
        tests = self.sourced
        return [i for i in hits if i not in tests or all(src & t for t in tests[i])]


def _sources(r: Rule) -> tuple[Sources, ...]:
    """The addresses each of `r`'s source tests (`-s`, not negated) lets through."""
    out = []
    for c in r.conds:
        if c.option == "-s" and not c.negated and c.values:
            s = Sources.parse(c.values[0])
            if s is not None:
                out.append(s)
    return tuple(out)


def _pick(extra: list[int], bucket: dict, value) -> None:
    """The bucket's rules for `value`; all of them when the value is unknown (None)."""
    if not bucket:
        return
    if value is None:
        extra.extend(i for v in bucket.values() for i in v)
    else:
        extra.extend(bucket.get(value, ()))


def _index_key(r: Rule):
    proto = port = dst = oif = iif = None
    for c in r.conds:
        if c.negated:
            continue
        o = c.option
        if o == "-p":
            proto = norm_proto(c.values[0])
        elif o == "-d":
            a = norm_addr(c.values[0])
            if a.endswith("/32") or a.endswith("/128"):
                dst = a.rsplit("/", 1)[0]
        elif o in ("--dport", "--destination-port") and c.values and c.values[0].isdigit():
            port = int(c.values[0])
        elif o == "-o" and not c.values[0].endswith("+"):
            oif = c.values[0]
        elif o == "-i" and not c.values[0].endswith("+"):
            iif = c.values[0]
    if dst is not None:
        return "dst", dst
    if proto and port is not None:
        return "port", (proto, port)
    if oif is not None:
        return "oif", oif
    return ("iif", iif) if iif is not None else (None, None)


class IndexedRuleset:
    """A Ruleset with lazily built chain indexes; one per backend and family per snapshot."""

    def __init__(self, rs: Ruleset) -> None:
        self.rs = rs
        self._idx: dict[tuple[str, str], IndexedChain] = {}
        # A table-level error makes that table unreadable; one outside any table (key "") may
        # have cost any table its lines, so it makes every table unreadable.
        self.unreadable = {e.table: str(e) for e in rs.errors if not e.chain}
        self.fields: dict[tuple[str, str], tuple[str, ...] | None] = {}  # path.relevance
        self.cells: dict[tuple, dict[int, list[int]]] = {}  # path.relevance
        self.plans: dict[tuple, object] = {}  # path.relevance.plan per (table, chain or scope)

    def chain(self, table: str, name: str) -> IndexedChain | None:
        key = (table, name)
        idx = self._idx.get(key)
        if idx is None:
            t = self.rs.tables.get(table)
            if t is None:
                return None
            # kept with the chain while its text is unchanged (lazysave), else built here
            idx = derived(t.chains, name, "index", lambda ch: IndexedChain(ch.rules))
            if idx is None:
                return None
            self._idx[key] = idx
        return idx
