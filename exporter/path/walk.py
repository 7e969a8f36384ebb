"""Walk a packet through one hook (raw/nat/filter built-in chain) of every backend's table.

Chains are indexed (path.index), outcomes combine per part of the client class (path.outcome).
"""

from __future__ import annotations

from exporter.path.fastcopy import replace
from exporter.path.index import IndexedChain, IndexedRuleset
from exporter.path.mangle import MUTATING, before_conntrack, carry, mangle, mangled, merge
from exporter.path.matching import (
    MAYBE,
    NO,
    SPLIT,
    Env,
    Packet,
    client_of,
    narrow,
    rule_match,
)
from exporter.path.outcome import STOPS, Fork, Outcome, Settled, combine
from exporter.path.owner import policy_owner, rule_owner
from exporter.path.relevance import PER, chain_fields, plan, rules_fields, src_cell
from exporter.path.sources import Sources
from exporter.rules.model import Rule
from exporter.rules.normalize import split_endpoint

NONTERMINAL = {"", "LOG", "NFLOG", "ULOG", "CHECKSUM", "TRACE", "SET", "CLASSIFY", "DSCP",
               "TOS", "TTL", "HL", "AUDIT", "CONNSECMARK", "SECMARK", "IDLETIMER", "LED",
               "RATEEST", "TEE", "TCPOPTSTRIP"}  # fmt: skip
NAT_DONE = {"SNAT", "MASQUERADE", "NETMAP"}
TRANSLATED = ("DNAT", "REDIRECT", "NAT")
MAX_DEPTH, MAX_BRANCHES = 64, 32


def alike(a: Outcome, b: Outcome) -> bool:
    """The same outcome but for what `carry` does not take from its packet."""
    return a is b or (
        a.verdict == b.verdict and a.rule is b.rule and a.to == b.to and a.why == b.why
        and a.owner == b.owner and a.parts == b.parts and mangled(a.out) == mangled(b.out)
    )  # fmt: skip


def idle(rulesets: list[IndexedRuleset], table: str, chain: str) -> bool:
    """No backend has the hook's chain, nor an unreadable table: every packet passes as it is."""
    for irs in rulesets:
        if irs.chain(table, chain) is not None:
            return False
        if irs.unreadable and (irs.unreadable.get(table) or irs.unreadable.get("")):
            return False
    return True


