"""Keep the snapshot fresh: every interval, and soon after a Docker event, an nf_tables change
that can alter a verdict (serve.relevance) or a change of the host's links, addresses, routes,
policy rules or forwarding switches (sources.watch.NetEvents), debounced and within a CPU
budget (serve.pace).

Snapshots are computed in a worker thread and swapped atomically; scrapes only read `current`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from exporter.rules.nftevents import Change
from exporter.serve.pace import Pace
from exporter.serve.refresh import RefreshOptions, take_snapshot
from exporter.serve.relevance import relevant
from exporter.serve.snapshot import Snapshot, SourceStatus
from exporter.serve.state import RefreshState

log = logging.getLogger("docker_nat_exporter")


@dataclass
class Holder:
    """What the web side reads: the latest snapshot and cumulative error counts."""

    snapshot: Snapshot | None = None
    errors: dict[str, int] | None = None

    def __post_init__(self) -> None:
        self.errors = self.errors or {}


class Scheduler:
    """Runs the refreshes, one at a time, and is the nf_tables watcher's sink (sources.watch):
    it tells the RefreshState of every change and asks for a refresh only for a relevant one."""

    def __init__(
        self,
        opts: RefreshOptions,
        interval: float,
        debounce: float,
        host_interval: float,
        holder: Holder,
        snapshot_fn: Callable[[RefreshOptions], Snapshot] | None = None,
        cpu_budget: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`snapshot_fn(opts)` takes one snapshot (default: take_snapshot with this scheduler's
        RefreshState, the one owner of what a refresh reuses from the last). `cpu_budget`:
        the fraction of one core refreshes may use on average (serve.pace)."""
        self.opts, self.interval, self.debounce = opts, interval, debounce
        self.holder, self.state = holder, RefreshState(host_interval)
        self.snapshot_fn = snapshot_fn or partial(take_snapshot, state=self.state)
        self.clock, self.pace = clock, Pace(cpu_budget, clock())
        self.wake = asyncio.Event()
        self.asked_at: float | None = None  # the first event not yet answered by a refresh
        self.refreshing = False
        self.unjudged: list[Change] = []  # changes reported during a refresh

    def trigger(self, why: str) -> None:
        log.debug("refresh requested: %s", why)
        if self.asked_at is None:
            self.asked_at = self.clock()
        self.wake.set()

    # ---- the nf_tables watcher's sink
    def started(self, settle: float) -> None:
        self.state.native.started(settle)
        self.state.chains.started(settle)
        if self.holder.snapshot is not None:  # again, after a gap: changes may have been missed
            self.trigger("nf_tables change notifications started again")

    def stopped(self) -> None:
        self.state.native.stopped()
        self.state.chains.stopped()

    def changes(self, changes: list[Change]) -> None:
        for c in changes:
            self.state.native.changed(c)
            self.state.chains.changed(c)
        if self.refreshing:  # judged against what that refresh reads, once it is done
            self.unjudged += changes
        else:
            self._judge(changes)

    def _judge(self, changes: list[Change]) -> None:
        rules = self.state.analysed_rules()
        hit = next((c for c in changes if relevant(c, rules)), None)
        if hit is not None:
            self.trigger(f"nftables {hit.kind or 'ruleset'} changed: {hit.family} {hit.table} "
                         f"{hit.chain}".rstrip())  # fmt: skip

    # ---- the loop
    async def run(self) -> None:
        while True:
            started = self.clock()
            await self.refresh_once()
            await self._wait(started + self.interval)

    async def _wait(self, deadline: float) -> None:
        """Until the interval's refresh is due, or an asked-for one (serve.pace)."""
        while True:
            now = self.clock()
            due = deadline
            if self.asked_at is not None:
                due = self.pace.due(self.asked_at, self.debounce, deadline, now)
            if now >= due:
                return
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), due - now)

    async def refresh_once(self) -> Snapshot:
        self.asked_at, self.refreshing = None, True
        try:
            snap, cost = await asyncio.to_thread(self._take)
        except Exception as exc:  # a bug must not end the refresh loop nor leave a stale "ok"
            log.error("refresh failed: %s", _describe(exc))
            snap, cost = _failed(exc), 0.0
        finally:
            self.refreshing = False
        self.pace.spent(cost, self.clock())
        log.debug("refresh: %.3f s, %.3f s of CPU; %s", snap.duration_seconds, cost,
                  " ".join(f"{k}={v:.3f}" for k, v in snap.timings.items()))  # fmt: skip
        for src in snap.sources:
            if not src.up:
                self.holder.errors[src.name] = self.holder.errors.get(src.name, 0) + 1
                log.warning("source %s down: %s", src.name, src.error)
        for src in ("docker", "iptables", "ip6tables"):
            self.holder.errors.setdefault(src, 0)
        self.holder.snapshot = snap  # one reference assignment: the swap is atomic
        unjudged, self.unjudged = self.unjudged, []
        self._judge(unjudged)
        return snap

    def _take(self) -> tuple[Snapshot, float]:
        """A snapshot and what it cost: this thread's CPU time and its commands'."""
        thread, children = time.thread_time(), _children_cpu()
        snap = self.snapshot_fn(self.opts)
        return snap, time.thread_time() - thread + _children_cpu() - children


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def _describe(exc: Exception) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f" at {tb.tb_frame.f_code.co_filename.rsplit('/', 2)[-1]}:{tb.tb_lineno}" if tb else ""
    return f"{type(exc).__name__}: {str(exc)[:200]}{where}"


def _failed(exc: Exception) -> Snapshot:
    """What is served after an unexpected error: every source down, saying why."""
    why = f"refresh failed: {_describe(exc)}"
    sources = tuple(SourceStatus(name, False, why) for name in ("docker", "iptables", "ip6tables"))
    return Snapshot(taken_at=time.time(), duration_seconds=0.0, sources=sources)
