"""Does a rule match a packet? Three answers: YES, NO, or MAYBE (with the reason).

MAYBE is how the evaluator stays honest: a condition it cannot decide for the modelled packet
(an unknown match module, a rate limit, a set it cannot resolve) is never guessed; the evaluator
follows both outcomes and reports `unknown` when they differ.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import lru_cache

from exporter.path.fastcopy import replace
from exporter.path.sources import Sources, split, split_text
from exporter.rules.model import Cond, Rule
from exporter.rules.nftexpr import UNKNOWN as NFT
from exporter.rules.normalize import norm_proto

YES, NO, MAYBE = 1, 0, 2
SPLIT = 3  # rule_match: the rule matches a part of the client's source addresses (a Sources)
# Symbolic addresses: a remote client whose address lies in no prefix the rules name (except
# /0), and "some local address of the host" when the binding is a wildcard and none is known.
REMOTE, LOCAL = "<remote>", "<local>"
PORT_MODULES = {"tcp", "udp", "sctp", "udplite", "dccp"}
ALWAYS = {"comment"}
UNDECIDABLE = {"limit", "hashlimit", "recent", "connlimit", "statistic", "owner", "socket",
               "physdev", "rpfilter", "length", "ttl", "hl", "dscp", "tos", "ecn", "string",
               "time", "quota", "u32", "bpf", "cgroup", "policy", "ipvs", "helper"}  # fmt: skip
# What the answer of such a match depends on, for the reason of an `unknown`.
DEPENDS = {"statistic": "chance", "time": "the time of day", "string": "the payload",
           "limit": "the traffic rate", "hashlimit": "the traffic rate",
           "recent": "earlier traffic", "connlimit": "the number of connections",
           "quota": "earlier traffic"}  # fmt: skip
NFT_DEPENDS = {"numgen": "chance", "meta hour": "the time of day", "meta day": "the time of day",
               "meta time": "the time of day", "limit": "the traffic rate",
               "quota": "earlier traffic", "ct count": "the number of connections"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Packet:
    """A modelled packet. The client's address (`src`, or `dst` of a reply) may be a `Sources`:
    every address of a class of clients, which source tests split (see path.sources)."""

    family: str
    proto: str
    src: str | Sources
    dst: str | Sources
    sport: int | None  # None: unknown (a client's ephemeral port)
    dport: int | None
    iif: str | None  # None: an external interface whose name is not known
    oif: str | None
    ctstate: str  # NEW, ESTABLISHED, UNTRACKED (a notrack rule), INVALID
    dst_local: bool
    src_local: bool
    tcp_flags: frozenset[str]
    mark: int | None = 0  # the packet's mark (meta mark); None: cannot be told
    ctmark: int | None = 0  # its connection's mark (ct mark); None: cannot be told
    mss: int | None = None  # a SYN's MSS option; None: no SYN, or clamped to a path MTU
    # The connection's original direction as conntrack records it (before DNAT); None: as now.
    orig_dst: str | None = None
    orig_dport: int | None = None
    reply: bool = False
    untracked_by: str = field(default="", compare=False)  # the notrack rule, for the reason
    before_ct: bool = False  # walked before conntrack (raw): no connection attached yet


@dataclass(frozen=True, slots=True)
class Env:
    bridges: frozenset[str]
    # ipset names, and nft named sets as `nft:<family> <table>/<set>` → their addresses; a set
    # that is not here (not read, or not of addresses) makes its matches undecidable
    sets: dict[str, Sources]
    user_chains: frozenset[tuple[str, str, str]] = frozenset()  # (backend, table, chain)
    # the outcomes of hooks for packets of client classes (walk.Walker.hook), per analysis
    memo: dict = field(default_factory=dict, compare=False, repr=False)
    # path.analysis's record of what the walks read (walk.Walker.candidates), None: not kept;
    # `taped`: the chains read by the walk behind each `memo` entry
    tape: list | None = field(default=None, compare=False, repr=False)
    taped: dict = field(default_factory=dict, compare=False, repr=False)


def client_of(p: Packet) -> Sources | None:
    """The client's addresses when the packet carries a class of them."""
    if type(p.src) is Sources:
        return p.src
    return p.dst if type(p.dst) is Sources else None


def narrow(p: Packet, part: Sources) -> Packet:
    """`p` from the addresses `part` of its client class only."""
    if type(p.src) is Sources:
        return replace(p, src=part)
    return replace(p, dst=part) if type(p.dst) is Sources else p


@lru_cache(maxsize=65536)
def _net(value: str):
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None


@lru_cache(maxsize=65536)
def addr_match(addr: str, prefix: str) -> int:
    net = _net(prefix)
    if net is None:
        return MAYBE
    if net.prefixlen == 0:
        return YES
    if addr == REMOTE:
        return NO
    if addr == LOCAL:
        return NO if net.is_loopback else MAYBE
    try:
        return YES if ipaddress.ip_address(addr) in net else NO
    except ValueError:
        return MAYBE


