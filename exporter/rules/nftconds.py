"""The values of one nft match as rule-model conditions, one function per kind of left-hand
side (interface, protocol, address, port, conntrack state, mark, ...), in `KINDS`. A function
returns the alternatives (each a tuple of conditions) or None when it cannot translate them;
the caller then makes the match `unknown(...)`, which the matcher answers MAYBE for.
"""

from __future__ import annotations

import ipaddress

from exporter.rules.model import Cond

UNKNOWN = "?nft"  # an option the matcher cannot decide; a target the walker cannot follow
TH_PROTOS = ("tcp", "udp", "sctp")
TCP_FLAGS = {"fin", "syn", "rst", "psh", "ack", "urg", "ecn", "cwr"}


def unknown(text: str) -> Cond:
    return Cond(UNKNOWN, (text,))


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
        got = networks(v)
        if got is None:
            return None
        nets += got
    return _positive_or_all_negated(op, [Cond(option, (n,)) for n in nets])


def networks(v) -> list[str] | None:
    """One address element (an address, a prefix, a range) as prefixes; None if not one."""
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


KINDS = {
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
