"""The analysis again after a few rules changed, walking only the bindings whose walks read one.

`traced` is `analysis.analyse` keeping what each binding's walks read: per chain looked at, the
packet and the candidate rules its index gave (path.walk records them). `again` takes the last
Trace and new inputs that differ from its own only in the rules of a few chains. A binding whose
walks got, from every changed chain, candidates with the same content as before (and whose
expected rules are as present as before) walks the same way, so it keeps its verdict; the
rules' positions may have moved (a deletion shifts the rules after it), so the positions its
reasons name are moved with them. The others are walked again. Whatever cannot be proven to
give what a whole analysis gives (a changed Docker state, host, chain policy, a chain created
or deleted, a family with two backends, an outcome reused from another walk across a changed
chain) gives None: the caller analyses everything.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from operator import attrgetter

from exporter.path.analysis import (
    Analysis,
    Laps,
    PortReport,
    Ports,
    analyse,
    readable_rules,
)
from exporter.path.evidence import Evidence, Expectations, Present, missing
from exporter.path.matching import Env
from exporter.path.positions import Names
from exporter.path.stale import stale_rules
from exporter.path.steps import Verdict
from exporter.rules.family import FamilyRules
from exporter.rules.lazysave import LazyChains
from exporter.rules.model import Rule, Ruleset
from exporter.rules.normalize import rule_key

TARGET = attrgetter("target")
STALE_CHAINS = frozenset({("nat", "DOCKER"), ("filter", "DOCKER")})  # what path.stale reads


@dataclass(frozen=True, slots=True)
class Trace:
    inputs: tuple  # (state, rules, host_addrs, clients, net)
    analysis: Analysis
    reads: tuple[tuple, ...]  # per binding, what its walks read (analysis.Ports)
    env: Env
    walked: int | None = None  # bindings walked again (None: all, a whole analysis)


def traced(state, rules, host_addrs, clients=None, timings=None, net=None) -> Trace:
    """`analysis.analyse`, with what each binding's walks read."""
    got: list = []
    a = analyse(state, rules, host_addrs, clients, timings, net, got)
    return Trace((state, rules, host_addrs, clients, net), a, tuple(got[:-1]), got[-1])


def again(last: Trace, state, rules, host_addrs, clients=None, timings=None, net=None):
    """The Trace of the new inputs, reusing `last` where its walks read nothing that changed;
    None when that cannot be told (then analyse everything). `timings` as analyse's, and
    "changes": comparing the changed chains (parsing the new ones)."""
    s0, r0, a0, c0, n0 = last.inputs
    if a0 != host_addrs or c0 != clients or n0 != net or s0 != state:
        return None
    lap = Laps(timings)
    changed = changed_chains(r0, rules)
    lap("changes")  # the chains read again, compared (and parsed) here
    if changed is None:
        return None
    inputs = (state, rules, host_addrs, clients, net)
    a = last.analysis
    readable, nft_unread = readable_rules(state, rules)
    exp = _present_again(a, state, rules, changed)
    lap("expect")
    port_of = Ports(state, rules, readable, nft_unread, exp, host_addrs, clients, net, True)
    if port_of.env != last.env:
        return None
    shared_was, names = a.jumps + a.bridge_rules, {f: Names(d) for f, d in changed.items()}
    same_shared = exp.jumps is a.jumps and exp.bridge_rules is a.bridge_rules
    ports, reads, walked = [], [], 0
    indexed: dict[str, dict] = {}  # family → (table, chain) → IndexedChain | None, as looked up
    for b, own, was, read in zip(state.bindings, exp.per_binding, a.ports, last.reads,
                                 strict=True):  # fmt: skip
        kept = None
        if (own is was.rules and same_shared) or missing(b, own, port_of.shared) == missing(
            b, was.rules, shared_was
        ):
            kept = _kept(was.verdict, read, changed.get(b.family, {}),
                         port_of.indexed.get(b.family), indexed.setdefault(b.family, {}),
                         names.get(b.family))  # fmt: skip
        if kept is None:
            port, read = port_of(b, own)
            walked += 1
        else:
            v, read = kept
            port = was if v is was.verdict and own is was.rules else PortReport(b, v, own)
        ports.append(port)
        reads.append(read)
    lap("evaluate")
    stale = []
    for f in readable:
        if changed.get(f, {}).keys() & STALE_CHAINS:
            stale += stale_rules(rules[f], state.bindings)
        else:
            stale += [s for s in a.stale if s.family == f]
    lap("stale")
    new = Analysis(tuple(ports), exp.jumps, exp.bridge_rules, tuple(stale))
    _mark_looked(r0, rules, new, state, reads)
    lap("looked")  # what relevance goes by, recorded
    return Trace(inputs, new, tuple(reads), port_of.env, walked)


