"""Which fields of a packet a chain's rules look at, so a chain's outcome can be reused.

Walking DOCKER-USER gives the same outcome for every binding whose packets agree on what its
rules test (usually the input interface and the source address): with 50 source prefixes there
and 1,000 bindings, the chain is walked once per client class, not once per binding. The fields
of a chain are those its rules' conditions read, and those of every chain it jumps to; a chain
that changes the packet on the way (MARK, CONNMARK, NOTRACK, TCPMSS) is never reused (None).

A single source address (the container's, on the reply's way back) is keyed by its cell: the
stretch of addresses between consecutive bounds of every prefix, range or set the chains test.
Addresses of one cell pass or fail each of those tests alike, so they walk alike.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
from functools import lru_cache
from operator import attrgetter

from exporter.path.mangle import MUTATING
from exporter.path.sources import Sources
from exporter.rules.model import Cond

ALL = None  # every field: the whole packet is the key
# A chain that tests these sees a different packet for every binding: its walk is not kept.
PER_BINDING = frozenset({"dst", "dport", "orig_dst", "orig_dport"})
CORE = {"-p": ("proto",), "-s": ("src",), "-d": ("dst",), "-i": ("iif",), "-o": ("oif",),
        "-f": ()}  # fmt: skip
PORTS = ("proto", "dport", "sport", "tcp_flags")
CT = ("ctstate", "orig_dst", "orig_dport", "src", "dst", "sport", "dport", "reply")
MODULES = {
    **{m: PORTS for m in ("tcp", "udp", "sctp", "udplite", "dccp")},
    "multiport": ("proto", "dport", "sport"),
    "addrtype": ("dst_local", "src_local"),
    "conntrack": CT,
    "state": CT,
    "set": ("src", "dst"),
    "iprange": ("src", "dst"),
    "mark": ("mark",),
    "connmark": ("ctmark", "ctstate"),
    "tcpmss": ("proto", "tcp_flags", "mss"),
    "comment": (),
    "pkttype": (),
}


def cond_fields(c: Cond) -> tuple[str, ...] | None:
    if c.option in CORE:
        return CORE[c.option]
    return MODULES.get(c.module, ALL)


def chain_fields(irs, table: str, name: str, seen: frozenset = frozenset()):
    """The sorted fields `table`/`name` and the chains it reaches test; None: reuse is unsafe
    (a rule that changes the packet, a condition not classified, a loop). Once one of them is
    PER_BINDING the rest are not looked for."""
    cache = irs.fields
    key = (table, name)
    if key in cache:
        return cache[key]
    if key in seen:
        return ALL
    t = irs.rs.tables.get(table)
    chain = t.chains.get(name) if t is not None else None
    out = None if chain is None else _fields(irs, table, t, chain.rules, seen | {key})
    cache[key] = out
    return out


def rules_fields(irs, table: str, rules):
    """chain_fields of only `rules` (some of a chain's, and the chains they reach)."""
    return _fields(irs, table, irs.rs.tables[table], rules, frozenset())


NEVER, PER = "never", "per-binding"  # plans of walks not reused
# What `carry` takes from a remembered outcome's packet: packets that differ there differ.
CHANGED = ("mark", "ctmark", "ctstate", "mss", "untracked_by")


def plan(fields):
    """How a walk reading `fields` is remembered: (an attrgetter of those fields and of CHANGED,
    the position of `src` among them or None), or NEVER (fields unknown) or PER (a field that
    differs for every binding)."""
    if fields is None:
        return NEVER
    if not PER_BINDING.isdisjoint(fields):
        return PER
    names = CHANGED + tuple(fields)
    return attrgetter(*names), (names.index("src") if "src" in fields else None)


def _fields(irs, table: str, t, rules, seen: frozenset):
    out: set[str] = set()
    for r in rules:
        if not PER_BINDING.isdisjoint(out):
            break  # never reused: the rest cannot change that (DOCKER has a rule per port)
        if r.target in MUTATING:
            return None
        for c in r.conds:
            f = cond_fields(c)
            if f is ALL:
                return None
            out.update(f)
        if r.target in t.chains:
            sub = chain_fields(irs, table, r.target, seen)
            if sub is ALL:
                return None
            out.update(sub)
    return tuple(sorted(out))


ADDRESS_TESTS = {"-s", "-d", "--src-range", "--dst-range", "--ctorigsrc", "--ctorigdst"}


def src_cell(irs, sets: dict, table: str, scope, rules, addr):
    """What of the source address `addr` the walk of `rules` (of `table`, `scope` naming them
    for the cache) can depend on: its cell (see above) for an address given as text, else
    `addr` itself (a client class, a symbol)."""
    if type(addr) is not str:
        return addr
    n = _number(addr)
    if n is None:
        return addr
    key = (table, scope)
    bounds = irs.cells.get(key)
    if bounds is None:
        bounds = irs.cells[key] = _bounds(irs, sets, table, rules)
    b = bounds.get(n[0])
    return (n[0], bisect_right(b, n[1])) if b else (n[0],)


@lru_cache(maxsize=65536)
def _number(addr: str) -> tuple[int, int] | None:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None
    return ip.version, int(ip)


def _bounds(irs, sets: dict, table: str, rules) -> dict[int, list[int]]:
    """Per IP version, the sorted first addresses of the cells of `rules` and the chains they
    reach: every tested prefix, range or set starts one, and ends one (its last + 1)."""
    out: dict[int, set[int]] = {}
    t = irs.rs.tables[table]
    todo, seen = [rules], set()
    while todo:
        for r in todo.pop():
            for c in r.conds:
                for s in _tested(c, sets):
                    for lo, hi in s.spans:
                        out.setdefault(s.version, set()).update((lo, hi + 1))
            if r.target in t.chains and r.target not in seen:
                seen.add(r.target)
                todo.append(t.chains[r.target].rules)
    return {v: sorted(b) for v, b in out.items()}


def _tested(c: Cond, sets: dict):
    if c.option in ADDRESS_TESTS and c.values:
        s = Sources.parse(c.values[0])
        return (s,) if s is not None else ()
    if c.module == "set" and c.option == "--match-set" and c.values and c.values[0] in sets:
        return (sets[c.values[0]],)
    return ()
