"""Change notifications: the Docker events stream, nf_tables rulesets (netlink, or `nft
monitor`) and the host's links, addresses, routes, rules and forwarding switches (rtnetlink).

Each watcher reports a change and re-establishes itself with backoff when its stream drops
(daemon restart, nft killed). All are read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import Protocol

from exporter.rules.nftevents import EVERYTHING, Change, parse_messages, parse_monitor_line
from exporter.sources.docker_api import client
from exporter.sources.netwatch import NetWatch
from exporter.sources.nftnl import subscribe
from exporter.sources.nftwatch import SETTLE
from exporter.sources.rtnl import describe
from exporter.sources.rtnl import link_states as rtnl_link_states
from exporter.sources.rtnl import subscribe as subscribe_rtnl
from exporter.sources.run import which

log = logging.getLogger("docker_nat_exporter")
BACKOFF = (0.5, 1, 2, 5, 10, 30)
EVENT_FILTERS = {"type": ["container", "network", "daemon"]}
RELEVANT = {
    "start",
    "die",
    "destroy",
    "create",
    "connect",
    "disconnect",
    "reload",
    "restart",
    "kill",
}


def backoff(failures: int) -> float:
    """Seconds to wait before trying again after `failures` failures in a row."""
    return BACKOFF[min(failures, len(BACKOFF) - 1)]


class DockerEvents:
    """Follows GET /events in a thread (the SDK's stream is blocking)."""

    def __init__(self, base_url: str, notify: Callable[[str], None], timeout: float = 10.0):
        self.base_url, self.notify, self.timeout = base_url, notify, timeout
        self.stop = threading.Event()
        self._stream = None
        self.thread = threading.Thread(target=self._loop, name="docker-events", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        with contextlib.suppress(Exception):
            if self._stream is not None:
                self._stream.close()

    def _loop(self) -> None:
        failures = 0
        while not self.stop.is_set():
            try:
                api = client(self.base_url, self.timeout)
                self._stream = api.events(decode=True, filters=EVENT_FILTERS)
                if failures:
                    self.notify("docker events stream re-established")
                failures = 0
                for event in self._stream:
                    if self.stop.is_set():
                        break
                    action = str(event.get("Action") or event.get("status") or "")
                    if action.split(":")[0] in RELEVANT:
                        self.notify(f"docker {event.get('Type')} {action}")
            except Exception as exc:  # stream dropped or daemon down: retry with backoff
                if self.stop.is_set():
                    break
                log.debug("docker events stream: %s", exc)
            if self.stop.is_set():
                break
            self.notify("docker events stream ended")
            self.stop.wait(backoff(failures))
            failures += 1


class Sink(Protocol):
    """Where a ruleset watcher reports: `started(settle)` once subscribed (reads that start
    `settle` seconds later see every change reported after), `changes(...)`, `stopped()`."""

    def started(self, settle: float) -> None: ...
    def changes(self, changes: list[Change]) -> None: ...
    def stopped(self) -> None: ...


class NetlinkFeed:
    """A netlink multicast socket read in the event loop, opened again with backoff whenever it
    fails. Each feed says what differs: `open()` the socket, `opened(again)` (again: after a
    failure, so a change may have been missed), `received(data)` a batch of messages, `lost()`
    when the socket's buffer overflowed (notifications were dropped: everything may have
    changed), `failed(exc)` when the socket cannot be had or read, `ended()` before it closes."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None

    def open(self) -> socket.socket:
        raise NotImplementedError

    def opened(self, again: bool) -> None: ...
    def received(self, data: bytes) -> None: ...
    def lost(self) -> None: ...
    def failed(self, exc: OSError) -> None: ...
    def ended(self) -> None: ...

    async def run(self) -> None:
        loop, failures = asyncio.get_running_loop(), 0
        while True:
            try:
                self.sock = self.open()
                self.opened(failures > 0)
                while True:
                    try:
                        data = await loop.sock_recv(self.sock, 1 << 16)
                    except OSError as exc:
                        if exc.errno != errno.ENOBUFS:
                            raise
                        self.lost()
                    else:
                        self.received(data)
                    failures = 0
            except OSError as exc:
                self.failed(exc)
            finally:
                self.ended()
                self.close()
            await asyncio.sleep(backoff(failures))
            failures += 1

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class NftEvents(NetlinkFeed):
    """The kernel's nf_tables change notifications (netlink group NFNLGRP_NFTABLES), read in
    the event loop: what `nft monitor` prints, without a process that loads the whole ruleset
    again for every change it prints (30 ms a change at 50,000 rules). Lost notifications (the
    socket's buffer overflowed) are reported as a change to everything."""

    def __init__(self, sink: Sink) -> None:
        super().__init__()
        self.sink = sink

    @staticmethod
    def open() -> socket.socket:
        return subscribe()

    def opened(self, again: bool) -> None:
        self.sink.started(0.0)  # subscribed: every later change is reported

    def received(self, data: bytes) -> None:
        if changes := parse_messages(data):
            self.sink.changes(changes)

    def lost(self) -> None:
        self.sink.changes([EVERYTHING])

    def failed(self, exc: OSError) -> None:
        log.warning("nf_tables change notifications unavailable: %s", exc)

    def ended(self) -> None:
        self.sink.stopped()


class NftMonitor:
    """Runs `nft monitor ruleset` and reports every change it prints (where a netlink socket
    cannot be had; nft subscribes some time after it starts: SETTLE)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.proc: asyncio.subprocess.Process | None = None

    @staticmethod
    def available() -> bool:
        return which("nft") is not None

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                self.proc = await asyncio.create_subprocess_exec(
                    which("nft") or "nft",
                    "monitor",
                    "ruleset",
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                assert self.proc.stdout is not None
                self.sink.started(SETTLE)
                while line := await self.proc.stdout.readline():
                    failures = 0
                    change = parse_monitor_line(line.decode("utf-8", "replace"))
                    if change is not None:
                        self.sink.changes([change])
                await self.proc.wait()
            except OSError as exc:
                log.warning("nft monitor cannot run: %s", exc)
            finally:
                self.sink.stopped()
                await self.close()
            await asyncio.sleep(backoff(failures))
            failures += 1

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            # not proc.kill(): its poll() may reap a child that just died under asyncio's
            # child watcher, which then logs "Unknown child process pid ..." on stderr
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await self.proc.wait()


class NetEvents(NetlinkFeed):
    """rtnetlink's notifications of links, addresses, routes, policy rules and forwarding
    switches (sources.rtnl), read in the event loop: each batch that changes something calls
    `notify(why)`, as a rule change does. Where the socket cannot be had, that is logged once
    and changes are seen at the interval's refresh; lost notifications count as a change."""

    def __init__(self, notify: Callable[[str], None], watch: NetWatch | None = None) -> None:
        super().__init__()
        self.notify = notify
        self.watch = watch or NetWatch()  # what a refresh may reuse (sources.netwatch)
        self.logged = False
        self.links: dict[int, bool] = {}  # interface index → up, as last seen

    @staticmethod
    def open() -> socket.socket:
        return subscribe_rtnl()

    @staticmethod
    def link_states() -> dict[int, bool]:
        return rtnl_link_states()

    def opened(self, again: bool) -> None:
        self.watch.started()
        self.links = self.link_states()
        if again:  # a gap: a change may have been missed
            self.notify("link and route notifications started again")

    def received(self, data: bytes) -> None:
        self.watch.changed()  # even one that asks for no refresh: a read would differ
        self.report(describe(data, self.links))

    def lost(self) -> None:
        self.watch.changed()
        self.links = self.link_states()
        self.report(["network changed (notifications lost)"])

    def ended(self) -> None:
        self.watch.stopped()

    def report(self, whats: list[str]) -> None:
        if whats:
            more = f" and {len(whats) - 1} more" if len(whats) > 1 else ""
            self.notify(f"{whats[0]}{more}")

    def failed(self, exc: OSError) -> None:
        if not self.logged:
            log.info("link and route changes are seen at the interval refresh only: "
                     "rtnetlink notifications unavailable: %s", exc)  # fmt: skip
            self.logged = True