def _looked_names(state, reads, tables: dict[str, set[str]]) -> dict[str, dict[str, set]]:
    """Per family and table of `tables` (family → table names), the chain names the bindings'
    walks looked up: the chains on their tapes and the targets of their candidate rules (a jump
    to a chain that is not there is a lookup too)."""
    out = {f: {t: set() for t in ts} for f, ts in tables.items()}
    for b, read in zip(state.bindings, reads, strict=True):
        mine = out.get(b.family)
        if mine is None:
            continue
        for table, name, _, rules in read:
            if table is None:  # an outcome another walk found: the chains behind it
                for t, n in name:
                    if t in mine:
                        mine[t].add(n)
            elif (got := mine.get(table)) is not None:
                got.add(name)
                got.update(map(TARGET, rules))
    return out


def _mark_looked(r0, r1, a: Analysis, state, reads) -> None:
    """Record in the new rules' tables what a whole analysis of them would have looked up
    (lazysave's `seen`: relevance and the next reuse go by it): the walks', the expected
    rules' chains, the stale rules'. Only tables whose chains changed are marked (the others
    keep what they recorded)."""
    todo, tables = [], {}
    for f, fr in r1.items():
        for old, new in zip(r0[f].rulesets, fr.rulesets, strict=True):
            for tname, t in new.tables.items() if old is not new else ():
                was = old.tables.get(tname)
                if (was is None or was.chains is not t.chains) and isinstance(t.chains, LazyChains):
                    todo.append((f, tname, t.chains))
                    tables.setdefault(f, set()).add(tname)
    if not todo:
        return
    names = _looked_names(state, reads, tables)
    evidence = [*a.jumps, *a.bridge_rules, *(e for p in a.ports for e in p.rules)]
    for f, ts in tables.items():
        for table, chain in STALE_CHAINS:
            if table in ts:
                names[f][table].add(chain)
    for e in {(e.expected.family, e.expected.table, e.expected.chain) for e in evidence}:
        f, table, chain = e
        if table in tables.get(f, ()):
            names[f][table].add(chain)
    for f, tname, chains in todo:
        chains.seen.update(names[f][tname])


def changed_chains(r0: dict[str, FamilyRules], r1: dict[str, FamilyRules]):
    """Per family, the (table, chain) pairs whose rules differ (content, not identity) among
    those anything looked up in the old rules, each with its old and new Chain; None when more
    than rules changed."""
    if r0.keys() != r1.keys():
        return None
    out = {}
    for family, fr in r1.items():
        was = r0[family]
        if (was.error, was.nft_error, was.forwarding, was.ipsets) != (
            fr.error, fr.nft_error, fr.forwarding, fr.ipsets
        ) or len(was.rulesets) != len(fr.rulesets):  # fmt: skip
            return None
        diff: dict = {}
        for old, new in zip(was.rulesets, fr.rulesets, strict=True):
            d = _ruleset_changes(old, new)
            if d is None:
                return None
            diff.update(d)
        if diff and len(fr.rulesets) > 1:  # walks combine backends by rule identity
            return None
        out[family] = diff
    return out


