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

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from exporter.rules.model import Cond
from exporter.rules.nftprint import match_text, stmt_text
from exporter.rules.normalize import norm_proto

UNKNOWN = "?nft"  # an option the matcher cannot decide; a target the walker cannot follow
CHAIN_PREFIX = "nft:"  # regular chains are keyed apart from built-in names and iptables targets
MAX_ALTERNATIVES = 256
TH_PROTOS = ("tcp", "udp", "sctp")
PORT_PROTOS = ("tcp", "udp", "sctp", "udplite", "dccp")
FAMILY = {"ip": "ipv4", "ip6": "ipv6"}
NFPROTO = {"ipv4": "ipv4", "ipv6": "ipv6", "ip": "ipv4", "ip6": "ipv6", 2: "ipv4", 10: "ipv6"}
ETHERTYPE = {"ip": "ipv4", "ip6": "ipv6", 2048: "ipv4", 34525: "ipv6"}
VERDICT = {"accept": "ACCEPT", "drop": "DROP", "reject": "REJECT", "return": "RETURN",
           "continue": "", "queue": "NFQUEUE"}  # fmt: skip
NAT = {"masquerade": "MASQUERADE", "snat": "SNAT", "redirect": "REDIRECT", "dnat": "DNAT"}
SIDE_EFFECTS = {"counter", "log", "set", "map", "dup", "last", "secmark", "objref"}
MARK_OPS = {"|": "or", "&": "and", "^": "xor"}
RATE = {"limit": "limit", "quota": "quota", "ct count": "connlimit"}
TCP_FLAGS = {"fin", "syn", "rst", "psh", "ack", "urg", "ecn", "cwr"}


@dataclass(frozen=True, slots=True)
class Alt:
    conds: tuple[Cond, ...]
    target: str = ""
    target_opts: tuple[tuple[str, tuple[str, ...]], ...] = ()
    goto: bool = False


def unknown(text: str) -> Cond:
    return Cond(UNKNOWN, (text,))


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
            step = _mangle(val)
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


def _mangle(val: dict) -> tuple | None:
    """A `... set ...` statement as an iptables target: (target, options), (UNKNOWN, ...) for
    one that rewrites what the walker cannot follow, None for one the packet does not carry."""
    key, value = val.get("key"), val.get("value")
    which = _mark_key(key)
    if which is not None:
        return _mark_set(which, value)
    if isinstance(key, dict) and isinstance(key.get("tcp option"), dict):
        opt = key["tcp option"]
        if (opt.get("name"), opt.get("field")) != ("maxseg", "size"):
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return ("TCPMSS", (("--set-mss", (str(value),)),))
        return ("TCPMSS", (("--clamp-mss-to-pmtu", ()),))
    if isinstance(key, dict) and "payload" in key:
        return (UNKNOWN, (), False)  # stateless rewriting of addresses or ports
    return None  # priority, dscp...: nothing the modelled packet carries


def _mark_key(x) -> str | None:
    """ "meta" for `meta mark`, "ct" for `ct mark`, None for anything else."""
    if isinstance(x, dict) and len(x) == 1:
        ((k, v),) = x.items()
        if k in ("meta", "ct") and isinstance(v, dict) and v.get("key") == "mark":
            return k
    return None


def _mark_set(which: str, value) -> tuple:
    """`meta mark set ...` → MARK, `ct mark set ...` → CONNMARK, as iptables-save prints them:
    a constant or an or/and/xor of the same mark is --set-xmark value/mask; the other mark
    copied is CONNMARK --save-mark (ct ← meta) or --restore-mark (meta ← ct)."""
    target = "MARK" if which == "meta" else "CONNMARK"
    spec = "?"  # anything else: the walker makes the mark unknown
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        spec = f"0x{value:x}/0xffffffff"
    elif isinstance(value, dict) and len(value) == 1:
        ((op, args),) = value.items()
        if op in MARK_OPS and isinstance(args, list) and len(args) == 2:
            inner, n = args
            if _mark_key(inner) == which and isinstance(n, int) and not isinstance(n, bool):
                v, m = {"|": (n, n), "&": (0, ~n & 0xFFFFFFFF), "^": (n, 0)}[op]
                spec = f"0x{v:x}/0x{m:x}"
        elif _mark_key(value) not in (None, which):
            copy = "--restore-mark" if which == "meta" else "--save-mark"
            masks = (("--nfmask", ("0xffffffff",)), ("--ctmask", ("0xffffffff",)))
            return ("CONNMARK", ((copy, ()), *masks))
    return (target, (("--set-xmark", (spec,)),))


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


# --- matches ---------------------------------------------------------------------------------


def match_options(m, family: str, sets: Mapping[str, list]) -> list[tuple[Cond, ...]]:
    """The alternatives (each a tuple of conditions) one `match` expression stands for."""
    if not isinstance(m, dict):
        return [(unknown(str(m)),)]
    op, left, right = m.get("op", "=="), m.get("left"), m.get("right")
    kind, arg, base = classify(left, family)
    if kind == "never":
        return []
    values = _elements(right, sets)
    handler = _KINDS.get(kind)
    out = handler(op, arg, values, family) if handler and values is not None else None
    if out is None:
        return [(*base, unknown(match_text(m)))]
    return [(*base, *o) for o in out]


