"""Translate one native nftables rule (its `nft -j` expressions) into the rule model's terms.

A rule becomes a list of alternatives, each a (conditions, target) pair the matcher and the
walker already understand: `iifname != "br"` → `! -i br`, `tcp dport {80, 443}` → `-p tcp
--dport 80,443`, `fib daddr type local` → addrtype `--dst-type LOCAL`, `ct state ...` →
conntrack `--ctstate`. A positive set of interfaces or addresses, and a verdict map, become one
alternative per element (tried in order, as the kernel's single lookup would pick at most one).
Anything not translated becomes a `?nft` condition, which the matcher answers MAYBE for, so a
path through it is `unknown`, never `ok`. An empty list means the rule cannot match packets of
this family (an `ip6` match in an `inet` table read for IPv4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from exporter.rules.model import Cond
from exporter.rules.nftconds import UNKNOWN, unknown
from exporter.rules.nftmangle import mangle
from exporter.rules.nftmatch import FAMILY, match_options
from exporter.rules.nftprint import match_text, stmt_text
from exporter.rules.normalize import norm_proto

CHAIN_PREFIX = "nft:"  # regular chains are keyed apart from built-in names and iptables targets
MAX_ALTERNATIVES = 256
VERDICT = {"accept": "ACCEPT", "drop": "DROP", "reject": "REJECT", "return": "RETURN",
           "continue": "", "queue": "NFQUEUE"}  # fmt: skip
NAT = {"masquerade": "MASQUERADE", "snat": "SNAT", "redirect": "REDIRECT", "dnat": "DNAT"}
SIDE_EFFECTS = {"counter", "log", "set", "map", "dup", "last", "secmark", "objref"}
RATE = {"limit": "limit", "quota": "quota", "ct count": "connlimit"}


@dataclass(frozen=True, slots=True)
class Alt:
    conds: tuple[Cond, ...]
    target: str = ""
    target_opts: tuple[tuple[str, tuple[str, ...]], ...] = ()
    goto: bool = False


def translate(exprs, family: str, sets: Mapping[str, list]) -> list[Alt]:
    """All alternatives of one rule for `family` ("ipv4"/"ipv6"); `sets` maps a named set or
    map of the rule's table to its elements."""
    if not isinstance(exprs, list):
        return [Alt((unknown("rule without an expression list"),), UNKNOWN)]
    alts: list[tuple[Cond, ...]] = [()]
    action: tuple | None = None
    pre: list[tuple] = []  # MARK, CONNMARK, CT --notrack, TCPMSS: before the verdict
    vmap, opaque = None, False
    for e in exprs:
        key, val = _stmt(e)
        if key == "xt" and isinstance(val, dict) and val.get("type") == "match":
            text = f"xt match {val.get('name', '?')} (an iptables extension nft JSON hides)"
            alts = _cross(alts, [(unknown(text),)], e)
        elif key == "match":
            options = match_options(val, family, sets)
            if not options:
                return []
            alts = _cross(alts, options, val)
        elif key in SIDE_EFFECTS:
            continue
        elif key == "notrack":
            pre.append(("CT", (("--notrack", ()),)))
        elif key in RATE:
            alts = _cross(alts, [(Cond("--" + key, (stmt_text(e),), False, RATE[key]),)], val)
        elif key in VERDICT or key in ("jump", "goto"):
            action = _verdict(key, val)
        elif key in NAT:
            action = _nat(key, val, family)
            if action is None:
                return []
        elif key == "vmap" and isinstance(val, dict):
            vmap = val
        elif key == "mangle" and isinstance(val, dict):
            step = mangle(val)
            if step is not None and step[0] == UNKNOWN:
                action = step
            elif step is not None:
                pre.append(step)
        else:  # a statement not modelled: whatever it does, the walker must not guess
            opaque = True
            alts = _cross(alts, [(unknown(stmt_text(e)),)], e)
    if vmap is not None:
        return _vmap_alts(alts, vmap, family, sets)
    return _finish(alts, (UNKNOWN, (), False) if opaque else action or ("", (), False), pre)


