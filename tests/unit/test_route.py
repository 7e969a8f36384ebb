"""Links, routes, policy rules and forwarding switches (issue 13): parsed from `ip -j` output
and /proc, and what they make of a translated connection. tests/kernel/test_route_kernel.py
checks the same against real connections."""

from __future__ import annotations

from dataclasses import replace

import pytest
from support.corefix import BASE_G27, HOST4, port_report, raw, web_doc, web_verdict, with_table

from exporter.netstate import (
    NetState,
    Route,
    from_doc,
    parse_links,
    parse_routes,
    parse_rules,
    to_doc,
)
from exporter.path.route import Routing, forwarding_off
from exporter.readings import Readings
from exporter.serve.snapshot import assess
from exporter.sources.hostnet import read_netstate
from exporter.sources.saved import read_saved, save_state

# Real `ip -j` output (iproute2 6.x) of a host with docker0, a VPN's rules and a blackhole.
LINKS = (
    '[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"operstate":"UNKNOWN"},'
    '{"ifindex":2,"ifname":"docker0","flags":["NO-CARRIER","BROADCAST","MULTICAST","UP"],'
    '"operstate":"DOWN"},{"ifindex":3,"ifname":"br-x","flags":["BROADCAST","MULTICAST"],'
    '"operstate":"DOWN"}]'
)
ROUTES4 = (
    '[{"dst":"default","gateway":"192.0.2.254","dev":"eth0","flags":[]},'
    '{"dst":"172.17.0.0/16","dev":"docker0","protocol":"kernel","scope":"link",'
    '"prefsrc":"172.17.0.1","flags":["linkdown"]},{"type":"blackhole","dst":"198.51.100.0/24",'
    '"flags":[]},{"type":"local","dst":"127.0.0.1","dev":"lo","table":"local","flags":[]},'
    '{"type":"broadcast","dst":"172.17.255.255","dev":"docker0","table":"local","flags":[]},'
    '{"dst":"172.17.0.0/16","dev":"wg0","table":"51820","flags":[]}]'
)
RULES4 = (
    '[{"priority":0,"src":"all","table":"local"},{"priority":32764,"src":"all","table":"main",'
    '"suppress_prefixlen":0},{"priority":32765,"not":null,"src":"all","fwmark":"0xca6c",'
    '"table":"51820"},{"priority":32766,"src":"all","table":"main"},'
    '{"priority":32767,"src":"all","table":"default"}]'
)


def test_parsers_read_real_ip_json():
    assert parse_links(LINKS) == {"lo": True, "docker0": True, "br-x": False}
    routes = parse_routes(ROUTES4, "ipv4")
    assert routes[0] == Route("0.0.0.0/0", "eth0", gateway="192.0.2.254")
    assert routes[1] == Route("172.17.0.0/16", "docker0")  # linkdown: still used
    assert routes[2].kind == "blackhole" and routes[3] == Route(
        "127.0.0.1/32", "lo", "local", "local"
    )
    assert [r.dst for r in routes].count("172.17.255.255/32") == 0  # broadcast left out
    rules = parse_rules(RULES4, "ipv4")
    assert [r.priority for r in rules] == [0, 32764, 32765, 32766, 32767]
    assert rules[1].suppress_prefixlen == 0
    assert (rules[2].invert, rules[2].fwmark, rules[2].table) == (True, 0xCA6C, "51820")
    assert rules[2].text == "32765: not from all fwmark 0xca6c/0xffffffff lookup 51820"
    assert parse_links("not json") == {} and parse_routes("{}", "ipv4") == ()


def test_read_netstate_reads_the_forwarding_switches(tmp_path):
    for v, name, key, value in (("ipv4", "all", "forwarding", "1"), ("ipv4", "eth0", "forwarding", "0"),
                                ("ipv6", "all", "forwarding", "1"), ("ipv6", "eth0", "force_forwarding", "0"),
                                ("ipv6", "lo", "forwarding", "1")):  # fmt: skip
        d = tmp_path / v / "conf" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / key).write_text(value + "\n")
    net = read_netstate(5.0, str(tmp_path / "{v}" / "conf"))
    assert net.forwarding["ipv4"] == {"all": True, "eth0": False}
    assert net.forwarding["ipv6"] == {"all": True, "eth0": False}  # lo has no force_forwarding


HEALTHY = NetState(
    {"lo": True, "eth0": True, "docker0": True},
    {"ipv4": parse_routes(ROUTES4, "ipv4")},
    {"ipv4": parse_rules(RULES4, "ipv4")},
    {"ipv4": {"all": True, "eth0": True, "docker0": True}},
)


def verdict(net: NetState, text: str = BASE_G27, **kw):
    return web_verdict(text, net=net, **kw)


def routes_with(*extra: str) -> dict:
    json = ROUTES4[:-1] + "," + ",".join(extra) + "]"
    return {"ipv4": parse_routes(json, "ipv4")}