def classify(left, family: str) -> tuple[str, object, tuple[Cond, ...]]:
    """(kind, argument, implied conditions) of a match's left-hand side; kind "never" when it
    cannot apply to this family, "?" when not modelled."""
    if not isinstance(left, dict) or len(left) != 1:
        return "?", None, ()
    ((key, val),) = left.items()
    if key == "&":
        return _classify_masked(val, family)
    val = val if isinstance(val, dict) else {}
    if key == "meta":
        return _classify_meta(val.get("key"))
    if key == "payload":
        return _classify_payload(val.get("protocol"), val.get("field"), family)
    if key == "ct":
        kinds = {"state": "ctstate", "status": "ctstatus", "mark": "ctmark"}
        kind = kinds.get(val.get("key"))
        return (kind, None, ()) if kind else ("?", None, ())
    if key == "tcp option" and (val.get("name"), val.get("field")) == ("maxseg", "size"):
        return "mss", None, (Cond("-p", ("tcp",)),)
    if key == "fib" and val.get("result") == "type":
        flags = val.get("flags") or []
        if flags in (["daddr"], ["saddr"]):
            return "addrtype", "--dst-type" if flags == ["daddr"] else "--src-type", ()
    return "?", None, ()


def _classify_masked(val, family: str):
    """`meta mark & 0xff` and `tcp flags & (syn | ack)`."""
    if isinstance(val, list) and len(val) == 2:
        inner = classify(val[0], family)
        if inner[0] in ("mark", "ctmark") and isinstance(val[1], int) and val[1] is not True:
            return inner[0], val[1], ()
        if inner[0] == "tcpflags" and isinstance(val[1], str | list):
            return "tcpflags", val[1], inner[2]
    return "?", None, ()


def _classify_meta(key):
    simple = {"iifname": "-i", "iif": "-i", "oifname": "-o", "oif": "-o"}
    if key in simple:
        return "iface", simple[key], ()
    if key == "l4proto":
        return "proto", None, ()
    if key in ("nfproto", "protocol"):
        return "family", NFPROTO if key == "nfproto" else ETHERTYPE, ()
    if key == "mark":
        return "mark", None, ()
    if key == "pkttype":
        return "pkttype", None, ()
    return "?", None, ()


def _classify_payload(proto, field, family: str):
    if proto in FAMILY:
        if FAMILY[proto] != family:
            return "never", None, ()
        if field in ("saddr", "daddr"):
            return "addr", "-s" if field == "saddr" else "-d", ()
        if field in ("protocol", "nexthdr"):
            return "proto", None, ()
        return "?", None, ()
    if proto in PORT_PROTOS or proto == "th":
        base = () if proto == "th" else (Cond("-p", (proto,)),)
        if field in ("dport", "sport"):
            return "port", (f"--{field}", proto), base
        if proto == "tcp" and field == "flags":
            return "tcpflags", None, base
        return "?", None, base
    if proto in ("icmp", "icmpv6"):
        return "?", None, (Cond("-p", ("icmp" if proto == "icmp" else "ipv6-icmp",)),)
    return "?", None, ()


def _elements(right, sets: Mapping[str, list]) -> list | None:
    """The values a right-hand side stands for; None when it cannot be resolved."""
    if isinstance(right, str) and right.startswith("@"):
        elems = sets.get(right[1:])
        return None if elems is None else [_unwrap(e) for e in elems]
    if isinstance(right, dict) and "set" in right:
        items = right["set"]
        return [_unwrap(e) for e in (items if isinstance(items, list) else [items])]
    return [_unwrap(right)]


def _unwrap(e):
    while isinstance(e, dict) and isinstance(e.get("elem"), dict):
        e = e["elem"].get("val")
    return e


def _positive_or_all_negated(op: str, conds: list[Cond]) -> list[tuple[Cond, ...]] | None:
    """`x == {a, b}` → one alternative per element; `x != {a, b}` → all negated, together."""
    if op == "==":
        return [(c,) for c in conds]
    if op == "!=":
        return [tuple(Cond(c.option, c.values, True, c.module) for c in conds)]
    return None


def _m_iface(op, option, values, family):
    names = []
    for v in values:
        if not isinstance(v, str):
            return None
        names.append(
            v[:-1] + "+" if v.endswith("*") and not v.endswith("\\*") else v.replace("\\", "")
        )
    return _positive_or_all_negated(op, [Cond(option, (n,)) for n in names])


def _m_proto(op, _arg, values, family):
    if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in values):
        return None
    return _positive_or_all_negated(op, [Cond("-p", (str(v),)) for v in values])


def _m_family(op, table, values, family):
    if op not in ("==", "!="):
        return None
    hit = any(table.get(v) == family for v in values if isinstance(v, str | int))
    return [()] if hit == (op == "==") else []


