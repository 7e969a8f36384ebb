"""Route lookups with each network parsed once: a binding's walk looks its container address up
in the host's routes, and thousands of bindings would otherwise parse every route's network
(ipaddress) again for each of them.

`RouteTable.lookup` answers as a scan of the routes would: the longest prefix of the table
holding the address, the lowest metric among equals, the first of equal ones; dead routes
skipped; a network `ip_network` refuses (host bits set, garbage) holds nothing; an address
`ip_address` refuses is in nothing. The prefix length ranked is the one written after the
"/" (128 without one), as route._prefixlen reads it.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from exporter.netstate import Route

MEMO_MAX = 65536  # (table, address) answers kept per table set; cleared past it
TABLES_KEPT = 4  # route tuples (NetState readings) whose tables are kept


def prefixlen(net: str) -> int:
    return int(net.rsplit("/", 1)[1]) if "/" in net else 128


@lru_cache(maxsize=16384)
def address(addr: str) -> tuple[int, int] | None:
    """(version, integer) of an address; None when `ip_address` refuses it."""
    try:
        a = ipaddress.ip_address(addr)
    except ValueError:
        return None
    return a.version, int(a)


@lru_cache(maxsize=4096)
def network(net: str) -> tuple[int, int, int] | None:
    """(version, network integer, netmask integer); None when strict `ip_network` refuses it."""
    try:
        n = ipaddress.ip_network(net)
    except ValueError:
        return None
    return n.version, int(n.network_address), int(n.netmask)


def inside(addr: str, net: str) -> bool:
    """`ip_address(addr) in ip_network(net)`, False when either is refused."""
    a, n = address(addr), network(net)
    return a is not None and n is not None and a[0] == n[0] and a[1] & n[2] == n[1]


class RouteTable:
    """The routes of every table of one reading, networks parsed, answers memoised."""

    def __init__(self, routes: tuple[Route, ...]) -> None:
        self.routes = routes
        self.entries = []  # (table, version, network, mask, rank, route) of the live routes
        for r in routes:
            n = network(r.dst)
            if r.dead or n is None:
                continue
            try:
                rank = (-prefixlen(r.dst), r.metric)
            except (ValueError, TypeError):
                rank = None  # a netmask after "/": route._prefixlen raises on it, so does lookup
            self.entries.append((r.table, *n, rank, r))
        self.memo: dict[tuple[str, str], Route | None] = {}

    def lookup(self, table: str, dst: str) -> Route | None:
        key = (table, dst)
        found = self.memo.get(key, _UNSEEN)
        if found is _UNSEEN:
            if len(self.memo) >= MEMO_MAX:
                self.memo = {}
            found = self.memo[key] = self._scan(table, dst)
        return found

    def _scan(self, table: str, dst: str) -> Route | None:
        a = address(dst)
        if a is None:
            return None
        version, value = a
        best = None
        for t, v, net, mask, rank, r in self.entries:
            if t != table or v != version or value & mask != net:
                continue
            if rank is None:
                rank = (-prefixlen(r.dst), r.metric)  # raises, as the scan it stands for
            if best is None or rank < best[0]:
                best = (rank, r)
        return best[1] if best else None


_UNSEEN = object()
_tables: dict[int, RouteTable] = {}  # id(routes) → its table; replaced, never changed in place


def table_of(routes: tuple[Route, ...]) -> RouteTable:
    """The RouteTable of `routes`, made once per routes tuple (the last few kept)."""
    global _tables
    t = _tables.get(id(routes))
    if t is not None and t.routes is routes:
        return t
    t = RouteTable(routes)
    _tables = dict(list(_tables.items())[1 - TABLES_KEPT :]) | {id(routes): t}
    return t