def _ruleset_changes(old: Ruleset, new: Ruleset) -> dict | None:
    if old is new:
        return {}
    if (type(old), old.family, old.backend, old.errors) != (
        type(new), new.family, new.backend, new.errors
    ) or old.tables.keys() != new.tables.keys():  # fmt: skip
        return None
    out = {}
    for name, t in old.tables.items():
        a, b = t.chains, new.tables[name].chains
        if a is b:
            continue
        if not isinstance(a, LazyChains) or not isinstance(b, LazyChains):
            return None
        if a.listed and list(a) != list(b):
            return None
        # Nothing else was looked up, so nothing else mattered. Looking up here is not what
        # the new analysis looks up (again() records that): `seen` is left as it was.
        seen, absent = set(b.seen), set()
        try:
            for chain in sorted(a.seen):
                x, y = a.get(chain), b.get(chain)
                if y is None:  # lazysave answers it from then on without recording it
                    absent.add(chain)
                if x is y:
                    continue
                if x is None or y is None or x.policy != y.policy:
                    return None
                if len(x.rules) != len(y.rules) or not all(map(same_rule, x.rules, y.rules)):
                    out[(name, chain)] = (x, y)
        finally:
            b.seen.clear()
            b.seen.update(seen | absent)
    return out


def same_rule(x: Rule, y: Rule) -> bool:
    """The same rule, wherever it stands in its chain. Both come from lazily parsed chains
    (changed_chains makes sure), where a rule is its line parsed: the same line, the same rule."""
    if x.text and y.text:
        return x.text == y.text and x.chain == y.chain and x.backend == y.backend
    return x == y or (
        x.conds == y.conds and x.target == y.target and x.target_opts == y.target_opts
        and x.goto == y.goto and x.backend == y.backend
    )  # fmt: skip


def _present_again(a: Analysis, state, rules, changed) -> Expectations:
    """The last analysis's expected rules, presence checked again where a changed chain gained
    or lost a rule with the same key."""
    present = {f: Present(rules[f].rulesets) for f, d in changed.items() if d}
    touched = {f: _keys_changed(d.values()) for f, d in changed.items() if d}

    def again(evidence: tuple[Evidence, ...], family: str | None = None):
        out = None
        for i, e in enumerate(evidence):
            x, f = e.expected, family or e.expected.family
            if x.key in touched.get(f, ()) and (x.table, x.chain) in changed[f]:
                now = present[f](x)
                if now != e.present:
                    out = out or list(evidence)
                    out[i] = Evidence(x, now)
        return evidence if out is None else tuple(out)

    per = tuple(again(p.rules, b.family) for p, b in zip(a.ports, state.bindings, strict=True))
    return Expectations(again(a.jumps), again(a.bridge_rules), per)


def _keys_changed(pairs) -> set:
    """The keys (normalize.rule_key) of the rules one of the (old, new) chains holds more
    often than the other."""
    out = set()
    for old, new in pairs:
        before, after = Counter(r.text for r in old.rules), Counter(r.text for r in new.rules)
        texts = set(before - after) | set(after - before)
        out |= {rule_key(r) for r in (*old.rules, *new.rules) if r.text in texts}
    return out


def _kept(v: Verdict, reads: tuple, changed: dict, irs, indexed: dict, names) -> tuple | None:
    """`v` with its rule positions moved and `reads` with the new candidates, when the walks
    behind it got the same rules from every changed chain; None when they did not. `irs`: the
    family's indexed rulesets; `indexed`: the changed chains' IndexedChains found so far;
    `names`: the changed chains' `table/chain #N` references (Names)."""
    if not changed:
        return v, reads
    moves: dict[tuple[str, str], dict[int, int]] = {}
    fresh = None
    for k, (table, name, p, old) in enumerate(reads):
        if table is None:  # an outcome another walk found: its candidates are not here
            if not name.isdisjoint(changed):
                return None
            continue
        key = (table, name)
        if key not in changed:
            continue
        ch = indexed.get(key, indexed)  # `indexed` itself: not looked up yet
        if ch is indexed:
            ch = indexed[key] = irs[0].chain(table, name) if irs and len(irs) == 1 else None
        if ch is None:
            return None
        new = ch.candidates(p)
        if len(new) != len(old):
            return None
        m = moves.get(key)
        if m is None:
            m = moves[key] = {}
        for x, y in zip(old, new):  # noqa: B905 (lengths compared above)
            if not (x.text and x.text == y.text and x.chain == y.chain
                    and x.backend == y.backend) and not same_rule(x, y):  # fmt: skip
                return None
            if m.setdefault(x.position, y.position) != y.position:
                return None
        if fresh is None:
            fresh = list(reads)
        fresh[k] = (table, name, p, new)
    if fresh is None:
        return v, reads
    moved = names.moved(v, moves)
    return None if moved is None else (moved, tuple(fresh))
