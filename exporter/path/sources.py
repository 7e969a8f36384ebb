"""Sets of client source addresses: the classes a ruleset tells apart (Iptables_Semantics/fffuu).

A `Sources` is a set of addresses of one family, kept as sorted, disjoint, non-adjacent closed
intervals of integers. The walker carries one as the modelled client's address: a source test
(`-s`, `-m iprange`, `-m set`, nft `ip saddr @set`) either holds for the whole set, for none of
it, or splits it in two, and each part is walked on. So the address space is partitioned into
exactly the classes the tests on a binding's path tell apart, however many addresses they name.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

YES, NO = 1, 0  # as in path.matching
MAX_BITS = {4: 32, 6: 128}
# Never a remote client's source: unspecified, "this network", loopback, link-local, multicast,
# reserved and broadcast; IPv4-mapped IPv6 (those arrive as IPv4).
NOT_CLIENTS = {
    4: ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4"),
    6: ("::/127", "::ffff:0:0/96", "fe80::/10", "ff00::/8"),
}


class Sources:
    """An immutable set of addresses of one IP version; hashable, compared by value."""

    __slots__ = ("_hash", "_size", "spans", "version")

    def __init__(self, version: int, spans: Iterable[tuple[int, int]] = ()) -> None:
        self.version = version
        self.spans = _normal(spans)
        self._hash = hash((version, self.spans))
        self._size: int | None = None

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def everything(cls, version: int) -> Sources:
        return cls(version, ((0, (1 << MAX_BITS[version]) - 1),))

    @classmethod
    def parse(cls, text: str) -> Sources | None:
        """`192.0.2.0/24`, `192.0.2.7`, `192.0.2.1-192.0.2.9` (iprange, ipset); None if not one."""
        return _parse(text.strip())

    @classmethod
    def union_of(cls, version: int, texts: Iterable[str]) -> Sources | None:
        spans: list[tuple[int, int]] = []
        for t in texts:
            s = cls.parse(t)
            if s is None or s.version != version:
                return None
            spans += s.spans
        return cls(version, spans)

    # --- set algebra -----------------------------------------------------------------------

    def __or__(self, other: Sources) -> Sources:
        return _union(self, other)

    def __and__(self, other: Sources) -> Sources:
        return _intersect(self, other)

    def __sub__(self, other: Sources) -> Sources:
        return _minus(self, other)

    def __bool__(self) -> bool:
        return bool(self.spans)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sources):
            return NotImplemented
        return self.version == other.version and self.spans == other.spans

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"Sources({', '.join(self.cidrs(8))}{', …' if len(self.cidrs()) > 8 else ''})"

    def contains(self, addr: str) -> bool | None:
        """Whether one address (text) is in the set; None when it is not an address."""
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return None
        if ip.version != self.version:
            return False
        n = int(ip)
        return any(lo <= n <= hi for lo, hi in self.spans)

    def size(self) -> int:
        if self._size is None:
            self._size = sum(hi - lo + 1 for lo, hi in self.spans)
        return self._size

    def first(self) -> str:
        """A representative address (the lowest)."""
        return str(ipaddress.ip_address(self.spans[0][0])) if self.spans else ""

    def cidrs(self, limit: int | None = None) -> list[str]:
        """The set as the fewest CIDR prefixes, in address order (at most `limit` of them)."""
        out: list[str] = []
        for lo, hi in self.spans:
            first, last = _ip(self.version, lo), _ip(self.version, hi)
            for net in ipaddress.summarize_address_range(first, last):
                out.append(str(net))
                if limit is not None and len(out) >= limit:
                    return out
        return out


def _ip(version: int, n: int):
    return ipaddress.IPv4Address(n) if version == 4 else ipaddress.IPv6Address(n)


def _normal(spans: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[list[int]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


@lru_cache(maxsize=65536)
def _parse(text: str) -> Sources | None:
    try:
        if "-" in text:
            a, b = (ipaddress.ip_address(x.strip()) for x in text.split("-", 1))
            if a.version != b.version or int(a) > int(b):
                return None
            return Sources(a.version, ((int(a), int(b)),))
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    return Sources(net.version, ((int(net.network_address), int(net.broadcast_address)),))


@lru_cache(maxsize=65536)
def _union(a: Sources, b: Sources) -> Sources:
    if not b.spans or a.spans == b.spans:
        return a
    return b if not a.spans else Sources(a.version, a.spans + b.spans)


@lru_cache(maxsize=65536)
def _intersect(a: Sources, b: Sources) -> Sources:
    if a.version != b.version:
        return Sources(a.version)
    out, i, j = [], 0, 0
    while i < len(a.spans) and j < len(b.spans):
        lo = max(a.spans[i][0], b.spans[j][0])
        hi = min(a.spans[i][1], b.spans[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a.spans[i][1] < b.spans[j][1]:
            i += 1
        else:
            j += 1
    return Sources(a.version, out)


@lru_cache(maxsize=65536)
def _minus(a: Sources, b: Sources) -> Sources:
    if a.version != b.version:
        return a
    out = []
    for lo, hi in a.spans:
        for blo, bhi in b.spans:
            if bhi < lo or blo > hi:
                continue
            if blo > lo:
                out.append((lo, blo - 1))
            lo = bhi + 1
            if lo > hi:
                break
        if lo <= hi:
            out.append((lo, hi))
    return Sources(a.version, out)


@lru_cache(maxsize=65536)
def split(s: Sources, test: Sources) -> int | Sources:
    """YES when every address of `s` passes `test`, NO when none does, else the part that does."""
    inside = s & test
    if not inside:
        return NO
    return YES if inside == s else inside


@lru_cache(maxsize=65536)
def split_text(s: Sources, text: str) -> int | Sources | None:
    """`split` against a prefix or range given as text; None when the text is not one."""
    t = Sources.parse(text)
    if t is None:
        return None
    if t.version != s.version:
        return NO
    return split(s, t)


def client_space(family: str, exclude: Iterable[str] = ()) -> Sources:
    """Every address a remote client of `family` ("ipv4"/"ipv6") can have: all of them less the
    special ones and `exclude` (the host's own addresses, Docker's subnets: local, not remote)."""
    version = 6 if family == "ipv6" else 4
    holes = [t for t in (*NOT_CLIENTS[version], *exclude) if (s := Sources.parse(t)) is not None
             and s.version == version]  # fmt: skip
    return Sources.everything(version) - Sources.union_of(version, holes)


@lru_cache(maxsize=4096)
def describe(allowed: Sources, space: Sources, limit: int = 8) -> str:
    """`allowed` (a part of `space`) for a human: `all`, `none`, a list of prefixes, or `all
    except` a list, whichever is shorter. The addresses outside `space` fill the gaps, so
    10.0.0.0/8 stays one prefix although Docker's 10.0.1.0/24 is not in the space."""
    if not allowed:
        return "none"
    if allowed == space:
        return "all"
    denied = space - allowed
    shown = _listing(allowed, space)
    other = _listing(denied, space)
    if len(other) < len(shown):
        return "all except " + _bounded(other, limit)
    return _bounded(shown, limit)


def prefixes(part: Sources, space: Sources) -> list[str]:
    """`part` as CIDR prefixes, the addresses outside `space` filling the gaps."""
    return _listing(part, space)


def _listing(part: Sources, space: Sources) -> list[str]:
    outside = Sources.everything(space.version) - space
    filled = part | outside
    return [c for c in filled.cidrs() if part & Sources.parse(c)]


def _bounded(items: list[str], limit: int) -> str:
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f" and {len(items) - limit} more"
