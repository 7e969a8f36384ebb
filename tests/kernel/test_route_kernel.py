"""Real connections judge link, route and forwarding state (issue 13): a bridge that is down,
a more specific route or a blackhole for the container's subnet, policy routing by mark or by
source, and per-interface forwarding switches.

Docker 20.10's rules for `docker run -p 8080:80` (corefix.BASE_G27, iptables-nft) stay loaded in
the host of support.natworld; each scenario changes the host's network with `ip`/`sysctl`, the
exporter reads links, routes, rules and switches with its own source (sources.hostnet) in that
namespace, and the client connects. The verdict for the client's own source class must be the
expected one and agree with what the client got; every change is undone afterwards.

Needs root, ip, nft and iptables-nft (CI=true: fails instead of skipping).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.corefix import (
    BASE_G27,
    analyse_doc,
    container,
    endpoint,
    hints,
    info,
    network,
    port_report,
    published,
    state_doc,
    version,
    web_doc,
    with_table,
)
from support.natworld import (
    C1,
    C1_6,
    CLIENT,
    CLIENT6,
    HOST6,
    HOST_ADDRS,
    NatWorld,
    agrees,
    running,
)

pytestmark = pytest.mark.kernel

MARK = "-A PREROUTING -p tcp -m tcp --dport 8080 -j MARK --set-xmark 0x10/0xffffffff"
VPN = [("ip", "link", "add", "vpn0", "type", "veth", "peer", "name", "vpn1"),
       ("ip", "link", "set", "vpn0", "up"), ("ip", "link", "set", "vpn1", "up")]  # fmt: skip
NO_VPN = [("ip", "link", "del", "vpn0")]
SYSCTL = "sysctl", "-qw"

# (id, rules, commands, undo, state of the client's class)
SCENARIOS = [
    ("healthy", BASE_G27, [], [], "ok"),
    ("docker0 down", BASE_G27, [("ip", "link", "set", "docker0", "down")],
     [("ip", "link", "set", "docker0", "up")], "unreachable"),
    ("a VPN's more specific route takes the subnet",
     BASE_G27, [*VPN, ("ip", "route", "add", "172.17.0.0/24", "dev", "vpn0")], NO_VPN, "unreachable"),
    ("a less specific route elsewhere changes nothing",
     BASE_G27, [*VPN, ("ip", "route", "add", "172.16.0.0/12", "dev", "vpn0")], NO_VPN, "ok"),
    ("a blackhole for the container",
     BASE_G27, [("ip", "route", "add", "blackhole", "172.17.0.2/32")],
     [("ip", "route", "del", "blackhole", "172.17.0.2/32")], "unreachable"),
    ("the uplink does not forward", BASE_G27, [(*SYSCTL, "net.ipv4.conf.eth0.forwarding=0")],
     [(*SYSCTL, "net.ipv4.conf.eth0.forwarding=1")], "dropped"),
    ("the bridge does not forward", BASE_G27, [(*SYSCTL, "net.ipv4.conf.docker0.forwarding=0")],
     [(*SYSCTL, "net.ipv4.conf.docker0.forwarding=1")], "dropped"),
    ("marked packets are routed into the VPN",
     with_table(BASE_G27, "mangle", MARK),
     [*VPN, ("ip", "route", "add", "172.17.0.0/16", "dev", "vpn0", "table", "7"),
      ("ip", "rule", "add", "fwmark", "0x10", "lookup", "7", "priority", "100")],
     [("ip", "rule", "del", "priority", "100"), *NO_VPN], "unreachable"),
    ("the same rule, nothing marked", BASE_G27,
     [*VPN, ("ip", "route", "add", "172.17.0.0/16", "dev", "vpn0", "table", "7"),
      ("ip", "rule", "add", "fwmark", "0x10", "lookup", "7", "priority", "100")],
     [("ip", "rule", "del", "priority", "100"), *NO_VPN], "ok"),
    ("the client's own source is routed into the VPN", BASE_G27,
     [*VPN, ("ip", "route", "add", "172.17.0.0/16", "dev", "vpn0", "table", "7"),
      ("ip", "rule", "add", "from", f"{CLIENT}/32", "lookup", "7", "priority", "100")],
     [("ip", "rule", "del", "priority", "100"), *NO_VPN], "unreachable"),
    ("other sources are routed into the VPN", BASE_G27,
     [*VPN, ("ip", "route", "add", "172.17.0.0/16", "dev", "vpn0", "table", "7"),
      ("ip", "rule", "add", "from", "10.0.0.0/8", "lookup", "7", "priority", "100")],
     [("ip", "rule", "del", "priority", "100"), *NO_VPN], "ok"),
]  # fmt: skip


@pytest.fixture(scope="module")
def world() -> Iterator[NatWorld]:
    with running() as w:
        yield w


def client_class(v):
    """The verdict's class holding the real client's address (the whole verdict when one)."""
    for c in v.classes:
        if c.sources.contains(CLIENT) or c.sources.contains(CLIENT6):
            return c
    return v


@pytest.mark.slow
def test_the_exporter_says_what_a_real_client_gets(world):
    world.set_proxy(True)
    failures = []
    for name, text, commands, undo, want in SCENARIOS:
        world.load("nft", text)
        for cmd in commands:
            world.host.run(list(cmd))
        try:
            rules, _, _, net = world.read()
            assert not net.errors, net.errors
            snap = analyse_doc(web_doc(True, host_addresses=HOST_ADDRS), rules["ipv4"], net=net)
            v = port_report(snap, "web", 8080).verdict
            mine = client_class(v)
            seen = world.probe()
        finally:
            for cmd in undo:
                world.host.run(list(cmd))
        if mine.state != want or not agrees(mine.state, seen):
            failures.append(
                f"{name}: exporter {mine.state} (want {want}: {mine.reason}), client {seen}"
            )
    assert not failures, "\n".join(failures)


# --- IPv6: only the global switch (or an interface's force_forwarding) gates forwarding ---

NAT6 = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination [2001:db8:b1::2]:80
COMMIT
"""
SCENARIOS6 = [
    ("healthy", [], [], "ok"),
    ("the uplink's conf.eth0.forwarding=0 does not stop IPv6",
     [(*SYSCTL, "net.ipv6.conf.eth0.forwarding=0")], [(*SYSCTL, "net.ipv6.conf.eth0.forwarding=1")],
     "ok"),
    ("all.forwarding=0 does", [(*SYSCTL, "net.ipv6.conf.all.forwarding=0")],
     [(*SYSCTL, "net.ipv6.conf.all.forwarding=1")], "dropped"),
    ("a more specific route takes the container's addresses",
     [*VPN, ("ip", "-6", "route", "add", "2001:db8:b1::/80", "dev", "vpn0")], NO_VPN, "unreachable"),
]  # fmt: skip