def _m_addr(op, option, values, family):
    nets: list[str] = []
    for v in values:
        got = _networks(v)
        if got is None:
            return None
        nets += got
    return _positive_or_all_negated(op, [Cond(option, (n,)) for n in nets])


def _networks(v) -> list[str] | None:
    try:
        if isinstance(v, str):
            return [str(ipaddress.ip_network(v, strict=False))]
        if isinstance(v, dict) and isinstance(v.get("prefix"), dict):
            p = v["prefix"]
            return [str(ipaddress.ip_network(f"{p.get('addr')}/{p.get('len')}", strict=False))]
        if isinstance(v, dict) and isinstance(v.get("range"), list) and len(v["range"]) == 2:
            lo, hi = (ipaddress.ip_address(x) for x in v["range"])
            return [str(n) for n in ipaddress.summarize_address_range(lo, hi)]
    except (ValueError, TypeError):
        return None
    return None


def _m_port(op, arg, values, family):
    option, proto = arg
    spec = _port_spec(op, values)
    if spec is None:
        return None
    neg = op == "!="
    protos = TH_PROTOS if proto == "th" else (proto,)
    return [
        ((Cond("-p", (p,)),) if proto == "th" else ()) + (Cond(option, (spec,), neg, p),)
        for p in protos
    ]


def _port_spec(op, values) -> str | None:
    parts = []
    for v in values:
        if isinstance(v, int) and not isinstance(v, bool):
            parts.append(str(v))
        elif isinstance(v, dict) and isinstance(v.get("range"), list) and len(v["range"]) == 2:
            lo, hi = v["range"]
            if not (isinstance(lo, int) and isinstance(hi, int)):
                return None
            parts.append(f"{lo}:{hi}")
        else:
            return None
    if op in ("==", "!=", "in"):
        return ",".join(parts)
    if len(parts) != 1 or not parts[0].isdigit():
        return None
    n = int(parts[0])
    return {"<": f"0:{n - 1}", "<=": f"0:{n}", ">": f"{n + 1}:65535", ">=": f"{n}:65535"}.get(op)


def _flag_words(values) -> list[str] | None:
    words = []
    for v in values:
        items = v if isinstance(v, list) else [v]
        if not all(isinstance(x, str) for x in items):
            return None
        words += items
    return words


def _m_ctstate(op, _arg, values, family, option="--ctstate"):
    words = _flag_words(values)
    if words is None or op not in ("==", "!=", "in"):
        return None
    return [(Cond(option, (",".join(w.upper() for w in words),), op == "!=", "conntrack"),)]


def _m_ctstatus(op, arg, values, family):
    return _m_ctstate(op, arg, values, family, "--ctstatus")


def _m_addrtype(op, option, values, family):
    words = _flag_words(values)
    if words is None or op not in ("==", "!="):
        return None
    return [(Cond(option, (",".join(w.upper() for w in words),), op == "!=", "addrtype"),)]


def _m_mark(op, mask, values, family, module="mark"):
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return None
    suffix = f"/0x{mask:x}" if isinstance(mask, int) else ""
    return _positive_or_all_negated(
        op, [Cond("--mark", (f"0x{v:x}{suffix}",), False, module) for v in values]
    )


def _m_ctmark(op, mask, values, family):
    return _m_mark(op, mask, values, family, "connmark")


def _m_mss(op, _arg, values, family):
    spec = _port_spec(op, values)
    return None if spec is None else [(Cond("--mss", (spec,), op == "!=", "tcpmss"),)]


def _m_pkttype(op, _arg, values, family):
    if not all(isinstance(v, str) for v in values):
        return None
    return _positive_or_all_negated(
        op, [Cond("--pkt-type", (v,), False, "pkttype") for v in values]
    )


def _m_tcpflags(op, mask, values, family):
    words = _flag_words(values)
    mask_words = _flag_words([mask]) if mask is not None else None
    if words is None or not set(words) <= TCP_FLAGS:
        return None
    if mask is None and op == "in" and len(words) == 1:
        mask_words = words  # `tcp flags syn`: that flag is set
    elif mask is None and op in ("==", "!="):
        mask_words = sorted(TCP_FLAGS)
    if mask_words is None or not set(mask_words) <= TCP_FLAGS or op not in ("==", "!=", "in"):
        return None
    m = ",".join(w.upper() for w in mask_words if w not in ("ecn", "cwr"))
    c = ",".join(w.upper() for w in words if w not in ("ecn", "cwr")) or "NONE"
    return [(Cond("--tcp-flags", (m, c), op == "!=", "tcp"),)]


_KINDS = {
    "iface": _m_iface,
    "proto": _m_proto,
    "family": _m_family,
    "addr": _m_addr,
    "port": _m_port,
    "ctstate": _m_ctstate,
    "ctstatus": _m_ctstatus,
    "addrtype": _m_addrtype,
    "mark": _m_mark,
    "ctmark": _m_ctmark,
    "mss": _m_mss,
    "pkttype": _m_pkttype,
    "tcpflags": _m_tcpflags,
}
