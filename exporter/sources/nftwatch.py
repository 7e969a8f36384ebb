"""Reuse the last read of native nftables tables while `nft monitor` reports no change to one.

`nft -j list chains` makes nft load its whole cache (0.1 s at 50,000 rules) even when nothing
changed. The service already runs `nft monitor ruleset`; every line it prints names the table
changed (`delete rule ip nat DOCKER handle 7`). A change to a table iptables-nft owns (ip/ip6
filter, nat, raw, mangle, security) cannot alter a native table, and `iptables-nft-save` reads
those anyway; any other line, or one this does not understand, invalidates the last read.
The cache is trusted only once the monitor has run for a moment (`SETTLE`), so a change made
before it subscribed cannot hide behind a read taken in that window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from exporter.rules.nftjson import IPTABLES_TABLES

OWNED = {(family, table) for family in ("ip", "ip6") for table in IPTABLES_TABLES}
OBJECTS = {"table", "chain", "rule", "set", "element", "map", "flowtable", "counter", "quota"}
SETTLE = 1.0  # seconds after the monitor starts before a read may be reused


def touches_native(line: str) -> bool:
    """Whether a `nft monitor` line may have changed a table other than iptables-nft's."""
    parts = line.split()
    if len(parts) < 4 or parts[1] not in OBJECTS:
        return True  # "flush ruleset", new syntax, anything unclear: assume it did
    return (parts[2], parts[3]) not in OWNED


class NativeWatch:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.generation = 0
        self.trusted_from: float | None = None  # None: no monitor running
        self.last = None  # (generation, iptables_nft, read started at, NativeRead)

    def started(self) -> None:
        with self.lock:
            self.generation += 1
            self.trusted_from = self.clock() + SETTLE

    def stopped(self) -> None:
        with self.lock:
            self.generation += 1
            self.trusted_from = None

    def line(self, text: str) -> None:
        if text.strip() and not text.startswith("#") and touches_native(text):
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
