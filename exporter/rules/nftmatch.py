"""One nft `match` expression as alternatives of rule-model conditions: its left-hand side
classified (meta, payload, ct, fib, tcp option, masked), its right-hand side resolved (a
literal, an anonymous set or a named set of the table), then translated by nftconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from exporter.rules.model import Cond
from exporter.rules.nftconds import KINDS, networks, unknown
from exporter.rules.nftprint import match_text

PORT_PROTOS = ("tcp", "udp", "sctp", "udplite", "dccp")
FAMILY = {"ip": "ipv4", "ip6": "ipv6"}
NFPROTO = {"ipv4": "ipv4", "ipv6": "ipv6", "ip": "ipv4", "ip6": "ipv6", 2: "ipv4", 10: "ipv6"}
ETHERTYPE = {"ip": "ipv4", "ip6": "ipv6", 2048: "ipv4", 34525: "ipv6"}
# An anonymous set of addresses of more prefixes than this is one lookup, as a named set is;
# a smaller one is one alternative per prefix. Beyond MAX_SET_ELEMENTS the match is unknown.
ANON_INLINE = 16
MAX_SET_ELEMENTS = 1 << 16  # ipset's default maxelem; nft's own sets are rarely near it


class TableSets(dict):
    """A table's named sets and maps (name → elements), and the table's label ("ip filter")
    that names its sets of addresses for the matcher (`set_name`). The large anonymous sets of
    addresses its rules hold are collected as they are translated (`anonymous`)."""

    def __init__(self, label: str, items: Mapping[str, list]) -> None:
        super().__init__(items)
        self.label = label
        self.anonymous: dict[str, tuple[str, ...]] = {}  # matcher name → prefixes

    def add_anonymous(self, members: list[str]) -> str:
        """The matcher's name for an anonymous set: from its contents, so the same set in two
        rules (or two reads) is one name; braces keep it apart from every named set's."""
        digest = hashlib.blake2b(" ".join(members).encode(), digest_size=8).hexdigest()
        name = set_name(self.label, f"{{anonymous {digest}}}")
        self.anonymous[name] = tuple(members)
        return name


def set_name(label: str, name: str) -> str:
    """How the matcher's address sets (path.matching.Env.sets) name an nft named set."""
    return f"nft:{label}/{name}"


def match_options(m, family: str, sets: Mapping[str, list]) -> list[tuple[Cond, ...]]:
    """The alternatives (each a tuple of conditions) one `match` expression stands for."""
    if not isinstance(m, dict):
        return [(unknown(str(m)),)]
    op, left, right = m.get("op", "=="), m.get("left"), m.get("right")
    kind, arg, base = classify(left, family)
    if kind == "never":
        return []
    if kind == "addr" and _set_size(right) > MAX_SET_ELEMENTS:
        text = f"an anonymous set of {_set_size(right)} elements (more than {MAX_SET_ELEMENTS})"
        return [(*base, unknown(text))]
    named = _address_set(kind, op, right, sets) or _anonymous_set(kind, op, right, sets)
    if named is not None:  # `ip saddr @allowed`: one lookup, however many elements
        where = "src" if arg == "-s" else "dst"
        return [(*base, Cond("--match-set", (named, where), op == "!=", "set"))]
    values = _elements(right, sets)
    handler = KINDS.get(kind)
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


def _address_set(kind: str, op: str, right, sets: Mapping[str, list]) -> str | None:
    """The matcher's name of a named set of addresses an address match looks up, else None."""
    label = getattr(sets, "label", None)
    if kind != "addr" or op not in ("==", "!=") or label is None:
        return None
    if not (isinstance(right, str) and right.startswith("@")) or right[1:] not in sets:
        return None
    return set_name(label, right[1:]) if address_elements(sets[right[1:]]) is not None else None


def _set_size(right) -> int:
    items = right.get("set") if isinstance(right, dict) else None
    return len(items) if isinstance(items, list) else 0


def _anonymous_set(kind: str, op: str, right, sets: Mapping[str, list]) -> str | None:
    """`ip saddr { 1,000 prefixes }` as one lookup (the kernel's is one too), registered with
    the table's sets; None for a small set, one not of addresses, or no table to register in."""
    if kind != "addr" or op not in ("==", "!=") or not isinstance(sets, TableSets):
        return None
    if _set_size(right) == 0:
        return None
    members = address_elements(right["set"])
    if members is None or len(members) <= ANON_INLINE:
        return None
    return sets.add_anonymous(members)


def address_elements(elems: list) -> list[str] | None:
    """A named set's elements as prefixes (ranges summarised); None when it is not a set of
    addresses (a map, a set of ports or of concatenations)."""
    out: list[str] = []
    for e in elems:
        got = networks(_unwrap(e))
        if got is None:
            return None
        out += got
    return out


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
