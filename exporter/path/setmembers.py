"""Which addresses a set matches: ipsets (`ipset save`) and nftables named sets.

Sets of addresses (ipset hash:ip, hash:net, bitmap:ip, list:set of those; nft sets of type
ipv4_addr/ipv6_addr, interval sets included) become `Sources`. A set of another kind (ipset
hash:ip,port, hash:net,iface...) gets no entry, so a match on it stays undecidable (`unknown`,
naming the rule) rather than guessed.
"""

from __future__ import annotations

from collections.abc import Mapping

from exporter.path.sources import Sources
from exporter.rules.ipset import IpSet

ADDRESS_KINDS = ("hash:ip", "hash:net", "bitmap:ip")
MAX_LIST_DEPTH = 8


def addresses(sets: tuple[IpSet, ...]) -> dict[str, Sources]:
    """Set name → the addresses it matches, for the sets of addresses (see the module doc)."""
    by_name = {s.name: s for s in sets}
    out: dict[str, Sources] = {}
    for s in sets:
        got = _members(s, by_name, 0)
        if got is not None:
            out[s.name] = got
    return out


def _members(s: IpSet, by_name: Mapping[str, IpSet], depth: int) -> Sources | None:
    version = 6 if s.family == "ipv6" else 4
    if s.kind == "list:set":
        if depth >= MAX_LIST_DEPTH:
            return None
        parts = [by_name.get(m) for m in s.members]
        got = [_members(p, by_name, depth + 1) if p is not None else None for p in parts]
        if any(g is None for g in got):
            return None
        out = Sources(got[0].version if got else version)
        for g in got:
            out = out | g if g.version == out.version else out  # a list of both families
        return out
    if s.kind not in ADDRESS_KINDS:
        return None
    entries = [_entry(m, s.netmask) for m in s.members]
    exceptions = [_entry(m, s.netmask) for m in s.nomatch]
    if any(e is None for e in (*entries, *exceptions)):
        return None
    # The most specific entry decides (hash:net): an exception punches a hole only into
    # wider entries, and a narrower plain entry inside an exception matches again.
    out = Sources(version)
    for e, plain in sorted([(e, True) for e in entries] + [(e, False) for e in exceptions],
                           key=lambda x: x[0].size(), reverse=True):  # fmt: skip
        out = out | e if plain else out - e
    return out


def _entry(text: str, netmask: int | None) -> Sources | None:
    if netmask is not None and "/" not in text and "-" not in text:
        text = f"{text}/{netmask}"
    return Sources.parse(text)


def nft_addresses(rulesets) -> dict[str, Sources]:
    """The named sets of addresses of the native tables among `rulesets` (nftjson)."""
    out: dict[str, Sources] = {}
    for rs in rulesets:
        for name, members in getattr(rs, "sets", ()):
            if name in out or not members:
                continue
            version = 6 if ":" in members[0] else 4
            got = Sources.union_of(version, members)
            if got is not None:
                out[name] = got
    return out
