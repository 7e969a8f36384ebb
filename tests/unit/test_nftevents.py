"""nf_tables change notifications read into Changes: the kernel's netlink messages, built here
byte by byte as the kernel lays them out, and `nft monitor` lines."""

from __future__ import annotations

import struct

import pytest

from exporter.rules.nftevents import EVERYTHING, Change, parse_messages, parse_monitor_line

INET, IP, IP6 = 1, 2, 10


def attr(kind: int, value: bytes) -> bytes:
    body = struct.pack("=HH", 4 + len(value), kind) + value
    return body + b"\0" * (-len(body) % 4)


def name(text: str) -> bytes:
    return text.encode() + b"\0"


def message(msg: int, family: int, *attrs: bytes) -> bytes:
    payload = struct.pack("=BBH", family, 0, 0) + b"".join(attrs)  # struct nfgenmsg
    header = struct.pack("=IHHII", 16 + len(payload), (10 << 8) | msg, 0, 0, 0)
    return header + payload


HANDLE = attr(3, struct.pack(">Q", 7))
HOOK = attr(4 | 0x8000, attr(1, struct.pack(">I", 1)) + attr(2, struct.pack(">i", 0)))


def test_a_transaction_of_rules_chains_and_tables():
    data = b"".join(
        [
            message(6, IP, attr(1, name("filter")), attr(2, name("INPUT")), HANDLE),  # NEWRULE
            message(8, IP6, attr(1, name("nat")), attr(2, name("DOCKER")), HANDLE),  # DELRULE
            message(3, INET, attr(1, name("fw")), HANDLE, attr(3, name("input")), HOOK),
            message(3, IP, attr(1, name("nat")), attr(3, name("DOCKER"))),  # a user chain
            message(2, IP, attr(1, name("mangle"))),  # DELTABLE
            message(12, INET, attr(1, name("fw")), attr(2, name("blocklist"))),  # NEWSETELEM
            message(15, 0, attr(1, struct.pack(">I", 9))),  # NEWGEN: the end, no change
        ]
    )
    assert parse_messages(data) == [
        Change("ip", "filter", "INPUT", "rule"),
        Change("ip6", "nat", "DOCKER", "rule"),
        Change("inet", "fw", "input", "chain", base=True),
        Change("ip", "nat", "DOCKER", "chain"),
        Change("ip", "mangle", "", "table"),
        Change("inet", "fw", "", "element"),
    ]


@pytest.mark.parametrize(
    "data",
    [
        message(99, IP, attr(1, name("filter"))),  # a message type from a later kernel
        message(6, 42, attr(1, name("filter"))),  # an unknown family
        message(6, IP, attr(1, b"\xff\xfe\0")),  # a table name that is not ASCII
        message(6, IP, attr(1, name("filter")))[:-3],  # truncated
        struct.pack("=IHHII", 20, 2, 0, 0, 0) + b"\0" * 4,  # NLMSG_ERROR
    ],
)
def test_anything_not_understood_is_a_change_to_everything(data):
    assert EVERYTHING in parse_messages(data)


def test_other_subsystems_and_empty_datagrams_are_no_change():
    other = struct.pack("=IHHII", 20, (1 << 8) | 0, 0, 0, 0) + b"\0" * 4  # ctnetlink
    assert parse_messages(other) == [] and parse_messages(b"") == []


@pytest.mark.parametrize(
    ("line", "change"),
    [
        ("add rule ip filter INPUT ip saddr 198.51.100.7 counter drop",
         Change("ip", "filter", "INPUT", "rule")),
        ("delete rule ip nat DOCKER handle 7", Change("ip", "nat", "DOCKER", "rule")),
        ("add chain inet fw input { type filter hook input priority filter; }",
         Change("inet", "fw", "input", "chain", base=True)),
        ("add chain ip nat DOCKER", Change("ip", "nat", "DOCKER", "chain")),
        ("delete table ip6 filter", Change("ip6", "filter", "", "table")),
        ("add element inet fw blocklist { 192.0.2.9 }", Change("inet", "fw", "", "element")),
        ("flush ruleset", EVERYTHING),
        ("something new", EVERYTHING),
        ("# comment", None),
        ("", None),
    ],
)  # fmt: skip
def test_monitor_lines(line, change):
    assert parse_monitor_line(line) == change
