"""rtnetlink notifications (sources.rtnl, sources.watch.NetEvents): what a batch of messages
changed, and a change asks for a refresh as a rule change does; without the socket, the
interval's refresh only, logged once."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

import pytest
from support.util import until

from exporter.sources import watch
from exporter.sources.rtnl import describe, link_states
from exporter.sources.watch import NetEvents

# Messages a 6.x kernel multicast in a scratch namespace (`ip link set br7 down`, `ip route add
# 172.17.0.0/24 dev br7`, `ip -6 route add 2001:db8:b1::/64 dev br7`, `ip rule add fwmark 0x10
# lookup 7`); the RTM_NEWLINK ones (1,884 bytes) cut after their first attribute, IFLA_IFNAME,
# and the route6 one turned into its deletion (RTM_DELROUTE). NETCONF is written by hand: an
# RTM_NEWNETCONF for IPv4 with NETCONFA_IFINDEX only.
LINK_DOWN = bytes.fromhex(
    "2c000000100000000000000000000000000001000200000002100000010000000b0003006272370000000000"
)
LINK_UP = bytes.fromhex(
    "2c000000100000000000000000000000000001000200000043100100010000000b0003006272370000000000"
)
ROUTE4 = bytes.fromhex(
    "34000000180000065889126bea48000002180000fe03fd010000000008000f00fe00000008000100ac110000"
    "0800040002000000"
)
ROUTE6_DELETED = bytes.fromhex(
    "74000000190000065889126beb4800000a400000fe0300010000000008000f00fe0000001400010020010db8"
    "00b1000000000000000000000800060000040000080004000200000024000c00000000000000000000000000"
    "00000000000000000000000000000000000000000500140000000000"
)
RULE = bytes.fromhex(
    "4c000000200000005989126bec48000002000000070000010000000008000f000700000008000e00ffffffff"
    "0500150000000000080006006400000008000a001000000008001000ffffffff"
)
# a veth's link-local address and its fe80::/64 route, and the ff00::/8 multicast route, from
# the same capture; and the address as if it were global (ifa_scope 0)
LINK_LOCAL_ADDRESS = bytes.fromhex(
    "500000001400000000000000000000000a4080fd0200000014000100fe80000000000000889f3bfffef167f7"
    "14000600fffffffffffffffffe751700fe751700080008008000000005000b0003000000"
)
GLOBAL_ADDRESS = LINK_LOCAL_ADDRESS[:19] + b"\0" + LINK_LOCAL_ADDRESS[20:]
LINK_LOCAL_ROUTE = bytes.fromhex(
    "740000001800000600000000000000000a400000fe0200010000000008000f00fe00000014000100fe800000"
    "00000000000000000000000000080006000001000008000400020000002400"
    "0c0000000000000000000000000000000000000000000000000000000000000000000500140000000000"
)
MULTICAST_ROUTE = bytes.fromhex(
    "740000001800000600000000000000000a080000ff0200050000000008000f00ff00000014000100ff000000"
    "00000000000000000000000000080006000001000008000400020000002400"
    "0c0000000000000000000000000000000000000000000000000000000000000000000500140000000000"
)
NETCONF = bytes.fromhex("1c000000500000000000000000000000020000000800010002000000")


def cloned(route: bytes) -> bytes:
    """The route as the kernel announces a PMTU exception: RTM_F_CLONED in rtm_flags."""
    return route[:24] + (0x200).to_bytes(4, "little") + route[28:]


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (LINK_DOWN, ["link br7 down"]),
        (LINK_UP, ["link br7 up"]),
        (ROUTE4, ["route 172.17.0.0/24 added"]),
        (ROUTE6_DELETED, ["route 2001:db8:b1::/64 deleted"]),
        (RULE, ["rule added"]),
        (NETCONF, ["forwarding changed"]),
        (LINK_DOWN + ROUTE4, ["link br7 down", "route 172.17.0.0/24 added"]),
        (cloned(ROUTE4), []),  # no path changes
        (LINK_LOCAL_ADDRESS, []),
        (GLOBAL_ADDRESS, ["address added"]),
        (LINK_LOCAL_ROUTE, []),
        (MULTICAST_ROUTE, []),
        (ROUTE4[:40], ["network changed"]),  # cut short: not guessed
        (b"", []),
    ],
    ids=[
        "link-down",
        "link-up",
        "route4",
        "route6",
        "rule",
        "netconf",
        "batch",
        "cloned",
        "link-local-address",
        "global-address",
        "link-local-route",
        "multicast-route",
        "truncated",
        "empty",
    ],
)
def test_what_a_batch_of_messages_changed(data, said):
    assert describe(data) == said


def br7_index() -> int:
    return struct.unpack_from("=BxHiII", LINK_DOWN, 16)[2]


def test_a_link_message_that_leaves_the_link_as_it_was_changes_nothing():
    # the kernel sends link messages for carrier, statistics and bridge port changes too:
    # a veth of every container, after each start, without anything changing on the path
    i = br7_index()
    links = {i: True}
    assert describe(LINK_UP, links) == [] and links == {i: True}
    assert describe(LINK_DOWN, links) == ["link br7 down"] and links == {i: False}
    assert describe(LINK_DOWN, links) == []
    assert describe(LINK_UP, links) == ["link br7 up"] and links == {i: True}
    unknown: dict[int, bool] = {}
    assert describe(LINK_UP, unknown) == ["link br7 up"] and unknown == {i: True}


def test_the_link_dump_is_every_link_of_the_namespace():
    links = link_states()
    assert set(links) == {i for i, _ in socket.if_nameindex()}
    assert links[socket.if_nametoindex("lo")] is True


class Feed:
    """NetEvents' socket: a datagram socket pair standing in for rtnetlink."""

    def __init__(self) -> None:
        self.ours, self.kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.ours.setblocking(False)

    def open(self) -> socket.socket:
        return self.ours


async def test_a_change_asks_for_a_refresh_with_what_changed(monkeypatch):
    feed, asked = Feed(), []
    events = NetEvents(asked.append)
    monkeypatch.setattr(events, "open", feed.open)
    monkeypatch.setattr(events, "link_states", dict)  # br7 not known yet
    task = asyncio.create_task(events.run())
    try:
        await asyncio.sleep(0.01)
        feed.kernel.send(cloned(ROUTE4))  # nothing changed: nothing asked
        feed.kernel.send(LINK_DOWN + ROUTE4)
        await until(lambda: asked, "a refresh asked for")
        assert asked == ["link br7 down and 1 more"]
    finally:
        task.cancel()
        feed.kernel.close()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events.sock is None  # closed on the way out


async def test_without_the_socket_the_interval_refresh_only_logged_once(monkeypatch, caplog):
    tries, asked = [], []

    def refused() -> socket.socket:
        tries.append(1)
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(watch, "BACKOFF", (0.0,))
    events = NetEvents(asked.append)
    monkeypatch.setattr(events, "open", refused)
    caplog.set_level(logging.DEBUG, "docker_nat_exporter")
    task = asyncio.create_task(events.run())
    try:
        await until(lambda: len(tries) >= 5, "five tries")
    finally:
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    logged = [r for r in caplog.records if "rtnetlink" in r.getMessage()]
    assert len(logged) == 1 and "interval refresh only" in logged[0].getMessage()
    assert "Operation not permitted" in logged[0].getMessage()
    assert asked == []  # no refresh asked for while nothing is known to have changed