class Walker:
    def __init__(self, env: Env) -> None:
        self.env = env
        self.branches = 0
        self.only: Sources | None = None  # the part of the client class still walking
        self.settled: list[Settled] = []  # the parts stopped on the way
        self.stale: tuple | None = None  # the last narrowing: (packet, part, narrowed packet)
        self.returned: Outcome | None = None  # the last RETURN outcome (shared)

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
        only = self.only
        if whole is not None and only is not None and whole is not only and whole != only:
            p = self.narrow(p, only)
        if idle(rulesets, table, chain):
            return Outcome("ACCEPT", out=p)
        o = self._hook(rulesets, 0, table, chain, p, None)
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
            p = self.narrow(p, self.only)
        if o.out is not None and o.out is not p:
            o = replace(o, out=carry(p, o.out))
        return self.owned(o)

    def narrow(self, p: Packet, part: Sources) -> Packet:
        """matching.narrow, the last one kept: a hook, the backends' loop and the rest of the
        chain after a split narrow one packet to one part (and _path hands one packet on)."""
        last = self.stale
        if last is None or last[0] is not p or (last[1] is not part and last[1] != part):
            last = self.stale = (p, part, narrow(p, part))
        return last[2]

    def owned(self, o: Outcome) -> Outcome:
        """`o` with the owner of its deciding rule (path.owner), when it can decide a state
        other than ok: a stop or a translation."""
        if o.rule is None or o.owner or o.verdict in ("ACCEPT", "RETURN"):
            return o
        memo, key = self.env.memo, ("owned", id(o))
        kept = memo.get(key)  # a remembered chain's outcome recurs: own it once
        if kept is None or kept[0] is not o:
            owner = rule_owner(o.rule, self.env.user_chains, self.env.bridges)
            kept = memo[key] = (o, replace(o, owner=owner))
        return kept[1]

    def _hook(self, rulesets, start: int, table: str, chain: str, p: Packet, result: Outcome,
              first: int | None = None):  # fmt: skip
        """From backend `start` on; `first`: the order of the backend that translated;
        `result`: the hook's outcome so far (None: no backend had the chain yet)."""
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
            o = self.enter(irs, table, chain, ch, replace(p, before_ct=True) if pre else p, 0)
            if o.verdict == "SPLIT":  # each part goes on through the other backends alone
                out, same = [], True
                for s, po in o.parts:
                    q = None if po.verdict in STOPS else carry(self.narrow(p, s), po.out)
                    stop, res = self._settle(irs, table, chain, po, result, q)
                    f = order if first is None and res and res.verdict in TRANSLATED else first
                    rest = stop or self._hook(rulesets, k + 1, table, chain, q, res, f)
                    out.append((s, rest))
                    same = same and alike(rest, po)
                return o if same else combine(out)  # o's parts are combined already
            q = carry(p, o.out)
            stop, result = self._settle(irs, table, chain, o, result, q)
            if stop:
                return stop
            p = q
            if first is None and result.verdict in TRANSLATED:
                first = order
        if result is None:
            return Outcome("ACCEPT", out=p)
        return result if result.out is p else replace(result, out=p)

    def _settle(self, irs, table: str, chain: str, o: Outcome, result: Outcome | None, out):
        """One backend's outcome at a hook: (a stop, None) or (None, the hook's result so far);
        `out`: the packet as the backend lets it go."""
        if o.verdict == "RETURN":
            policy = irs.rs.tables[table].chains[chain].policy
            why = f"{table}/{chain} policy {policy} ({irs.rs.backend})"
            verdict = "DROP" if policy == "DROP" else "ACCEPT"
            o = Outcome(verdict, why=why, owner=policy_owner(irs.rs), out=out)
        if o.verdict in STOPS:
            return o, None
        if result is None:
            return None, o
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
        last = self.returned  # a remembered walk's outcome may carry another packet too
        if last is None or carry(p, last.out) is not p:  # what `carry` takes from it differs
            last = self.returned = Outcome("RETURN", out=p)
        return last

    def _resume(self, irs, table: str, rules, i: int, p: Packet, depth: int, res: Outcome):
        """After a jump whose chain returned for some parts of the client class: those parts
        (merged: one walk) carry on after the jump; the others have their outcome."""
        out, same = [], True
        for s, o in res.parts:
            if o.verdict == "RETURN":
                o = self.run(irs, table, rules, i, carry(self.narrow(p, s), o.out), depth)
                same = False
            out.append((s, o))
        return res if same else combine(out)  # res's parts are combined already

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
            owner = rule_owner(r, self.env.user_chains, self.env.bridges)  # as `owned` would
            return Outcome("DNAT", r, to, owner=owner, out=p), p
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
        tape = self.env.tape
        start = len(tape) if tape is not None else 0
        rules, plans = self.candidates(table, name, sub, p), irs.plans
        how = plans.get((table, name))
        if how is None:
            how = plans[(table, name)] = plan(chain_fields(irs, table, name))
        scope, tested = name, sub.rules  # tested: all that a source address's cell depends on
        if how is PER and type(p.dst) is Sources:
            # a reply to a client class: the few rules its interfaces select may not read the
            # per-binding fields that the others of the chain do
            scope = (name, p.dst, p.proto, p.dport, p.oif, p.iif)  # what selected them
            how, tested = plans.get((table, scope)), rules
            if how is None:
                how = plans[(table, scope)] = plan(rules_fields(irs, table, rules))
        if type(how) is not tuple:  # no other packet is the same
            return self.run(irs, table, rules, 0, p, depth)
        get, at = how
        values = get(p)
        if at is not None and type(values[at]) is str:
            cell = src_cell(irs, self.env.sets, table, scope, tested, values[at])
            values = (*values[:at], cell, *values[at + 1 :])
        key = (id(irs), table, scope, values)
        o = self.env.memo.get(key)
        if o is None:
            o = self.env.memo[key] = self.run(irs, table, rules, 0, p, depth)
            if tape is not None:
                self.env.taped[key] = chains_read(tape[start:], (table, name))
        elif tape is not None:  # this walk read what the memo's walk read
            tape.append((None, self.env.taped[key], None, None))
        return o

    def candidates(self, table: str, name: str, ch: IndexedChain, p: Packet):
        """`ch.candidates(p)`, recorded on the analysis's tape when it keeps one."""
        got = ch.candidates(p)
        if self.env.tape is not None:
            self.env.tape.append((table, name, p, got))
        return got


def chains_read(entries, first: tuple[str, str]) -> frozenset:
    """The (table, chain) pairs a part of the tape read (path.reuse)."""
    out = {first}
    for table, name, _, _ in entries:
        if table is None:
            out |= name
        else:
            out.add((table, name))
    return frozenset(out)
