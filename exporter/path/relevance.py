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

from exporter.path.mangle import MUTATING
from exporter.path.sources import Sources
from exporter.rules.model import Cond

ALL = None  # every field: the whole packet is the key
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
    (a rule that changes the packet, a condition not classified, a loop)."""
    cache = irs.fields
    key = (table, name)
    if key in cache:
        return cache[key]
    if key in seen:
        return ALL
    t = irs.rs.tables.get(table)
    chain = t.chains.get(name) if t is not None else None
    out: set[str] | None = set() if chain is not None else None
    for r in chain.rules if chain is not None else ():
        if r.target in MUTATING:
            out = None
            break
        for c in r.conds:
            f = cond_fields(c)
            if f is ALL:
                out = None
                break
            out.update(f)
        if out is None:
            break
        if r.target in t.chains:
            sub = chain_fields(irs, table, r.target, seen | {key})
            if sub is ALL:
                out = None
                break
            out.update(sub)
    cache[key] = None if out is None else tuple(sorted(out))
    return cache[key]


ADDRESS_TESTS = {"-s", "-d", "--src-range", "--dst-range", "--ctorigsrc", "--ctorigdst"}


def src_cell(irs, sets: dict, table: str, name: str, addr):
    """What of the source address `addr` the walk of `table`/`name` can depend on: its cell
    (see above) for an address given as text, else `addr` itself (a client class, a symbol)."""
    if type(addr) is not str:
        return addr
    n = _number(addr)
    if n is None:
        return addr
    key = (table, name)
    bounds = irs.cells.get(key)
    if bounds is None:
        bounds = irs.cells[key] = _bounds(irs, sets, table, name)
    b = bounds.get(n[0])
    return (n[0], bisect_right(b, n[1])) if b else (n[0],)


@lru_cache(maxsize=65536)
def _number(addr: str) -> tuple[int, int] | None:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None
    return ip.version, int(ip)


def _bounds(irs, sets: dict, table: str, name: str) -> dict[int, list[int]]:
    """Per IP version, the sorted first addresses of the cells of `table`/`name` and the chains
    it reaches: every tested prefix, range or set starts one, and ends one (its last + 1)."""
    out: dict[int, set[int]] = {}
    todo, seen = [name], {name}
    t = irs.rs.tables.get(table)
    while todo and t is not None:
        chain = t.chains.get(todo.pop())
        for r in chain.rules if chain is not None else ():
            for c in r.conds:
                for s in _tested(c, sets):
                    for lo, hi in s.spans:
                        out.setdefault(s.version, set()).update((lo, hi + 1))
            if r.target in t.chains and r.target not in seen:
                seen.add(r.target)
                todo.append(r.target)
    return {v: sorted(b) for v, b in out.items()}


def _tested(c: Cond, sets: dict):
    if c.option in ADDRESS_TESTS and c.values:
        s = Sources.parse(c.values[0])
        return (s,) if s is not None else ()
    if c.module == "set" and c.option == "--match-set" and c.values and c.values[0] in sets:
        return (sets[c.values[0]],)
    return ()
