"""path.routetable: route lookups with networks parsed once and answers memoised must answer as
a plain scan of the routes does."""

import ipaddress
import random

import pytest

from exporter.netstate import Route
from exporter.path import routetable
from exporter.path.routetable import RouteTable, inside, table_of


def scan(routes, table, dst):
    """The reference: every route parsed for every lookup."""

    def holds(net):
        try:
            return ipaddress.ip_address(dst) in ipaddress.ip_network(net)
        except ValueError:
            return False

    best = None
    for r in routes:
        if r.table != table or r.dead or not holds(r.dst):
            continue
        key = (-int(r.dst.rsplit("/", 1)[1]) if "/" in r.dst else -128, r.metric)
        if best is None or key < best[0]:
            best = (key, r)
    return best[1] if best else None


ROUTES = (
    Route("0.0.0.0/0", "eth0", metric=100),
    Route("10.1.0.0/16", "br-a"),
    Route("10.1.2.0/24", "tun0"),  # longer prefix wins
    Route("10.1.3.0/24", "tun0", dead=True),  # dead: the /16 answers
    Route("10.1.4.0/24", "slow", metric=20),
    Route("10.1.4.0/24", "fast", metric=10),  # lowest metric wins
    Route("10.1.5.0/24", "first", metric=5),
    Route("10.1.5.0/24", "second", metric=5),  # equal: the first stays
    Route("10.1.6.1/24", "strict"),  # host bits set: ip_network refuses it, holds nothing
    Route("10.1.7.0/24", "", "blackhole"),
    Route("10.1.0.0/16", "vpn", table="51820"),
    Route("::/0", "eth6"),  # /0 of the other family: holds no IPv4 address
    Route("fd00::/64", "br-6"),
    Route("garbage", "x"),
)


@pytest.mark.parametrize(
    ("dst", "table", "dev"),
    [
        ("10.1.1.9", "main", "br-a"),
        ("10.1.2.9", "main", "tun0"),
        ("10.1.3.9", "main", "br-a"),
        ("10.1.4.9", "main", "fast"),
        ("10.1.5.9", "main", "first"),
        ("10.1.6.9", "main", "br-a"),
        ("10.1.7.9", "main", ""),
        ("10.2.0.1", "main", "eth0"),
        ("10.1.1.9", "51820", "vpn"),
        ("10.2.0.1", "51820", None),
        ("fd00::5", "main", "br-6"),
        ("fd01::5", "main", "eth6"),
        ("not-an-address", "main", None),
    ],
)
def test_lookup_answers_as_a_scan(dst, table, dev):
    t = RouteTable(ROUTES)
    for _ in range(2):  # the memoised answer too
        found = t.lookup(table, dst)
        assert (found.dev if found else None) == dev
        assert found is scan(ROUTES, table, dst)


def test_random_routes_and_addresses_match_the_scan():
    rnd = random.Random(7)
    for _ in range(30):
        routes = tuple(
            Route(f"10.{rnd.randrange(3)}.{rnd.randrange(4)}.{rnd.choice((0, 0, 8))}/"
                  f"{rnd.choice((8, 16, 24, 29))}", f"d{i}", table=rnd.choice(("main", "t")),
                  metric=rnd.randrange(3), dead=rnd.random() < 0.2)
            for i in range(12)
        )  # fmt: skip
        t = RouteTable(routes)
        for _ in range(40):
            dst = f"10.{rnd.randrange(3)}.{rnd.randrange(4)}.{rnd.randrange(16)}"
            for table in ("main", "t"):
                assert t.lookup(table, dst) is scan(routes, table, dst)


def test_a_netmask_prefix_raises_when_it_matches_as_the_scan_does():
    routes = (Route("10.0.0.0/255.0.0.0", "x"), Route("192.168.0.0/16", "y"))
    t = RouteTable(routes)
    assert t.lookup("main", "192.168.1.1").dev == "y"
    with pytest.raises(ValueError):
        t.lookup("main", "10.1.1.1")


def test_tables_are_kept_per_routes_tuple():
    a, b = ROUTES[:3], ROUTES[3:]
    assert table_of(a) is table_of(a)
    assert table_of(a).routes is a and table_of(b).routes is b
    assert table_of(b).lookup("main", "10.1.3.9") is None  # b has no live /16 for it


def test_a_new_routes_tuple_gets_its_own_table_even_at_a_reused_id(monkeypatch):
    monkeypatch.setattr(routetable, "id", lambda _: 1, raising=False)  # every tuple at one id
    for i in range(3):
        routes = (Route(f"10.{i}.0.0/16", f"d{i}"),)
        assert table_of(routes).lookup("main", f"10.{i}.1.1").dev == f"d{i}"


def test_inside():
    assert inside("10.1.2.3", "10.1.0.0/16")
    assert not inside("10.2.2.3", "10.1.0.0/16")
    assert not inside("10.1.2.3", "10.1.0.1/16")  # strict: refused
    assert not inside("::a00:1", "10.0.0.0/8")  # another family, though the integer is inside
    assert not inside("nope", "10.0.0.0/8")
    assert inside("fd00::1", "fd00::/64")