CASES = [
    ("healthy, the VPN's rules included", HEALTHY, "ok", "DNAT by nat/DOCKER #2"),
    ("docker0 administratively down", replace(HEALTHY, links={**HEALTHY.links, "docker0": False}),
     "unreachable", "bridge docker0 is down"),
    ("a more specific route sends the subnet into the VPN",
     replace(HEALTHY, routes=routes_with('{"dst":"172.17.0.0/24","dev":"wg0","flags":[]}')),
     "unreachable", "the host routes 172.17.0.2 via wg0 (`172.17.0.0/24 dev wg0`), not to bridge docker0"),
    ("a blackhole for the container",
     replace(HEALTHY, routes=routes_with('{"type":"blackhole","dst":"172.17.0.2","flags":[]}')),
     "unreachable", "the host's route `blackhole 172.17.0.2/32` discards it"),
    ("no route at all", replace(HEALTHY, routes={"ipv4": ()}), "unreachable",
     "the host has no route to 172.17.0.2"),
    ("the route's next hop is dead, the default route takes it",
     replace(HEALTHY, routes={"ipv4": (Route("172.17.0.0/16", "docker0", dead=True),
                                       Route("0.0.0.0/0", "eth0"))}),
     "unreachable", "via eth0"),
    ("the uplink does not forward (systemd-networkd IPForward=no)",
     replace(HEALTHY, forwarding={"ipv4": {"all": True, "eth0": False, "docker0": True}}),
     "dropped", "not forwarded: net.ipv4.conf.eth0.forwarding=0"),
    ("the bridge does not forward: the replies stay",
     replace(HEALTHY, forwarding={"ipv4": {"all": True, "eth0": True, "docker0": False}}),
     "dropped", "the container's replies are not forwarded: net.ipv4.conf.docker0.forwarding=0"),
    ("another interface not forwarding changes nothing",
     replace(HEALTHY, forwarding={"ipv4": {"all": True, "eth0": True, "docker0": True, "eth1": False}}),
     "ok", "DNAT"),
]  # fmt: skip


@pytest.mark.parametrize(("net", "state", "part"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_links_routes_and_forwarding(net, state, part):
    v = verdict(net)
    assert v.state == state, v
    assert part in v.reason, v


def test_codes_say_which():
    down = verdict(replace(HEALTHY, links={**HEALTHY.links, "docker0": False}))
    assert (down.code, down.owner) == ("bridge_down", "host")
    vpn = verdict(
        replace(HEALTHY, routes=routes_with('{"dst":"172.17.0.2","dev":"tun0","flags":[]}'))
    )
    assert vpn.code == "routed_elsewhere"
    assert verdict(replace(HEALTHY, routes={"ipv4": ()})).code == "no_route"


# --- policy routing by mark: the mark the walk carries decides the table ---------------------

MARK_RULE = '{"priority":100,"src":"all","fwmark":"0x10","table":"7"}'
TABLE7 = '{"dst":"172.17.0.0/16","dev":"tun0","table":"7","flags":[]}'
MARKED = replace(
    HEALTHY,
    routes=routes_with(TABLE7),
    rules={"ipv4": parse_rules(RULES4[:-1] + "," + MARK_RULE + "]", "ipv4")},
)
SET_MARK = "-A PREROUTING -p tcp -m tcp --dport 8080 -j MARK --set-xmark 0x10/0xffffffff"


def test_a_mark_set_in_mangle_picks_the_routing_table():
    assert verdict(MARKED).state == "ok"  # unmarked: rule 100 does not apply
    v = verdict(MARKED, with_table(BASE_G27, "mangle", SET_MARK))
    assert v.state == "unreachable" and "via tun0" in v.reason, v


def test_a_mark_that_cannot_be_told_makes_the_fwmark_rule_unknown():
    maybe = SET_MARK.replace("-j MARK", "-m limit --limit 1/sec -j MARK")
    v = verdict(MARKED, with_table(BASE_G27, "mangle", maybe))
    assert (v.state, v.code) == ("unknown", "route_undecidable"), v
    assert "ip rule `100: from all fwmark 0x10/0xffffffff lookup 7`" in v.reason


def test_a_rule_by_source_splits_the_clients():
    by_src = '{"priority":100,"src":"10.0.0.0","srclen":8,"table":"7"}'
    net = replace(MARKED, rules={"ipv4": parse_rules(RULES4[:-1] + "," + by_src + "]", "ipv4")})
    v = verdict(net)
    bad = [c for c in v.classes if c.state == "unreachable"]
    assert [repr(c.sources) for c in bad] == ["Sources(10.0.0.0/8)"], v.classes
    assert v.state == "unreachable" and v.reason.startswith("from 10.0.0.0/8:"), v


def test_ipv6_forwards_unless_all_is_off_or_forced_per_interface():
    on = Routing(NetState({}, {}, {}, {"ipv6": {"all": True, "eth0": False}}))
    assert forwarding_off(on, "ipv6", "eth0") is None  # conf.eth0.forwarding does not gate IPv6
    off = Routing(NetState({}, {}, {}, {"ipv6": {"all": False, "eth0": True}}))
    assert forwarding_off(off, "ipv6", "eth0") is None  # force_forwarding on eth0
    assert forwarding_off(off, "ipv6", "eth1") == "net.ipv6.conf.all.forwarding=0"
    assert forwarding_off(Routing(None, False), "ipv4", "eth0") == "net.ipv4.ip_forward=0"


def test_nothing_read_judges_nothing():
    assert verdict(None).state == "ok"
    unread = NetState({}, {}, {}, {})
    assert verdict(unread).state == "ok"
    doc = web_doc(host_addresses=(("eth0", HOST4),))
    assert web_verdict(BASE_G27, doc, net=unread).state == "ok"


def test_the_saved_state_keeps_the_network_and_check_judges_it(tmp_path):
    down = replace(MARKED, links={**MARKED.links, "docker0": False})
    assert from_doc(to_doc(down)) == down
    assert from_doc(None) is None and from_doc({"links": {}}) is None
    state, rules = tmp_path / "state.json", tmp_path / "iptables.txt"
    doc = web_doc(host_addresses=(("eth0", HOST4),))
    save_state(str(state), Readings(0.0, raw(doc), "", {}, (("eth0", HOST4),), net=down))
    rules.write_text(BASE_G27)
    r = read_saved(str(state), str(rules), None, None)
    assert r.net == down
    v = port_report(assess(r), "web", 8080).verdict
    assert (v.state, v.code) == ("unreachable", "bridge_down"), v