def _finish(alts, action: tuple, pre: list[tuple]) -> list[Alt]:
    """`meta mark set N accept` is two steps for the walker: MARK, then the verdict. Each step
    re-reads the rule's matches, which a mark match would read changed."""
    target, topts, goto = action
    out = []
    for conds in alts:
        steps = [*pre, (target, topts)] if target or not pre else list(pre)
        for n, (t, opts) in enumerate(steps):
            if n and any(c.option in ("--mark", "--mss") for c in conds):
                conds = (*conds, unknown("a mark match in a rule that sets the mark"))
            out.append(Alt(conds, t, opts, goto if n == len(pre) else False))
    return out


def _stmt(e) -> tuple[str, object]:
    if isinstance(e, dict) and len(e) == 1:
        ((key, val),) = e.items()
        return key, val
    return "?", e


def _cross(alts, options, what) -> list[tuple[Cond, ...]]:
    if len(alts) * len(options) > MAX_ALTERNATIVES or sum(map(len, options)) > MAX_ALTERNATIVES:
        text = match_text(what) if isinstance(what, dict) and "op" in what else stmt_text(what)
        options = [(unknown(f"{text} (too many elements to expand)"),)]
    return [c for a in alts for o in options if _consistent(c := (*a, *o))]


def _consistent(conds: tuple[Cond, ...]) -> bool:
    """False for an alternative no packet matches: two different protocols (from expanding
    `meta l4proto { tcp, udp } th dport 53`, say)."""
    protos = {norm_proto(c.values[0]) for c in conds if c.option == "-p" and not c.negated}
    return len(protos) <= 1


def _verdict(key: str, val) -> tuple:
    if key in ("jump", "goto"):
        target = val.get("target") if isinstance(val, dict) else None
        if not isinstance(target, str):
            return (UNKNOWN, (), False)
        return (CHAIN_PREFIX + target, (), key == "goto")
    return (VERDICT[key], (), False)


def _nat(key: str, val, family: str) -> tuple | None:
    val = val if isinstance(val, dict) else {}
    fam = val.get("family")
    if fam is not None and FAMILY.get(fam) != family:
        return None  # `dnat ip to ...` never applies to IPv6 packets
    port = val.get("port")
    if key == "redirect":
        return ("REDIRECT", (("--to-ports", (str(port),)),) if isinstance(port, int) else (), False)
    if key != "dnat":
        return (NAT[key], (), False)
    addr = val.get("addr")
    if not isinstance(addr, str) or (port is not None and not isinstance(port, int)):
        return ("DNAT", (), False)  # a mapped or ranged destination: the walker reports unknown
    if port is None:
        return ("DNAT", (("--to-destination", (addr,)),), False)
    ep = f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
    return ("DNAT", (("--to-destination", (ep,)),), False)


def _vmap_alts(alts, vmap: dict, family: str, sets) -> list[Alt]:
    data = vmap.get("data")
    if isinstance(data, str) and data.startswith("@"):
        elems = sets.get(data[1:])
    elif isinstance(data, dict) and isinstance(data.get("set"), list):
        elems = data["set"]
    else:
        elems = None
    if elems is None:
        return [Alt((*a, unknown(f"verdict map {data!r} not readable")), UNKNOWN) for a in alts]
    out = []
    for pair in elems:
        if not (isinstance(pair, list) and len(pair) == 2):
            return [Alt((*a, unknown("verdict map element not understood")), UNKNOWN) for a in alts]
        key, verdict = _stmt(pair[1])
        target, topts, goto = (
            _verdict(key, verdict)
            if key in VERDICT or key in ("jump", "goto")
            else (UNKNOWN, (), 0)
        )
        m = {"op": "==", "left": vmap.get("key"), "right": pair[0]}
        for conds in _cross(alts, match_options(m, family, sets), m):
            out.append(Alt(conds, target, topts, bool(goto)))
    return out