def addr_test(addr, prefix: str) -> int | Sources:
    """addr_match, for a class of addresses too (YES, NO, MAYBE or the part inside)."""
    if type(addr) is Sources:
        r = split_text(addr, prefix)
        return MAYBE if r is None else r
    return addr_match(addr, prefix)


def set_test(addr, members: Sources) -> int | Sources:
    if type(addr) is Sources:
        return split(addr, members) if addr.version == members.version else NO
    if addr == REMOTE:
        return YES if members == Sources.everything(members.version) else NO
    if addr == LOCAL:
        return MAYBE if members else NO
    inside = members.contains(addr)
    return MAYBE if inside is None else (YES if inside else NO)


def iface_match(name: str | None, pattern: str, env: Env) -> int:
    if pattern.endswith("+"):
        stem = pattern[:-1]
        if name is not None:
            return YES if name.startswith(stem) else NO
        return YES if stem == "" else MAYBE
    if name is not None:
        return YES if name == pattern else NO
    return NO if pattern == "lo" or pattern in env.bridges else MAYBE


EPHEMERAL = (32768, 65535)  # a client's source port: Linux and Windows ephemeral ranges


def port_in(port: int | None, spec: str) -> int:
    """Is `port` in a `--dport` spec (`80`, `8000:8010`, `80,443`)? None: an ephemeral port."""
    overlap = False
    for part in spec.split(","):
        lo_s, _, hi_s = part.partition(":")
        try:
            lo, hi = int(lo_s or 0), int(hi_s or lo_s or 65535)
        except ValueError:
            return MAYBE
        if port is None:
            if lo <= EPHEMERAL[0] and hi >= EPHEMERAL[1]:
                return YES
            overlap = overlap or (lo <= EPHEMERAL[1] and hi >= EPHEMERAL[0])
        elif lo <= port <= hi:
            return YES
    return MAYBE if overlap else NO


def cond_match(c: Cond, p: Packet, env: Env) -> int | Sources:
    """YES/NO/MAYBE, or for a source test on a client class, the part of it that passes."""
    o = c.option
    if o == "-p":
        want = norm_proto(c.values[0])
        return YES if want in ("all", "0") or want == p.proto else NO
    if o == "-s" or o == "-d":
        return addr_test(p.src if o == "-s" else p.dst, c.values[0])
    if o == "-i" or o == "-o":
        return iface_match(p.iif if o == "-i" else p.oif, c.values[0], env)
    if o == "-f":
        return NO
    m = c.module
    if m in ALWAYS:
        return YES
    if m in PORT_MODULES:
        return _port_module(c, p)
    handler = _MODULES.get(m)
    return handler(c, p, env) if handler else MAYBE


def _port_module(c: Cond, p: Packet) -> int:
    if c.module != p.proto:
        return NO
    o = c.option
    if o in ("--dport", "--destination-port"):
        return port_in(p.dport, c.values[0])
    if o in ("--sport", "--source-port"):
        return port_in(p.sport, c.values[0])
    if o == "--syn":
        return YES if p.tcp_flags == {"SYN"} else NO
    if o == "--tcp-flags" and len(c.values) == 2:
        mask, comp = (set(v.upper().split(",")) for v in c.values)
        mask = {"SYN", "ACK", "FIN", "RST", "URG", "PSH"} if "ALL" in mask else mask
        return YES if (p.tcp_flags & mask) == (comp - {"NONE"}) else NO
    return MAYBE


def _multiport(c: Cond, p: Packet, env: Env) -> int:
    o = c.option
    if o in ("--dports", "--destination-ports"):
        return port_in(p.dport, c.values[0])
    if o in ("--sports", "--source-ports"):
        return port_in(p.sport, c.values[0])
    if o == "--ports":
        a, b = port_in(p.dport, c.values[0]), port_in(p.sport, c.values[0])
        return YES if YES in (a, b) else (MAYBE if MAYBE in (a, b) else NO)
    return MAYBE


def _addrtype(c: Cond, p: Packet, env: Env) -> int:
    if c.option not in ("--dst-type", "--src-type") or not c.values:
        return MAYBE
    local = p.dst_local if c.option == "--dst-type" else p.src_local
    types = set(c.values[0].upper().split(","))
    if "LOCAL" in types and local:
        return YES
    return YES if "UNICAST" in types else NO


