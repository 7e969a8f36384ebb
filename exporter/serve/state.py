"""What one refresh leaves for the next: the one owner of every refresh-time cache.

The Scheduler owns one RefreshState and hands it to each refresh (they run one at a time);
`check` makes a fresh one, so nothing is reused. It keeps:
- the last `*-save` text and Ruleset per family and backend: a byte-identical text gives back the
  same Ruleset, a changed one reuses its unchanged chains (sources.iptables.parse_reusing);
- the last Analysis, served again while its inputs are all the same (compared whole);
- the last read of native nftables tables, reused while `nft monitor` reports no change to one
  (`native`, fed by the service's NftMonitor);
- the last iptables facts (the expensive host facts: package databases, the `-C` self-test),
  read again only every `host_interval` seconds; boot and dockerd start times are read on every
  refresh (serve.refresh).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from exporter.path.analysis import Analysis, analyse
from exporter.sources.nftwatch import NativeWatch


class RefreshState:
    def __init__(self, host_interval: float = 0.0, clock: Callable[[], float] = time.time) -> None:
        self.saves: dict[str, dict] = {"ipv4": {}, "ipv6": {}}  # family → backend → (text, rs)
        self.last: tuple | None = None  # (inputs, Analysis)
        self.native = NativeWatch()
        self.host_interval, self.clock = host_interval, clock
        self.host = None  # the last IptablesFacts read (exporter.hostfacts)
        self.host_read_at: float | None = None

    def host_due(self) -> bool:
        """Whether the host facts are to be read again (always, the first time)."""
        at = self.host_read_at
        return at is None or self.clock() - at >= self.host_interval

    def host_read(self, host) -> None:
        self.host, self.host_read_at = host, self.clock()

    def analyse(self, state, rules, host_addrs, clients, timings=None) -> Analysis:
        """`analysis.analyse`, or the last Analysis when every input is the same as last time."""
        inputs = (state, rules, host_addrs, clients)
        if self.last is not None and _same_inputs(self.last[0], inputs):
            return self.last[1]
        result = analyse(state, rules, host_addrs, clients, timings)
        self.last = (inputs, result)
        return result


def _same_inputs(old: tuple, new: tuple) -> bool:
    (s0, r0, a0, c0), (s1, r1, a1, c1) = old, new
    if a0 != a1 or c0 != c1 or r0.keys() != r1.keys():
        return False
    for family, fr in r1.items():
        was = r0[family]
        same = len(was.rulesets) == len(fr.rulesets) and all(
            x is y for x, y in zip(was.rulesets, fr.rulesets, strict=True)
        )  # identity: the same object only comes back for an identical text
        if not same or (was.error, was.nft_error, was.forwarding) != (
            fr.error, fr.nft_error, fr.forwarding
        ):  # fmt: skip
            return False
    return s0 == s1
