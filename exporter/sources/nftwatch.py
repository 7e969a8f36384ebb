"""What the nf_tables change feed (sources.watch.NftEvents) lets a refresh skip.

`NativeWatch`: `nft -j list chains` makes nft load its whole cache (0.1 s at 50,000 rules) even
when nothing changed. A change to a table iptables-nft owns (ip/ip6 filter, nat, raw, mangle,
security) cannot alter a native table, and `iptables-nft-save` reads those anyway; any other
change, or one not understood, invalidates the last read of the native tables.

`ChainWatch`: which chains of iptables-nft's tables changed since a family's rules were read.
`iptables-nft-save` dumps the whole ruleset and starts over whenever the ruleset changes during
the dump: at 50,000 rules and 10 changes a second it never finishes. A refresh that knows which
chains changed reads only those (`iptables-nft -t TABLE -S CHAIN`, milliseconds) and only when
the last analysis looked at them; anything else (a table or set changed, events lost, the feed
not running) asks for a whole read.

Both trust the feed only for reads that started after it subscribed (`started`); `SETTLE`
covers `nft monitor`, which subscribes some time after it is started.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from exporter.rules.nftevents import Change
from exporter.rules.nftjson import IPTABLES_TABLES

OWNED = {(family, table) for family in ("ip", "ip6") for table in IPTABLES_TABLES}
FAMILIES = {"ip": "ipv4", "ip6": "ipv6"}
SETTLE = 1.0  # seconds after `nft monitor` starts before a read may be reused


def touches_native(change: Change) -> bool:
    """Whether a change may have changed a table other than iptables-nft's."""
    return not change.kind or (change.family, change.table) not in OWNED


class NativeWatch:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.generation = 0
        self.trusted_from: float | None = None  # None: no monitor running
        self.last = None  # (generation, iptables_nft, read started at, NativeRead)

    def started(self, settle: float = SETTLE) -> None:
        with self.lock:
            self.generation += 1
            self.trusted_from = self.clock() + settle

    def stopped(self) -> None:
        with self.lock:
            self.generation += 1
            self.trusted_from = None

    def changed(self, change: Change) -> None:
        if touches_native(change):
            with self.lock:
                self.generation += 1

    def read(self, reader, timeout: float, iptables_nft: frozenset[str]):
        """`reader(timeout, iptables_nft)`, or the last result while nothing can have changed."""
        with self.lock:
            gen, since, last, now = self.generation, self.trusted_from, self.last, self.clock()
        if (
            last is not None
            and since is not None
            and last[0] == gen
            and last[1] == iptables_nft
            and last[2] >= since
            and not last[3].error
            and not last[3].warnings
        ):
            return last[3]
        native = reader(timeout, iptables_nft)
        with self.lock:
            self.last = (gen, iptables_nft, now, native)  # a change during the read bumped gen
        return native


class ChainWatch:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.trusted_from: float | None = None  # None: no feed running
        self.pending: dict[str, dict[str, set[str]]] = {}  # family → table → changed chains
        self.whole: set[str] = set()  # families whose next read must be a whole one

    def started(self, settle: float = 0.0) -> None:
        with self.lock:
            self.trusted_from = self.clock() + settle
            self.whole |= set(FAMILIES.values())

    def stopped(self) -> None:
        with self.lock:
            self.trusted_from = None

    def changed(self, change: Change) -> None:
        family = FAMILIES.get(change.family)
        if change.kind and (family is None or change.table not in IPTABLES_TABLES):
            return  # a native table: NativeWatch's
        with self.lock:
            if self.trusted_from is None:
                return  # no feed: every read is a whole one anyway
            if not change.kind:
                self.whole |= set(FAMILIES.values())
            elif change.kind in ("chain", "rule") and change.chain:
                self.pending.setdefault(family, {}).setdefault(change.table, set()).add(
                    change.chain
                )
            else:  # the table itself, or a set, map, ... of it
                self.whole.add(family)

    def take(self, family: str) -> dict[str, set[str]] | None:
        """The chains of `family` changed since the last take (table → names), or None when
        the next read must be a whole one. Changes reported from now on count for the next."""
        with self.lock:
            since = self.trusted_from
            pending = self.pending.pop(family, {})
            if since is None or self.clock() < since or family in self.whole:
                self.whole.discard(family)
                return None
            return pending

    def read_failed(self, family: str) -> None:
        """A read after `take` failed: the next one must be whole."""
        with self.lock:
            self.whole.add(family)
