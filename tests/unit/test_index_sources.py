"""path.index: for a class of clients, a chain's candidates leave out the rules whose source
test none of the class passes; the unbucketed ones filtered once per class must give, for every
packet, the candidates a filter of all of them gives."""

from __future__ import annotations

from dataclasses import replace

from exporter.path.index import IndexedChain
from exporter.path.matching import Packet
from exporter.path.sources import Sources
from exporter.rules.iptsave import parse_save

LINES = """\
-A POSTROUTING -s 10.100.0.0/16 ! -o br-a -j MASQUERADE
-A POSTROUTING -s 10.100.0.2/32 -d 10.100.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE
-A POSTROUTING -s 192.0.2.0/24 -j ACCEPT
-A POSTROUTING -s 10.101.0.0/16 ! -o br-b -j MASQUERADE
-A POSTROUTING -s 10.101.0.3/32 -d 10.101.0.3/32 -p tcp -m tcp --dport 80 -j MASQUERADE
-A POSTROUTING -o eth0 -j RETURN
-A POSTROUTING -j LOG
"""


def chain() -> IndexedChain:
    text = f"*nat\n:POSTROUTING ACCEPT [0:0]\n{LINES}COMMIT\n"
    rs = parse_save(text, "ipv4", "legacy")
    return IndexedChain(rs.tables["nat"].chains["POSTROUTING"].rules)


def packet(src, dst="10.100.0.2") -> Packet:
    return Packet("ipv4", "tcp", src, dst, None, 80, None, None, "NEW", False, False, frozenset())


def reference(c: IndexedChain, p: Packet) -> list[int]:
    """Every rule in order, those whose -s the class misses left out (no buckets, no memo)."""
    out = []
    for i, r in enumerate(c.rules):
        tests = [Sources.parse(x.values[0]) for x in r.conds if x.option == "-s" and not x.negated]
        if all(p.src & t for t in tests):
            out.append(i)
    return out


def positions(c: IndexedChain, p: Packet) -> list[int]:
    return [c.rules.index(r) for r in c.candidates(p)]


def test_each_class_gets_its_own_rules_in_order():
    c = chain()
    classes = [Sources.parse(x) for x in ("10.100.0.0/16", "192.0.2.0/24", "0.0.0.0/0",
                                          "10.101.0.3/32", "198.51.100.0/24")]  # fmt: skip
    for _ in range(2):  # the second round from the per-class memo
        for src in classes:
            for dst in ("10.100.0.2", "10.101.0.3", "10.9.9.9"):
                p = packet(src, dst)
                want = [i for i in reference(c, p) if i in positions_unfiltered(c, p)]
                assert positions(c, p) == want, (src, dst)


def positions_unfiltered(c: IndexedChain, p: Packet) -> list[int]:
    return [c.rules.index(r) for r in c.candidates(replace(p, src="203.0.113.9"))]


def test_a_class_outside_every_source_test_keeps_only_untested_rules():
    c = chain()
    p = packet(Sources.parse("198.51.100.0/24"), "10.9.9.9")
    assert [c.rules[i].target for i in positions(c, p)] == ["RETURN", "LOG"]
    p = packet(Sources.parse("10.100.0.0/16"), "10.9.9.9")  # now a class the first rule tests
    assert [c.rules[i].target for i in positions(c, p)] == ["MASQUERADE", "RETURN", "LOG"]