def dual_stack_doc() -> dict:
    """web on docker0 with 172.17.0.2 and 2001:db8:b1::2, publishing 8080->80 on both families,
    Docker 27 with ip6tables on."""
    bridge = network("bridge", "172.17.0.0/16", subnet6="2001:db8:b1::/64")
    web = container("web", published(8080, 80), [endpoint(bridge, C1, C1_6)], mode="default")
    nets = [network("none", driver="null"), network("host", driver="host"), bridge]
    argv = ["/usr/bin/dockerd", "--ipv6", "--ip6tables"]
    h = hints(cmdline=argv, daemon_json={"ipv6": True, "ip6tables": True})
    return state_doc([web], nets, info("27.5.1"), version("27.5.1", "1.47"), h, HOST_ADDRS)


@pytest.mark.slow
def test_ipv6_forwarding_as_the_kernel_does_it(world):
    world.set_proxy(False)
    failures = []
    for name, commands, undo, want in SCENARIOS6:
        world.load("nft", BASE_G27, text6=NAT6)
        for cmd in commands:
            world.host.run(list(cmd))
        try:
            rules, _, _, net = world.read()
            snap = analyse_doc(dual_stack_doc(), rules["ipv4"], rules["ipv6"], net=net)
            v = client_class(port_report(snap, "web", 8080, "ipv6").verdict)
            seen = world.probe(HOST6).replace(CLIENT6, CLIENT)  # agrees() knows the v4 client
        finally:
            for cmd in undo:
                world.host.run(list(cmd))
        if v.state != want or not agrees(v.state, seen):
            failures.append(f"{name}: exporter {v.state} (want {want}: {v.reason}), client {seen}")
    assert not failures, "\n".join(failures)
