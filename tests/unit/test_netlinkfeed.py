"""The netlink feeds' shared loop (sources.watch.NetlinkFeed) under NftEvents and NetEvents:
lost notifications (ENOBUFS: the socket's buffer overflowed) count as a change to everything
and the socket is read on; any other error closes it and opens it again after a backoff that
starts over once a read succeeds."""

from __future__ import annotations

import asyncio
import errno
import socket
import struct

import pytest
from support.util import until

from exporter.rules.nftevents import EVERYTHING
from exporter.sources import watch
from exporter.sources.watch import NetEvents, NftEvents

LOST = OSError(errno.ENOBUFS, "No buffer space available")
RESET = OSError(errno.ECONNRESET, "Connection reset by peer")


def newrule(table: str, chain: str) -> bytes:
    """An NFT_MSG_NEWRULE for ip `table` `chain`, as the kernel lays it out."""

    def attr(kind: int, text: str) -> bytes:
        body = struct.pack("=HH", 5 + len(text), kind) + text.encode() + b"\0"
        return body + b"\0" * (-len(body) % 4)

    payload = struct.pack("=BBH", socket.AF_INET, 0, 0) + attr(1, table) + attr(2, chain)
    return struct.pack("=IHHII", 16 + len(payload), (10 << 8) | 6, 0, 0, 0) + payload


class Scripted(socket.socket):
    """One end of a datagram socket pair standing in for netlink; its first receives raise or
    return what `script` says, then it reads what the other end (`kernel`) sends."""

    def __init__(self, script: list) -> None:
        ours, self.kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        super().__init__(ours.family, ours.type, fileno=ours.detach())
        self.setblocking(False)
        self.script = script

    def recv(self, n: int, *args) -> bytes:
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, BaseException):
                raise step
            return step
        return super().recv(n, *args)


class Opener:
    """The feed's `open`: each call hands out the next socket (an exception is raised)."""

    def __init__(self, *scripts) -> None:
        self.scripts, self.socks = list(scripts), []

    def __call__(self) -> socket.socket:
        script = self.scripts.pop(0) if self.scripts else []
        if isinstance(script, BaseException):
            raise script
        self.socks.append(Scripted(script))
        return self.socks[-1]

    def close(self) -> None:
        for s in self.socks:
            s.kernel.close()
            s.close()


class Sink:
    def __init__(self) -> None:
        self.calls: list = []

    def started(self, settle: float) -> None:
        self.calls.append("started")

    def changes(self, changes) -> None:
        self.calls.append(changes)

    def stopped(self) -> None:
        self.calls.append("stopped")


async def running(feed, cond, what: str) -> None:
    task = asyncio.create_task(feed.run())
    try:
        await until(cond, what)
    finally:
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert feed.sock is None  # closed on the way out


async def test_lost_nf_tables_notifications_are_a_change_to_everything_and_reading_goes_on(
    monkeypatch,
):
    opener, sink = Opener([LOST, newrule("nat", "DOCKER")]), Sink()
    feed = NftEvents(sink)
    monkeypatch.setattr(feed, "open", opener)
    try:
        await running(feed, lambda: len(sink.calls) >= 3, "the rule after the loss")
    finally:
        opener.close()
    assert sink.calls[:2] == ["started", [EVERYTHING]]
    assert EVERYTHING not in sink.calls[2] and sink.calls[2][0].chain == "DOCKER"
    assert len(opener.socks) == 1 and sink.calls[3:] == ["stopped"]


async def test_lost_rtnetlink_notifications_ask_for_a_refresh_and_read_the_links_again(
    monkeypatch,
):
    opener, asked, dumps = Opener([LOST]), [], []
    feed = NetEvents(asked.append)
    monkeypatch.setattr(feed, "open", opener)
    monkeypatch.setattr(feed, "link_states", lambda: dumps.append(1) or {len(dumps): True})
    try:
        await running(feed, lambda: asked, "a refresh asked for")
    finally:
        opener.close()
    assert asked == ["network changed (notifications lost)"]
    assert len(dumps) == 2 and feed.links == {2: True}  # at the start, and after the loss
    assert len(opener.socks) == 1


async def test_other_errors_open_the_socket_again_after_a_backoff_that_a_read_resets(
    monkeypatch,
):
    waits = []
    monkeypatch.setattr(watch, "backoff", lambda failures: waits.append(failures) or 0.0)
    refused = PermissionError(errno.EPERM, "Operation not permitted")
    # refused twice, a socket that fails at once, one that reads a batch first, then a good one
    opener, sink = Opener(refused, refused, [RESET], [b"", RESET], []), Sink()
    feed = NftEvents(sink)
    monkeypatch.setattr(feed, "open", opener)
    try:
        await running(feed, lambda: len(opener.socks) == 3, "the third socket")
    finally:
        opener.close()
    assert waits == [0, 1, 2, 0]
    assert sink.calls == ["stopped", "stopped"] + ["started", "stopped"] * 3
    assert all(s.fileno() == -1 for s in opener.socks)


async def test_rtnetlink_after_a_gap_asks_for_a_refresh(monkeypatch):
    monkeypatch.setattr(watch, "BACKOFF", (0.0,))
    opener, asked = Opener([RESET], []), []
    feed = NetEvents(asked.append)
    monkeypatch.setattr(feed, "open", opener)
    monkeypatch.setattr(feed, "link_states", dict)
    try:
        await running(feed, lambda: asked, "a refresh asked for")
    finally:
        opener.close()
    assert asked == ["link and route notifications started again"]


def test_the_backoff_grows_to_its_last_step():
    assert [watch.backoff(n) for n in range(8)] == [0.5, 1, 2, 5, 10, 30, 30, 30]
