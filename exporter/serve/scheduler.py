"""Keep the snapshot fresh: every interval, and at once (debounced) on Docker events and, where
rules live in nf_tables, on ruleset changes reported by `nft monitor`.

Snapshots are computed in a worker thread and swapped atomically; scrapes only read `current`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from exporter.serve.refresh import RefreshOptions, take_snapshot
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
    def __init__(
        self,
        opts: RefreshOptions,
        interval: float,
        debounce: float,
        host_interval: float,
        holder: Holder,
        snapshot_fn: Callable[[RefreshOptions], Snapshot] | None = None,
    ) -> None:
        """`snapshot_fn(opts)` takes one snapshot (default: take_snapshot with this scheduler's
        RefreshState, the one owner of what a refresh reuses from the last)."""
        self.opts, self.interval, self.debounce = opts, interval, debounce
        self.holder, self.state = holder, RefreshState(host_interval)
        self.snapshot_fn = snapshot_fn or partial(take_snapshot, state=self.state)
        self.wake = asyncio.Event()

    def trigger(self, why: str) -> None:
        log.debug("refresh requested: %s", why)
        self.wake.set()

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            await self.refresh_once()
            elapsed = time.monotonic() - started
            try:
                await asyncio.wait_for(self.wake.wait(), max(0.0, self.interval - elapsed))
                await asyncio.sleep(self.debounce)  # let a burst of events settle
            except TimeoutError:
                pass
            self.wake.clear()

    async def refresh_once(self) -> Snapshot:
        try:
            snap = await asyncio.to_thread(self.snapshot_fn, self.opts)
        except Exception as exc:  # a bug must not end the refresh loop nor leave a stale "ok"
            log.error("refresh failed: %s", _describe(exc))
            snap = _failed(exc)
        for src in snap.sources:
            if not src.up:
                self.holder.errors[src.name] = self.holder.errors.get(src.name, 0) + 1
                log.warning("source %s down: %s", src.name, src.error)
        for src in ("docker", "iptables", "ip6tables"):
            self.holder.errors.setdefault(src, 0)
        self.holder.snapshot = snap  # one reference assignment: the swap is atomic
        return snap


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
