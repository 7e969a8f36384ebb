"""Reusing the native nftables read only while the change feed proves nothing native changed;
which iptables-nft chains changed since a family's rules were read (ChainWatch)."""

from __future__ import annotations

import pytest

from exporter.rules.nftevents import EVERYTHING, Change, parse_monitor_line
from exporter.sources.nftwatch import SETTLE, ChainWatch, NativeWatch, touches_native


class Read:
    def __init__(self, error: str = "", warnings: tuple = ()) -> None:
        self.error, self.warnings = error, warnings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def watch():
    clock = Clock()
    w = NativeWatch(clock)
    calls = []

    def reader(timeout, fams):
        calls.append(fams)
        return Read()

    return w, clock, calls, reader


@pytest.mark.parametrize(
    ("line", "native"),
    [
        ("delete rule ip nat DOCKER handle 7", False),
        ("add rule ip6 filter DOCKER-USER ip6 saddr ::1 drop", False),
        ("add chain ip filter DOCKER-FORWARD", False),
        ("add rule inet filter forward tcp dport 80 accept", True),
        ("delete rule ip docker-bridges filter-forward-in__br handle 3", True),
        ("add table ip firewalld", True),
        ("flush ruleset", True),
        ("something new", True),
    ],
)
def test_which_monitor_lines_can_change_native_tables(line, native):
    assert touches_native(parse_monitor_line(line)) is native


def test_without_a_monitor_every_refresh_reads(watch):
    w, _, calls, reader = watch
    w.read(reader, 1, frozenset())
    w.read(reader, 1, frozenset())
    assert len(calls) == 2


def test_reused_while_quiet_reread_after_a_native_change(watch):
    w, clock, calls, reader = watch
    w.started()
    clock.now += SETTLE
    first = w.read(reader, 1, frozenset({"ipv4"}))
    assert w.read(reader, 1, frozenset({"ipv4"})) is first and len(calls) == 1
    w.changed(
        parse_monitor_line("delete rule ip nat DOCKER handle 7\n")
    )  # iptables-nft's table: still reused
    assert w.read(reader, 1, frozenset({"ipv4"})) is first and len(calls) == 1
    w.changed(parse_monitor_line("add rule inet filter forward drop\n"))
    assert w.read(reader, 1, frozenset({"ipv4"})) is not first and len(calls) == 2
    w.read(reader, 1, frozenset({"ipv4", "ipv6"}))  # other families read by iptables-nft
    assert len(calls) == 3


def test_not_trusted_before_the_monitor_settles_or_after_it_stops(watch):
    w, clock, calls, reader = watch
    w.started()
    w.read(reader, 1, frozenset())  # taken before the monitor surely subscribed
    clock.now += SETTLE
    w.read(reader, 1, frozenset())
    assert len(calls) == 2
    w.read(reader, 1, frozenset())
    assert len(calls) == 2
    w.stopped()
    w.read(reader, 1, frozenset())
    assert len(calls) == 3


def test_a_read_with_errors_is_never_reused(watch):
    w, clock, calls, _ = watch
    w.started()
    clock.now += SETTLE

    def failing(timeout, fams):
        calls.append(fams)
        return Read(error="nft: timed out")

    w.read(failing, 1, frozenset())
    w.read(failing, 1, frozenset())
    assert len(calls) == 2


def test_chain_watch_names_changed_chains_once_trusted():
    clock = Clock()
    w = ChainWatch(clock)
    assert w.take("ipv4") is None  # no feed: a whole read
    w.started()
    assert w.take("ipv4") is None  # what was read before it subscribed may be old
    assert w.take("ipv6") is None
    assert w.take("ipv4") == {}
    w.changed(Change("ip", "filter", "INPUT", "rule"))
    w.changed(Change("ip", "nat", "DOCKER", "rule"))
    w.changed(Change("ip6", "nat", "DOCKER", "chain"))
    w.changed(Change("inet", "filter", "input", "rule"))  # native: not this watch's
    assert w.take("ipv4") == {"filter": {"INPUT"}, "nat": {"DOCKER"}}
    assert w.take("ipv4") == {}
    assert w.take("ipv6") == {"nat": {"DOCKER"}}


@pytest.mark.parametrize(
    "change",
    [EVERYTHING, Change("ip", "nat", "", "table"), Change("ip", "filter", "", "set")],
)
def test_chain_watch_asks_a_whole_read_for_anything_but_chains(change):
    w = ChainWatch(Clock())
    w.started()
    w.take("ipv4")
    w.changed(change)
    assert w.take("ipv4") is None
    assert w.take("ipv4") == {}


def test_chain_watch_after_a_failed_read_or_without_feed():
    w = ChainWatch(Clock())
    w.started()
    w.take("ipv4")
    w.read_failed("ipv4")
    assert w.take("ipv4") is None
    w.stopped()
    w.changed(Change("ip", "nat", "DOCKER", "rule"))
    assert w.take("ipv4") is None