def _conntrack(c: Cond, p: Packet, env: Env) -> int:
    o, v = c.option, c.values[0] if c.values else ""
    if o in ("--ctstate", "--state") and v:
        # before conntrack no connection is attached: the state reads INVALID
        state = "INVALID" if p.before_ct and p.ctstate != "UNTRACKED" else p.ctstate
        return YES if state in v.upper().split(",") else NO
    if o == "--ctorigdst" and v:
        return addr_test(p.orig_dst or (p.src if p.reply else p.dst), v)
    if o == "--ctorigsrc" and v:
        return addr_test(p.dst if p.reply else p.src, v)
    if o == "--ctorigdstport" and v:
        return port_in(p.orig_dport or (p.sport if p.reply else p.dport), v)
    if o == "--ctorigsrcport" and v:
        return port_in(p.dport if p.reply else p.sport, v)
    if o == "--ctdir" and v:
        return YES if (v.upper() == "REPLY") == p.reply else NO
    if o == "--ctstatus" and v.upper() == "DNAT":  # firewalld's forward chain starts with this
        return YES if p.orig_dst is not None and (p.reply or p.orig_dst != p.dst) else NO
    return MAYBE


SET_NO_EFFECT = {"--update-counters", "--update-subcounters"}


def _set(c: Cond, p: Packet, env: Env):
    if c.option in SET_NO_EFFECT:
        return YES
    if c.option != "--match-set" or len(c.values) < 2 or c.values[0] not in env.sets:
        return MAYBE
    return set_test(p.src if c.values[1].split(",")[0] == "src" else p.dst, env.sets[c.values[0]])


def _iprange(c: Cond, p: Packet, env: Env):
    if c.option not in ("--src-range", "--dst-range") or not c.values:
        return MAYBE
    return addr_test(p.src if c.option == "--src-range" else p.dst, c.values[0])


def _mark(c: Cond, p: Packet, env: Env) -> int:
    return _mark_is(c, p.mark)


def _connmark(c: Cond, p: Packet, env: Env) -> int:
    if p.ctstate == "UNTRACKED" or p.before_ct:
        return NO  # no connection, no connection mark: the match fails
    return _mark_is(c, p.ctmark)


def _mark_is(c: Cond, mark: int | None) -> int:
    if c.option != "--mark" or not c.values or mark is None:
        return MAYBE
    value, _, mask = c.values[0].partition("/")
    try:
        v, msk = int(value, 0), int(mask, 0) if mask else 0xFFFFFFFF
    except ValueError:
        return MAYBE
    return YES if (mark & msk) == v else NO


def _tcpmss(c: Cond, p: Packet, env: Env) -> int:
    """A SYN (or SYN-ACK) carries an MSS option; other segments carry none and never match."""
    if c.option != "--mss" or not c.values:
        return MAYBE
    if p.proto != "tcp" or "SYN" not in p.tcp_flags:
        return NO
    if p.mss is None:
        return MAYBE
    return port_in(p.mss, c.values[0])


def _pkttype(c: Cond, p: Packet, env: Env) -> int:
    return YES if c.values and c.values[0].lower() == "unicast" else NO


_MODULES = {
    "multiport": _multiport,
    "addrtype": _addrtype,
    "conntrack": _conntrack,
    "state": _conntrack,
    "set": _set,
    "iprange": _iprange,
    "mark": _mark,
    "connmark": _connmark,
    "tcpmss": _tcpmss,
    "pkttype": _pkttype,
}


def rule_match(rule: Rule, p: Packet, env: Env) -> tuple[int, str | Sources]:
    """YES/NO/MAYBE for the whole rule, and for MAYBE the condition that could not be decided;
    or SPLIT and the part of the packet's client class the rule's source tests let through."""
    result, why, inside = YES, "", None
    for c in rule.conds:
        r = cond_match(c, p, env)
        if type(r) is Sources:  # the class is split: keep the part the rule matches
            part = client_of(p) - r if c.negated else r
            inside = part if inside is None else inside & part
            if not inside:
                return NO, ""
            continue
        if c.negated and r != MAYBE:
            r = YES if r == NO else NO
        if r == NO:
            return NO, ""
        if r == MAYBE and result == YES:
            result, why = MAYBE, _describe(c)
    if inside is not None and inside != client_of(p):
        return SPLIT, inside
    return result, why


def _describe(c: Cond) -> str:
    neg = "! " if c.negated else ""
    mod = f"-m {c.module} " if c.module else ""
    if c.option == "?unparsed":
        return f"the rule could not be parsed ({c.values[0]})"
    if c.option == NFT:
        text = c.values[0] if c.values else "?"
        what = next((d for k, d in NFT_DEPENDS.items() if text.startswith(k)), "")
        return f"nft `{text}` depends on {what}" if what else f"nft `{text}` is not modelled"
    if c.module in UNDECIDABLE:
        what = DEPENDS.get(c.module, "traffic the exporter cannot model")
        return f"{mod}{neg}{c.option} depends on {what}"
    return f"{mod}{neg}{c.option} {' '.join(c.values)}".strip()
