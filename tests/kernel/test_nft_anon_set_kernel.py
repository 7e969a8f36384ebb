"""Real connections judge a large anonymous nft set (`ip saddr { 1,000 prefixes }`): the rule is
one lookup for the exporter, as for the kernel, and the client inside the set and the one
outside it get what the exporter says of their classes.

Docker 20.10's rules for c1's 0.0.0.0:8080 and [::]:8080 with iptables-nft, and a Debian-style
`table inet filter` whose forward policy drops, accepting translated connections only from
anonymous sets of 1,000 prefixes (IPv4 and IPv6). Needs root, ip, nft and iptables-nft (CI=true:
fails instead of skipping).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.corefix import BASE_G27, analyse_doc, port_report
from support.natworld import running
from test_sources_kernel import (
    BASE6,
    IN4,
    IN4B,
    IN6,
    OUT4,
    OUT6,
    SourceWorld,
    class_of,
    gets,
    web_doc6,
)

from exporter.rules.nftmatch import ANON_INLINE

pytestmark = pytest.mark.kernel

# 999 /24s in 10.0.0.0/8, none adjacent to another (and 999 /48s of 2001:db8:1000::/36), plus
# the allowed clients
ALLOWED4 = [f"10.{i // 100}.{i % 100 * 2}.0/24" for i in range(999)] + ["203.0.113.8/30"]
ALLOWED6 = [f"2001:db8:{0x1000 + i:x}::/48" for i in range(999)] + [f"{IN6}/128"]
TABLE = f"""table inet filter {{
  chain forward {{
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    ip saddr {{ {", ".join(ALLOWED4)} }} ct status dnat accept
    ip6 saddr {{ {", ".join(ALLOWED6)} }} ct status dnat accept
  }}
}}
"""
FROM = {"ipv4": {IN4: "ok", IN4B: "ok", OUT4: "dropped"}, "ipv6": {IN6: "ok", OUT6: "dropped"}}


@pytest.fixture(scope="module")
def world() -> Iterator[SourceWorld]:
    with running(SourceWorld) as w:
        yield w


def test_clients_inside_and_outside_a_set_of_1000_prefixes(world):
    assert len(ALLOWED4) > ANON_INLINE
    world.load("nft", BASE_G27, TABLE, text6=BASE6)
    rules, nft_error, _, net = world.read()
    assert nft_error == ""
    lookups = [
        c
        for rs in rules["ipv4"].rulesets
        for t in rs.tables.values()
        for ch in t.chains.values()
        for r in ch.rules
        for c in r.conds
        if c.option == "--match-set" and "{anonymous " in c.values[0]
    ]
    assert len(lookups) == 1, lookups  # one lookup, not 1,000 alternatives (nor unknown)
    snap = analyse_doc(web_doc6(), rules["ipv4"], rules["ipv6"], net=net)
    failures = []
    for family, sources in FROM.items():
        v = port_report(snap, "web", 8080, family).verdict
        assert (v.state, v.exposure) == ("ok", "restricted"), (family, v.reason)
        for src, want in sources.items():
            c = class_of(v, src)
            seen = world.probe_from(src, family)
            if c.state != want or not gets(c.state, seen, src):
                failures.append(f"{family} from {src}: exporter {c.state} (want {want}: "
                                f"{c.reason}), client {seen}")  # fmt: skip
    assert not failures, "\n".join(failures)
