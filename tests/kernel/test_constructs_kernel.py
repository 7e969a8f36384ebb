"""Real connections judge the constructs real hosts add around Docker's rules (issue 13).

Docker 20.10's rules for `docker run -p 8080:80` (corefix.BASE_G27) plus one construct are
loaded into the host of a small real network (support.natworld), with iptables-nft and with
iptables-legacy, native nftables chains on top where the scenario has them. The exporter reads
them with its own readers in that namespace and judges c1's 0.0.0.0:8080; the client then
connects for real. Both must say the same: the state is the expected one, and what the client
got is what that state means (ok: c1 sees the client's address; masqueraded: c1 sees a host
address; proxied: the stand-in docker-proxy answers; dropped: silence; unreachable: refused).

Needs root, ip, nft and both iptables backends (CI=true: fails instead of skipping).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.corefix import (
    BASE_G27,
    USER_RETURN,
    analyse_doc,
    append_rules,
    insert_before,
    port_report,
    web_doc,
    with_table,
)
from support.natworld import CLIENT, HOST_ADDRS, NatWorld, agrees, running

pytestmark = pytest.mark.kernel

BACKENDS = ("nft", "legacy")


@pytest.fixture(scope="module")
def world() -> Iterator[NatWorld]:
    with running() as w:
        yield w


def user(text: str, *rules: str) -> str:
    return insert_before(text, USER_RETURN, *(f"-A DOCKER-USER {r}" for r in rules))


def nat(*rules: str) -> str:
    return append_rules(BASE_G27, "nat", *rules)


def native(hook: str, prio: int, *rules: str, kind: str = "filter") -> str:
    """An nft script: `table ip site` with one base chain holding `rules`."""
    body = "\n".join(f"    {r}" for r in rules)
    return (f"table ip site {{\n  chain c {{\n    type {kind} hook {hook} priority {prio};\n"
            f"{body}\n  }}\n}}\n")  # fmt: skip


MARK = "-A PREROUTING -p tcp -m tcp --dport 8080 -j MARK --set-xmark 0x10/0xffffffff"
CONNMARK = "-A PREROUTING -p tcp -m tcp --dport 8080 -j CONNMARK --set-xmark 0x7/0xffffffff"
# from the client's side only: on the reply (mark 0) a save would clear the connection's mark
SAVE = "-A PREROUTING ! -i docker0 -j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff"
CT_MARK_DROP = native("forward", -10, 'iifname "docker0" ct mark 0x7 drop').replace("site", "site2")
SYN_MSS = "-A PREROUTING -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 400"

# (id, iptables text, nft scripts, docker-proxy listening, state)
SCENARIOS = [
    ("baseline", BASE_G27, (), True, "ok"),
    ("mark set in mangle, DOCKER-USER drops it",
     user(with_table(BASE_G27, "mangle", MARK), "-m mark --mark 0x10 -j DROP"), (), True, "dropped"),
    ("mark set in raw, DOCKER-USER drops what lacks it",
     user(with_table(BASE_G27, "raw", MARK), "! -i docker0 -m mark ! --mark 0x10 -j DROP"), (),
     True, "ok"),
    ("no mark set, DOCKER-USER drops what lacks it",
     user(BASE_G27, "! -i docker0 -m mark ! --mark 0x10 -j DROP"), (), True, "dropped"),
    ("connmark set, DOCKER-USER drops it",
     user(with_table(BASE_G27, "mangle", CONNMARK), "-m connmark --mark 0x7 -j DROP"), (), True,
     "dropped"),
    ("mark saved to the connection, the reply dropped by connmark",
     user(with_table(BASE_G27, "mangle", MARK, SAVE), "-i docker0 -m connmark --mark 0x10 -j DROP"),
     (), True, "dropped"),
    ("the reply does not carry the packet's mark",
     user(with_table(BASE_G27, "mangle", MARK), "-i docker0 -m mark --mark 0x10 -j DROP"), (), True,
     "ok"),
    ("NOTRACK: docker-proxy answers",
     with_table(BASE_G27, "raw", "-A PREROUTING -p tcp -m tcp --dport 8080 -j NOTRACK"), (), True,
     "proxied"),
    ("CT --notrack without docker-proxy",
     with_table(BASE_G27, "raw", "-A PREROUTING -p tcp -m tcp --dport 8080 -j CT --notrack"), (),
     False, "unreachable"),
    ("catch-all MASQUERADE", nat("-A POSTROUTING -j MASQUERADE"), (), True, "masqueraded"),
    ("MASQUERADE out of the uplink only", nat("-A POSTROUTING -o eth0 -j MASQUERADE"), (), True, "ok"),
    ("tcpmss holding 1460 dropped", user(BASE_G27, "-p tcp -m tcpmss --mss 1400:1500 -j DROP"), (),
     True, "dropped"),
    ("tcpmss of tiny segments", user(BASE_G27, "-p tcp -m tcpmss --mss 1:500 -j DROP"), (), True, "ok"),
    ("TCPMSS lowers the SYN's MSS first",
     user(with_table(BASE_G27, "mangle", SYN_MSS), "-p tcp -m tcpmss --mss 1:500 -j DROP"), (), True,
     "dropped"),
    ("native nat prerouting before Docker's sends it to c2",
     BASE_G27, (native("prerouting", -150, "tcp dport 8080 dnat to 172.17.0.3:80", kind="nat"),),
     True, "misrouted"),
    ("native nat prerouting after Docker's: Docker's DNAT won",
     BASE_G27, (native("prerouting", -50, "tcp dport 8080 dnat to 172.17.0.3:80", kind="nat"),),
     True, "ok"),
    ("native notrack", BASE_G27, (native("prerouting", -300, "tcp dport 8080 notrack"),), True,
     "proxied"),
    ("native meta mark set, iptables DOCKER-USER drops it",
     user(BASE_G27, "-m mark --mark 0x10 -j DROP"),
     (native("prerouting", -300, "tcp dport 8080 meta mark set 0x10"),), True, "dropped"),
    ("native ct mark set after conntrack, the reply dropped by ct mark",
     BASE_G27, (native("prerouting", -150, "tcp dport 8080 ct mark set 0x7"), CT_MARK_DROP), True,
     "dropped"),
    ("native ct mark set before conntrack is lost",
     BASE_G27, (native("prerouting", -300, "tcp dport 8080 ct mark set 0x7"), CT_MARK_DROP), True,
     "ok"),
    ("CONNMARK in raw is lost",
     user(with_table(BASE_G27, "raw", CONNMARK), "-m connmark --mark 0x7 -j DROP"), (), True, "ok"),
    ("conntrack state in raw reads INVALID",
     with_table(BASE_G27, "raw", "-A PREROUTING -p tcp -m tcp --dport 8080 -m conntrack --ctstate INVALID -j DROP"),
     (), True, "dropped"),
    ("native masquerade towards the bridge",
     BASE_G27, (native("postrouting", 100, 'oifname "docker0" masquerade', kind="nat"),), True,
     "masqueraded"),
]  # fmt: skip


def judge(world: NatWorld, proxy: bool):
    rules, nft_error, warnings, net = world.read()
    assert nft_error == "" and not any("error" in w.lower() for w in warnings), warnings
    doc = web_doc(proxy, host_addresses=HOST_ADDRS)
    return port_report(analyse_doc(doc, rules["ipv4"], net=net), "web", 8080).verdict


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_exporter_says_what_a_real_client_gets(world, backend):
    failures = []
    for name, text, nft, proxy, want in SCENARIOS:
        world.set_proxy(proxy)
        world.load(backend, text, *nft)
        v = judge(world, proxy)
        seen = world.probe()
        if v.state != want or not agrees(v.state, seen):
            failures.append(f"{name}: exporter {v.state} (want {want}: {v.reason}), client {seen}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_match_of_chance_is_unknown_and_the_kernel_does_vary(world, backend):
    world.set_proxy(True)
    rule = "-m statistic --mode nth --every 2 --packet 0 -j DROP"
    world.load(backend, user(BASE_G27, f"-p tcp -m tcp --tcp-flags SYN,ACK SYN {rule}"))
    v = judge(world, True)
    assert v.state == "unknown", v
    assert "-m statistic --mode depends on chance" in v.reason, v
    seen = {world.probe() for _ in range(3)}
    assert seen == {"timeout", f"data:c1 from {CLIENT}"}, seen
