"""Sets of client addresses (path.sources): algebra, the client space, the human listing."""

from __future__ import annotations

import ipaddress
import random

import pytest

from exporter.path.matching import NO, YES
from exporter.path.sources import Sources, client_space, describe, split, split_text


def s(*texts: str) -> Sources:
    version = 6 if ":" in texts[0] else 4
    got = Sources.union_of(version, texts)
    assert got is not None
    return got


def test_parse_prefix_address_and_range():
    assert s("192.0.2.0/24").size() == 256
    assert s("192.0.2.7").size() == 1
    assert s("192.168.1.1-192.168.1.3").cidrs() == ["192.168.1.1/32", "192.168.1.2/31"]
    assert s("2001:db8::/64").size() == 2**64
    assert Sources.parse("not an address") is None
    assert Sources.parse("10.0.0.9-10.0.0.1") is None  # a backwards range
    assert Sources.parse("10.0.0.1-2001:db8::1") is None


def test_union_merges_adjacent_and_overlapping_spans():
    got = s("10.0.0.0/25", "10.0.0.128/25", "10.0.0.5")
    assert got.cidrs() == ["10.0.0.0/24"] and len(got.spans) == 1


def test_algebra_against_python_ipaddress_on_random_sets():
    rng = random.Random(13)
    for _ in range(200):
        nets = [f"10.{rng.randrange(4)}.{rng.randrange(256)}.0/{rng.randrange(20, 29)}"
                for _ in range(4)]  # fmt: skip
        a, b = s(*nets[:2]), s(*nets[2:])
        for probe in (f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(256)}"
                      for _ in range(20)):  # fmt: skip
            ip = ipaddress.ip_address(probe)
            in_a = any(ip in ipaddress.ip_network(n, strict=False) for n in nets[:2])
            in_b = any(ip in ipaddress.ip_network(n, strict=False) for n in nets[2:])
            assert (a & b).contains(probe) == (in_a and in_b)
            assert (a - b).contains(probe) == (in_a and not in_b)
            assert (a | b).contains(probe) == (in_a or in_b)


def test_split_says_all_none_or_the_part_inside():
    whole = s("10.0.0.0/8")
    assert split(whole, s("0.0.0.0/0")) == YES
    assert split(whole, s("192.0.2.0/24")) == NO
    assert split(whole, s("10.1.0.0/16")) == s("10.1.0.0/16")
    assert split_text(whole, "10.0.0.0/7") == YES
    assert split_text(whole, "2001:db8::/32") == NO  # another family never matches
    assert split_text(whole, "bogus") is None


def test_equal_sets_are_equal_and_hash_alike():
    a, b = s("10.0.0.0/24", "10.0.1.0/24"), s("10.0.0.0/23")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != s("2001:db8::/64")


def test_client_space_leaves_out_special_and_local_addresses():
    space = client_space("ipv4", ["172.17.0.0/16", "192.0.2.1"])
    for addr, inside in [("8.8.8.8", True), ("127.0.0.1", False), ("224.0.0.1", False),
                         ("169.254.1.1", False), ("172.17.0.2", False), ("192.0.2.1", False),
                         ("192.0.2.2", True), ("0.1.2.3", False), ("255.255.255.255", False)]:  # fmt: skip
        assert space.contains(addr) is inside, addr
    v6 = client_space("ipv6", ["2001:db8:1::1"])
    assert v6.contains("2001:db8::5") and not v6.contains("fe80::1")
    assert not v6.contains("::1") and not v6.contains("::ffff:192.0.2.5")


@pytest.mark.parametrize(
    ("allowed", "want"),
    [
        (("10.0.0.0/8",), "10.0.0.0/8"),  # Docker's 172.17.0.0/16 hole does not split it
        (
            ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"),
            "10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16",
        ),
        (("192.168.1.1-192.168.1.3",), "192.168.1.1/32, 192.168.1.2/31"),
    ],
)
def test_describe_lists_allowed_prefixes(allowed, want):
    space = client_space("ipv4", ["172.17.0.0/16", "192.0.2.1"])
    assert describe(s(*allowed) & space, space) == want


def test_describe_all_none_and_all_except():
    space = client_space("ipv4", ["172.17.0.0/16"])
    assert describe(space, space) == "all"
    assert describe(Sources(4), space) == "none"
    assert describe(space - s("198.51.100.0/24"), space) == "all except 198.51.100.0/24"


def test_describe_is_bounded():
    space = client_space("ipv4")
    many = s(*(f"198.51.{i}.0/24" for i in range(0, 40, 2)))
    text = describe(many, space, limit=3)
    assert text == "198.51.0.0/24, 198.51.2.0/24, 198.51.4.0/24 and 17 more"
