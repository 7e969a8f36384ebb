"""What one refresh leaves for the next: the one owner of every refresh-time cache.

The Scheduler owns one RefreshState and hands it to each refresh (they run one at a time);
`check` makes a fresh one, so nothing is reused. It keeps:
- the last `*-save` text and Ruleset per family and backend: a byte-identical text gives back the
  same Ruleset, a changed one reuses its unchanged chains (sources.iptables.parse_reusing);
- the last Analysis with what each binding's walks read (path.reuse.Trace): served again while
  its inputs are all the same (compared whole); when only the rules of a few chains changed,
  the bindings whose walks read none of the changed rules keep their verdicts (path.reuse);
- the last read of native nftables tables, reused while the nf_tables change feed reports no
  change to one (`native`), and which iptables-nft chains changed since each family's rules were
  read (`chains`), both fed by the service's watcher through the Scheduler;
- the last Docker state decoded with the API answers it came from: answers equal to those give
  back the same DockerState (no decode, and the analysis compares it by identity);
- the last read of the host's addresses and network state (links, routes, policy rules), reused
  while the rtnetlink feed runs and has told of nothing since (`net`, sources.netwatch; fed by
  the service's NetEvents); the forwarding switches are read every time all the same;
- the last iptables facts (the expensive host facts: package databases, the `-C` self-test),
  read again only every `host_interval` seconds; boot and dockerd start times are read on every
  refresh (serve.refresh).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from exporter.docker.decode import DaemonHints, decode_state
from exporter.docker.model import DockerState
from exporter.path.analysis import Analysis
from exporter.path.reuse import Trace, again, traced
from exporter.rules.family import FamilyRules
from exporter.sources.netwatch import NetWatch
from exporter.sources.nftwatch import ChainWatch, NativeWatch


class RefreshState:
    def __init__(self, host_interval: float = 0.0, clock: Callable[[], float] = time.time) -> None:
        self.saves: dict[str, dict] = {"ipv4": {}, "ipv6": {}}  # family → backend → (text, rs)
        self.last: Trace | None = None
        self.native = NativeWatch()
        self.chains = ChainWatch()
        # family → table → chains changed since the text in `saves` was taken, not read again
        self.stale: dict[str, dict[str, set[str]]] = {"ipv4": {}, "ipv6": {}}
        self.host_interval, self.clock = host_interval, clock
        self.host = None  # the last IptablesFacts read (exporter.hostfacts)
        self.host_read_at: float | None = None
        self.decoded: tuple[tuple, DockerState] | None = None  # (API answers, their state)
        self.net = NetWatch()
        self.net_last: tuple | None = None  # (token, addresses, NetState) of the last read

    def net_kept(self, token: int | None):
        """(addresses, NetState) of the last read when the feed ran since with nothing to tell
        (`token`: net.token() taken before this refresh's reads), else None: read again."""
        last = self.net_last
        if token is None or last is None or last[0] != token:
            return None
        return last[1], last[2]

    def net_read(self, token: int | None, addrs, net) -> None:
        """After a read tagged `token`: kept for reuse when it read everything."""
        whole = token is not None and addrs is not None and not net.errors
        self.net_last = (token, addrs, net) if whole else None

    def decode(self, containers, networks, info, version, hints: DaemonHints) -> DockerState:
        """`decode_state`, the last state again when the answers equal the last ones (compared
        whole: ~0.5 ms for 1,000 containers, a decode ~8 ms). A DecodeError is not kept."""
        answers = (containers, networks, info, version, hints)
        last = self.decoded
        if last is not None and last[0] == answers:
            return last[1]
        self.decoded = None
        state = decode_state(*answers)
        self.decoded = (answers, state)
        return state

    def host_due(self) -> bool:
        """Whether the host facts are to be read again (always, the first time)."""
        at = self.host_read_at
        return at is None or self.clock() - at >= self.host_interval

    def host_read(self, host) -> None:
        self.host, self.host_read_at = host, self.clock()

    def changed_chains(self, family: str) -> dict[str, set[str]] | None:
        """The iptables-nft chains of `family` changed since its rules were last read (table →
        names, what the change feed reported plus what earlier refreshes left unread), or None
        when the next read must be a whole one."""
        taken = self.chains.take(family)
        if taken is None:
            return None
        stale = self.stale[family]
        for table, names in taken.items():
            stale.setdefault(table, set()).update(names)
        return stale

    def rules_read(self, family: str, whole: bool, ok: bool) -> None:
        """After a read of `family`: a whole one that worked leaves nothing stale; one that
        failed makes the next one whole."""
        if not ok:
            self.chains.read_failed(family)
        elif whole:
            self.stale[family] = {}

    def analysed_rules(self) -> dict[str, FamilyRules] | None:
        """The rules the last analysis read (None before the first)."""
        return self.last.inputs[1] if self.last is not None else None

    def analyse(self, state, rules, host_addrs, clients, timings=None, net=None) -> Analysis:
        """`analysis.analyse`: the last Analysis when every input is the same as last time, the
        bindings that read no changed rule kept when only rules changed (path.reuse)."""
        inputs = (state, rules, host_addrs, clients, net)
        last = self.last
        if last is not None and _same_inputs(last.inputs, inputs):
            return last.analysis
        got = again(last, *inputs[:4], timings, net) if last is not None else None
        self.last = got or traced(state, rules, host_addrs, clients, timings, net)
        return self.last.analysis


def _same_inputs(old: tuple, new: tuple) -> bool:
    (s0, r0, a0, c0, n0), (s1, r1, a1, c1, n1) = old, new
    if a0 != a1 or c0 != c1 or n0 != n1 or r0.keys() != r1.keys():
        return False
    for family, fr in r1.items():
        was = r0[family]
        same = len(was.rulesets) == len(fr.rulesets) and all(
            x is y for x, y in zip(was.rulesets, fr.rulesets, strict=True)
        )  # identity: the same object only comes back for an identical text
        if not same or (was.error, was.nft_error, was.forwarding, was.ipsets) != (
            fr.error, fr.nft_error, fr.forwarding, fr.ipsets
        ):  # fmt: skip
            return False
    return s0 == s1
