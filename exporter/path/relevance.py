"""Which fields of a packet a chain's rules look at, so a chain's outcome can be reused.

Walking DOCKER-USER gives the same outcome for every binding whose packets agree on what its
rules test (usually the input interface and the source address): with 50 source prefixes there
and 1,000 bindings, the chain is walked once per client class, not once per binding. The fields
of a chain are those its rules' conditions read, and those of every chain it jumps to; a chain
that changes the packet on the way (MARK, CONNMARK, NOTRACK, TCPMSS) is never reused (None).
"""

from __future__ import annotations

from exporter.path.mangle import MUTATING
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
