"""Walk a packet through one hook (raw/nat/filter built-in chain) of every backend's table.

Chains are indexed by exact destination address and by (protocol, destination port), so a
lookup visits the few rules that can concern the packet instead of scanning tens of thousands.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from exporter.path.mangle import MUTATING, before_conntrack, carry, mangle, mangled, merge
from exporter.path.matching import (
    LOCAL,
    MAYBE,
    NO,
    SPLIT,
    Env,
    Packet,
    client_of,
    narrow,
    rule_match,
)
from exporter.path.owner import policy_owner, rule_owner
from exporter.path.relevance import chain_fields
from exporter.path.sources import Sources
from exporter.rules.lazysave import derived
from exporter.rules.model import Rule, Ruleset
from exporter.rules.normalize import norm_addr, norm_proto, split_endpoint

NONTERMINAL = {"", "LOG", "NFLOG", "ULOG", "CHECKSUM", "TRACE", "SET", "CLASSIFY", "DSCP",
               "TOS", "TTL", "HL", "AUDIT", "CONNSECMARK", "SECMARK", "IDLETIMER", "LED",
               "RATEEST", "TEE", "TCPOPTSTRIP"}  # fmt: skip
NAT_DONE = {"SNAT", "MASQUERADE", "NETMAP"}
TRANSLATED = ("DNAT", "REDIRECT", "NAT")
MAX_DEPTH, MAX_BRANCHES = 64, 32
# A chain that tests these sees a different packet for every binding: its walk is not kept.
PER_BINDING = frozenset({"dst", "dport", "orig_dst", "orig_dport"})


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


class IndexedChain:
    """A chain's rules bucketed by one exact, non-negated condition each: destination address,
    (protocol, destination port), output or input interface. `candidates` returns, in order,
    the rules that can match a packet: the unbucketed ones and those of its buckets."""

    __slots__ = ("by_dst", "by_iif", "by_oif", "by_port", "generic", "memo", "rules")

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.rules = rules
        self.generic: list[int] = []
        self.by_dst: dict[str, list[int]] = {}
        self.by_port: dict[tuple[str, int], list[int]] = {}
        self.by_oif: dict[str, list[int]] = {}
        self.by_iif: dict[str, list[int]] = {}
        self.memo: dict[tuple, tuple[Rule, ...]] = {}  # candidates per packet key
        buckets = {"dst": self.by_dst, "port": self.by_port, "oif": self.by_oif, "iif": self.by_iif}
        for i, r in enumerate(rules):
            kind, key = _index_key(r)
            if kind is None:
                self.generic.append(i)
            else:
                buckets[kind].setdefault(key, []).append(i)

    def candidates(self, p: Packet) -> tuple[Rule, ...]:
        key = (p.dst, p.proto, p.dport, p.oif, p.iif)  # all that the buckets look at
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
        hits = sorted([*self.generic, *extra]) if extra else self.generic
        return tuple(self.rules[i] for i in hits)


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


@dataclass(frozen=True, slots=True)
class Settled:
    """Part of the client class stopped at a hook while the rest walked on."""

    sources: Sources
    outcome: Outcome
    table: str
    chain: str
    reply: bool


class Walker:
    def __init__(self, env: Env) -> None:
        self.env = env
        self.branches = 0
        self.only: Sources | None = None  # the part of the client class still walking
        self.settled: list[Settled] = []  # the parts stopped on the way
        self.stale: tuple[Packet, Packet] | None = None  # the last packet narrowed to `only`

    def hook(self, rulesets: list[IndexedRuleset], table: str, chain: str, p: Packet) -> Outcome:
        """Traverse `table`/`chain` in every backend, in hook priority order, the packet leaving
        one going into the next. DROP/REJECT/UNKNOWN anywhere ends the walk. The first nat
        chain that translates decides (nf_nat_inet_fn stops there); two that translate
        differently at the same priority (iptables-nft and legacy) are UNKNOWN.

        When the outcome differs between parts of the packet's client class, the parts that
        stop here are `settled` and the one part that goes on is walked on (`only`, its
        packet the outcome's `out`); parts that go on differently raise Fork, and judge walks
        each of them."""
        whole = client_of(p)
        if whole is not None and self.only is not None and whole != self.only:
            if self.stale is None or self.stale[0] is not p:  # _path hands one packet on
                self.stale = (p, narrow(p, self.only))
            p = self.stale[1]
        o = self._hook(rulesets, 0, table, chain, p, Outcome("ACCEPT", out=p))
        if o.verdict == "SPLIT":
            going = [(s, po) for s, po in o.parts if po.verdict not in STOPS]
            if len(going) > 1:
                raise Fork(tuple(s for s, _ in o.parts))
            for s, po in o.parts:
                if po.verdict in STOPS:
                    self.settled.append(Settled(s, self.owned(po), table, chain, p.reply))
            if not going:  # every part stopped: the walk ends with the last of them
                last = self.settled.pop()
                self.only = last.sources
                return last.outcome
            self.only, o = going[0]
            p = narrow(p, self.only)
        if o.out is not None and o.out is not p:
            o = replace(o, out=carry(p, o.out))
        return self.owned(o)

    def owned(self, o: Outcome) -> Outcome:
        """`o` with the owner of its deciding rule (path.owner), when it can decide a state
        other than ok: a stop or a translation."""
        if o.rule is None or o.owner or o.verdict in ("ACCEPT", "RETURN"):
            return o
        return replace(o, owner=rule_owner(o.rule, self.env.user_chains, self.env.bridges))

    def _hook(self, rulesets, start: int, table: str, chain: str, p: Packet, result: Outcome,
              first: int | None = None):  # fmt: skip
        """From backend `start` on; `first`: the order of the backend that translated."""
        for k in range(start, len(rulesets)):
            irs = rulesets[k]
            order = getattr(irs.rs, "order", 0)
            if first is not None and order > first:
                break  # a later nat chain: the translation is done
            bad = irs.unreadable.get(table) or irs.unreadable.get("")
            if bad:
                return Outcome("UNKNOWN", why=f"{irs.rs.backend} {table} table unreadable: {bad}")
            ch = irs.chain(table, chain)
            if ch is None:
                continue
            pre = before_conntrack(table, irs.rs)
            o = self.run(
                irs, table, ch.candidates(p), 0, replace(p, before_ct=True) if pre else p, 0
            )
            if o.verdict == "SPLIT":  # each part goes on through the other backends alone
                out = []
                for s, po in o.parts:
                    stop, res = self._settle(irs, table, chain, po, result)
                    f = order if first is None and res and res.verdict in TRANSLATED else first
                    rest = stop or self._hook(
                        rulesets, k + 1, table, chain, carry(narrow(p, s), po.out), res, f
                    )
                    out.append((s, rest))
                return combine(out)
            stop, result = self._settle(irs, table, chain, o, result)
            if stop:
                return stop
            p = carry(p, o.out)
            if first is None and result.verdict in TRANSLATED:
                first = order
        return result if result.out is p else replace(result, out=p)

    def _settle(self, irs, table: str, chain: str, o: Outcome, result: Outcome):
        """One backend's outcome at a hook: (a stop, None) or (None, the hook's result so far)."""
        if o.verdict == "RETURN":
            policy = irs.rs.tables[table].chains[chain].policy
            why = f"{table}/{chain} policy {policy} ({irs.rs.backend})"
            verdict = "DROP" if policy == "DROP" else "ACCEPT"
            o = Outcome(verdict, why=why, owner=policy_owner(irs.rs), out=o.out)
        if o.verdict in STOPS:
            return o, None
        if result.verdict in TRANSLATED:
            if o.verdict in TRANSLATED and not result.same(o):
                why = f"{result.rule.ref} and {o.rule.ref} translate differently (2 backends)"
                return Outcome("UNKNOWN", o.rule, why=why), None
            return None, result
        if o.verdict in TRANSLATED:
            return None, o
        if result.rule is None and (o.rule is not None or not result.why):
            return None, o  # name a rule that accepted rather than another backend's policy
        return None, result

    def run(self, irs, table: str, rules, i: int, p: Packet, depth: int) -> Outcome:
        while i < len(rules):
            r = rules[i]
            i += 1
            m, why = rule_match(r, p, self.env)
            if m == NO:
                continue
            if m == SPLIT:  # the rule matches a part of the client class: walk both parts on
                whole = client_of(p)
                inside = self.run(irs, table, rules, i - 1, narrow(p, why), depth)
                outside = self.run(irs, table, rules, i, narrow(p, whole - why), depth)
                return combine(((why, inside), (whole - why, outside)))
            res, p2 = self.apply(irs, table, r, p, depth)
            if res is not None and res.verdict == "SPLIT" and not r.goto:
                res = self._resume(irs, table, rules, i, p2, depth, res)
            if m == MAYBE:
                if res is None and p2 == p:
                    continue
                self.branches += 1
                if self.branches > MAX_BRANCHES:
                    return Outcome("UNKNOWN", r, why="too many rules the exporter cannot decide")
                taken = res if res is not None else self.run(irs, table, rules, i, p2, depth)
                skipped = self.run(irs, table, rules, i, p, depth)
                out = merge(taken.out, skipped.out)
                if taken.same(skipped) and (out is not None or taken.out is None):
                    return replace(taken, out=out)
                return Outcome("UNKNOWN", r, why=f"{r.ref} may or may not apply: {why}")
            if res is not None:
                return res
            p = p2
        return Outcome("RETURN", out=p)

    def _resume(self, irs, table: str, rules, i: int, p: Packet, depth: int, res: Outcome):
        """After a jump whose chain returned for some parts of the client class: those parts
        (merged: one walk) carry on after the jump; the others have their outcome."""
        out = []
        for s, o in res.parts:
            if o.verdict == "RETURN":
                o = self.run(irs, table, rules, i, carry(narrow(p, s), o.out), depth)
            out.append((s, o))
        return combine(out)

    def apply(self, irs, table: str, r: Rule, p: Packet, depth: int):
        t = r.target
        if r.conds and r.conds[0].option == "?unparsed":  # iptsave's placeholder: any target
            return Outcome("UNKNOWN", r, why=f"{r.ref} could not be parsed"), p
        if t in NONTERMINAL:
            return None, p
        if t in MUTATING:
            return None, mangle(r, p)
        if t in ("ACCEPT", "DROP", "REJECT", "RETURN"):
            return Outcome(t, r, out=p), p
        if t == "DNAT" and table == "nat":
            to = split_endpoint(r.target_opt("--to-destination") or "")
            if to is None:
                return Outcome("UNKNOWN", r, why=f"{r.ref}: DNAT destination not understood"), p
            return Outcome("DNAT", r, to, out=p), p
        if t == "REDIRECT" and table == "nat":
            return Outcome("REDIRECT", r, out=p), p
        if t in NAT_DONE and table == "nat":
            return Outcome("NAT", r, out=p), p
        sub = irs.chain(table, t)
        if sub is None:
            return Outcome("UNKNOWN", r, why=f"{r.ref}: target {t} not understood"), p
        if depth >= MAX_DEPTH:
            return Outcome("UNKNOWN", r, why="jump chain too deep (loop?)"), p
        o = self.enter(irs, table, t, sub, p, depth + 1)
        if o.verdict == "RETURN" and not r.goto:
            return None, carry(p, o.out)
        return o, p

    def enter(self, irs, table: str, name: str, sub: IndexedChain, p: Packet, depth: int):
        """Walk a jumped-to chain, or reuse its outcome for a packet that agrees with an earlier
        one on every field the chain looks at and on what rules may have changed (marks,
        conntrack state: what `carry` takes from the outcome). See path.relevance."""
        fields = chain_fields(irs, table, name)
        if fields is None or PER_BINDING.intersection(fields):  # no other packet is the same
            return self.run(irs, table, sub.candidates(p), 0, p, depth)
        key = (id(irs), table, name, mangled(p), p.untracked_by, *[getattr(p, f) for f in fields])
        o = self.env.memo.get(key)
        if o is None:
            o = self.env.memo[key] = self.run(irs, table, sub.candidates(p), 0, p, depth)
        return o
