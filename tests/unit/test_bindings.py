"""Docker API JSON (container list, network list, /info, /version) to Bindings and the Daemon."""

from __future__ import annotations

import copy
import ipaddress

import pytest
from support.corefix import (
    HOST4,
    HOST6,
    container,
    d2010_doc,
    decode,
    default_networks,
    endpoint,
    firewall,
    hints,
    info,
    layout,
    network,
    port,
    proxy_argv,
    published,
    state_doc,
    version,
)

from exporter.docker.decode import DecodeError
from exporter.docker.model import (
    DESIGN_BLIND,
    DESIGN_DNAT,
    DESIGN_NONE,
    DESIGN_PROXY,
    DESIGN_ROUTED,
    engine_generation,
    parse_version,
)

BRIDGE = network("bridge", "172.17.0.0/16")
APPNET = network("appnet", "172.18.0.0/16", subnet6="fd00:18::/64")


def doc_with(containers, networks=None, engine="28.3.3", api="1.51", info_doc=None, hints_doc=None):
    nets = networks if networks is not None else [*default_networks(), APPNET]
    return state_doc(containers, nets, info_doc or info(engine), version(engine, api), hints_doc)


def bindings(*containers, **kw):
    return decode(doc_with(list(containers), **kw)).bindings


def only(bs):
    assert len(bs) == 1, bs
    return bs[0]


def test_real_2010_capture():
    state = decode(d2010_doc())
    assert state.daemon.version == "20.10.24+dfsg1" and state.daemon.api_version == "1.41"
    assert [c.name for c in state.containers] == ["api", "web"]  # noports and hostnet have none
    api = state.containers[0]
    assert (api.compose_project, api.compose_service, api.network_mode) == ("shop", "api", "appnet")
    got = [
        (
            b.container,
            b.network,
            b.bridge,
            b.family,
            b.protocol,
            b.host_ip,
            b.host_port,
            b.container_ip,
            b.container_port,
            b.design,
        )
        for b in state.bindings
    ]
    ip6 = DESIGN_PROXY  # 20.10: --ip6tables off by default, :: is docker-proxy's
    assert got == [
        (
            "api",
            "appnet",
            "br-a0cfae98a515",
            "ipv4",
            "tcp",
            "127.0.0.1",
            18081,
            "172.18.0.2",
            80,
            DESIGN_NONE,
        ),
        (
            "api",
            "appnet",
            "br-a0cfae98a515",
            "ipv4",
            "tcp",
            "0.0.0.0",
            18082,
            "172.18.0.2",
            8000,
            DESIGN_DNAT,
        ),
        ("api", "appnet", "br-a0cfae98a515", "ipv6", "tcp", "::", 18082, "", 8000, ip6),
        (
            "api",
            "appnet",
            "br-a0cfae98a515",
            "ipv4",
            "tcp",
            "0.0.0.0",
            18083,
            "172.18.0.2",
            8001,
            DESIGN_DNAT,
        ),
        ("api", "appnet", "br-a0cfae98a515", "ipv6", "tcp", "::", 18083, "", 8001, ip6),
        (
            "api",
            "appnet",
            "br-a0cfae98a515",
            "ipv4",
            "udp",
            "0.0.0.0",
            15353,
            "172.18.0.2",
            53,
            DESIGN_DNAT,
        ),
        ("api", "appnet", "br-a0cfae98a515", "ipv6", "udp", "::", 15353, "", 53, ip6),
        (
            "web",
            "bridge",
            "docker0",
            "ipv4",
            "tcp",
            "0.0.0.0",
            18080,
            "172.17.0.2",
            80,
            DESIGN_DNAT,
        ),
        ("web", "bridge", "docker0", "ipv6", "tcp", "::", 18080, "", 80, ip6),
    ]
    assert state.bindings[2].why == "--ip6tables=false: Docker writes no ipv6 rules"
    assert state.bindings[1].label == "api 0.0.0.0:18082/tcp"
    assert state.bindings[2].label == "api [::]:18082/tcp"


def test_port_ranges_protocols_and_host_addresses():
    ports = [port(p, p) for p in (9000, 9001, 9002)]  # -p 9000-9002:9000-9002
    ports += [port(40001, 80)]  # -p 40000-40010:80 allocates one host port: the actual one
    ports += published(5353, 53, "udp") + published(3868, 3868, "sctp")
    ports += [
        port(8053, 53, ip=HOST4),
        port(8054, 53, ip=HOST6),
        port(8443, 443, ip="127.0.0.1"),
        port(8444, 443, ip="::1"),
    ]
    web = container("web", ports, [endpoint(APPNET, "172.18.0.2", "fd00:18::2")])
    got = {(b.protocol, b.host_ip, b.host_port): b for b in bindings(web)}
    assert [k[2] for k in got if k[0] == "tcp" and k[1] == "0.0.0.0"] == [9000, 9001, 9002, 40001]
    assert got[("tcp", "0.0.0.0", 40001)].container_port == 80
    for proto in ("udp", "sctp"):
        b4 = next(b for (p, ip, _), b in got.items() if p == proto and ip == "0.0.0.0")
        b6 = next(b for (p, ip, _), b in got.items() if p == proto and ip == "::")
        assert (b4.family, b4.container_ip, b4.design) == ("ipv4", "172.18.0.2", DESIGN_DNAT)
        assert (b6.family, b6.container_ip, b6.design) == ("ipv6", "fd00:18::2", DESIGN_DNAT)
    specific = got[("tcp", HOST4, 8053)]
    assert (specific.family, specific.wildcard, specific.design) == ("ipv4", False, DESIGN_DNAT)
    specific6 = got[("tcp", HOST6, 8054)]
    assert (specific6.family, specific6.container_ip, specific6.design) == (
        "ipv6",
        "fd00:18::2",
        DESIGN_DNAT,
    )
    assert specific6.label == f"web [{HOST6}]:8054/tcp"
    for key in (("tcp", "127.0.0.1", 8443), ("tcp", "::1", 8444)):
        assert got[key].design == DESIGN_NONE and got[key].loopback
        assert "loopback" in got[key].why


def test_unpublished_and_unknown_protocol_ports():
    ports = [
        {"PrivatePort": 80, "Type": "tcp"},
        port(8080, 80, "tcp"),
        {"IP": "", "PrivatePort": 81, "PublicPort": 8081},
    ]
    ports.append(port(4789, 4789, "UDP"))
    ports.append(port(9999, 9999, "dccp"))
    web = container("web", ports, [endpoint(BRIDGE, "172.17.0.2")], mode="default")
    got = {b.host_port: b for b in bindings(web)}
    assert sorted(got) == [4789, 8080, 8081, 9999]  # the exposed-only 80 has no binding
    assert (got[8081].host_ip, got[8081].protocol) == ("0.0.0.0", "tcp")  # defaults
    assert got[4789].protocol == "udp"
    assert got[9999].design == DESIGN_BLIND and "'dccp'" in got[9999].why


def _multi(endpoints, engine, ports):
    """Container `web` on one network per (name, GwPriority, internal, ip4?, ip6?) entry."""
    nets, eps = [], []
    for i, (name, prio, internal, has4, has6) in enumerate(endpoints):
        net = network(
            name,
            f"172.{20 + i}.0.0/16" if has4 else None,
            subnet6=f"fd00:{20 + i}::/64" if has6 else None,
            internal=internal,
        )
        nets.append(net)
        ip4, ip6 = f"172.{20 + i}.0.2" if has4 else "", f"fd00:{20 + i}::2" if has6 else ""
        eps.append(endpoint(net, ip4, ip6, prio))
    web = container("web", ports, eps)
    got = bindings(web, networks=[*default_networks(), *nets], engine=engine)
    return {b.family: b for b in got}, {n["Name"]: "br-" + n["Id"][:12] for n in nets}


@pytest.mark.parametrize(
    ("endpoints", "want"),
    [
        # highest GwPriority wins, whatever the name
        ([("b", 0, False, True, True), ("a", -1, False, True, True), ("c", 5, False, True, False)], "c"),
        # then non-internal
        ([("a", 0, True, True, True), ("b", 0, False, True, False)], "b"),
        # then dual-stack
        ([("a", 0, False, True, False), ("b", 0, False, True, True)], "b"),
        # then the smallest name
        ([("zeta", 0, False, True, True), ("alpha", 0, False, True, True)], "alpha"),
        # GwPriority absent (API < 1.48) counts as 0
        ([("b", None, False, True, False), ("a", None, False, True, False)], "a"),
    ],
)  # fmt: skip
def test_gateway_endpoint_choice_before_28(endpoints, want):
    """Up to 27 one gateway endpoint, the first in libnetwork's Endpoint.Less order, takes
    every port mapping."""
    got, bridges = _multi(endpoints, "27.5.1", [port(8080, 80)])
    assert (got["ipv4"].network, got["ipv4"].bridge) == (want, bridges[want])


@pytest.mark.parametrize(
    ("endpoints", "want4", "want6"),
    [
        # real 28.5.2 (tests/fixtures/d28g28_*): the first dual-stack endpoint takes both
        # families, even over an IPv4-only one with a higher GwPriority
        ([("bridge", 1, False, True, False), ("appnet", 0, False, True, True)], "appnet", "appnet"),
        ([("b", 0, False, True, True), ("a", -1, False, True, True), ("c", 5, False, True, False)], "b", "b"),
        # between IPv4-only networks GwPriority decides (also seen on 28.5.2)
        ([("bridge", 0, False, True, False), ("v4net", 1, False, True, False)], "v4net", "v4net"),
        ([("zeta", 0, False, True, False), ("alpha", 0, False, True, False)], "alpha", "alpha"),
        # without a dual-stack endpoint each family has its own gateway
        ([("v4", 1, False, True, False), ("v6", 0, False, False, True)], "v4", "v6"),
        # an internal network has no gateway, dual-stack or not
        ([("a", 5, True, True, True), ("b", 0, False, True, False)], "b", "b"),
        # only an internal network: its endpoint, where Docker publishes nothing
        ([("a", 0, True, True, False)], "a", "a"),
    ],
)  # fmt: skip
def test_gateway_endpoint_choice_from_28_is_per_family(endpoints, want4, want6):
    got, _ = _multi(endpoints, "28.5.2", published(8080, 80))
    assert (got["ipv4"].network, got["ipv6"].network) == (want4, want6)


@pytest.mark.parametrize("mode", ["host", "none", "container:0123456789ab"])
def test_network_modes_without_own_ports(mode):
    # the API lists no ports for these; even if it did, no rules belong to them
    c = container("c", [port(8080, 80)], [endpoint(BRIDGE, "172.17.0.2")], mode=mode)
    state = decode(doc_with([c]))
    assert state.bindings == () and state.containers == ()


def test_container_without_published_ports():
    state = decode(doc_with([container("quiet", [], [endpoint(BRIDGE, "172.17.0.3")])]))
    assert state.bindings == () and state.containers == ()


def test_container_without_network_endpoints():
    b = only(bindings(container("odd", [port(8080, 80)], [], mode="bridge")))
    assert b.design == DESIGN_BLIND and "network driver 'unknown'" in b.why


@pytest.mark.parametrize(
    ("net", "want", "why"),
    [
        (network("int", "172.30.0.0/16", internal=True), DESIGN_NONE, "internal network"),
        (network("rt", "172.30.0.0/16", gw4="routed"), DESIGN_ROUTED, "gateway mode routed"),
        (network("iso", "172.30.0.0/16", gw4="isolated"), DESIGN_NONE, "gateway mode isolated"),
        (network("nu", "172.30.0.0/16", gw4="nat-unprotected"), DESIGN_DNAT, ""),
        (network("rt6", "172.30.0.0/16", gw6="routed"), DESIGN_DNAT, ""),  # IPv4 is still NAT
        (
            network("mv", "172.30.0.0/16", driver="macvlan"),
            DESIGN_BLIND,
            "network driver 'macvlan'",
        ),
    ],
)
def test_network_kinds(net, want, why):
    c = container("c", [port(8080, 80)], [endpoint(net, "172.30.0.2")])
    b = only(bindings(c, networks=[*default_networks(), net]))
    assert b.design == want and why in b.why


def test_gateway_mode_per_family():
    net = network("rt6", "172.30.0.0/16", subnet6="fd00:30::/64", gw6="routed")
    c = container("c", published(8080, 80), [endpoint(net, "172.30.0.2", "fd00:30::2")])
    got = {b.family: b.design for b in bindings(c, networks=[*default_networks(), net])}
    assert got == {"ipv4": DESIGN_DNAT, "ipv6": DESIGN_ROUTED}


def test_bridge_names():
    nets = {n.name: n for n in decode(layout("g29")[0]).networks}
    assert nets["bridge"].bridge == "docker0"
    assert nets["appnet"].bridge == "br-" + nets["appnet"].id[:12]
    assert nets["routednet"].bridge == "routed1"
    assert nets["host"].bridge == "" and nets["none"].bridge == ""
    assert (nets["routednet"].gateway_mode4, nets["unprotnet"].gateway_mode4) == (
        "routed",
        "nat-unprotected",
    )
    assert nets["intnet"].internal and nets["appnet"].subnets6 == ("fd00:18::/64",)
    assert nets["appnet"].enable_ipv4 and nets["appnet"].enable_ipv6


def test_ipv4_only_container_on_ipv6_address():
    c = container("c", published(8080, 80), [endpoint(BRIDGE, "172.17.0.2")])
    b6 = next(b for b in bindings(c) if b.family == "ipv6")
    assert b6.design == DESIGN_PROXY and b6.container_ip == ""
    assert "IPv4-only container on an ipv6 address" in b6.why


def test_ipv6_only_network():
    net = network("v6only", subnet6="fd00:40::/64", enable_ipv4=False)
    c = container("c", published(8080, 80), [endpoint(net, "", "fd00:40::2")])
    got = {b.family: b for b in bindings(c, networks=[*default_networks(), net])}
    assert got["ipv6"].design == DESIGN_DNAT
    assert got["ipv4"].design == DESIGN_PROXY and "IPv6-only container" in got["ipv4"].why


# --- the daemon -----------------------------------------------------------------------------

WEB = container("web", published(8080, 80), [endpoint(APPNET, "172.18.0.2", "fd00:18::2")])


def daemon(engine="28.3.3", info_doc=None, hints_doc=None):
    return decode(doc_with([WEB], engine=engine, info_doc=info_doc, hints_doc=hints_doc)).daemon


@pytest.mark.parametrize(
    ("cmdline", "flag", "want"),
    [
        (["dockerd", "--iptables=false"], "iptables", False),
        (["dockerd", "--iptables", "false"], "iptables", False),
        (["dockerd", "--iptables"], "iptables", True),
        (["dockerd"], "iptables", True),
        (["dockerd", "--ip6tables=false"], "ip6tables", False),
        (["dockerd", "--iptables=false", "--ip6tables=true"], "ip6tables", False),  # needs iptables
    ],
)
def test_iptables_flags(cmdline, flag, want):
    assert getattr(daemon(hints_doc=hints(cmdline=cmdline)), flag) is want


@pytest.mark.parametrize(
    ("engine", "daemon_json", "want"),
    [
        ("26.1.4", None, False),
        ("27.0.1", None, True),
        ("26.1.4", {"ip6tables": True}, True),
        ("28.3.3", {"ip6tables": False}, False),
    ],
)
def test_ip6tables_default_follows_the_engine(engine, daemon_json, want):
    d = daemon(engine, hints_doc=hints(cmdline=["dockerd"], daemon_json=daemon_json))
    assert d.ip6tables is want


def test_iptables_false_makes_every_binding_proxy_only():
    doc = doc_with([WEB], hints_doc=hints(cmdline=["dockerd", "--iptables=false"]))
    bs = decode(doc).bindings
    assert {b.design for b in bs} == {DESIGN_PROXY}
    assert all(b.why.startswith("--iptables=false") for b in bs)


def test_rootless():
    doc = doc_with([WEB], info_doc=info("28.3.3", rootless=True))
    state = decode(doc)
    assert state.daemon.rootless
    assert {b.design for b in state.bindings} == {DESIGN_BLIND}
    assert all("rootless" in b.why and "RootlessKit" in b.why for b in state.bindings)


@pytest.mark.parametrize(
    ("info_doc", "hints_doc", "want", "source"),
    [
        # 29.5+: the API says it, and wins over everything else
        (
            info("29.5.1", firewall=firewall(EnableUserlandProxy="false")),
            hints(cmdline=["dockerd", "--userland-proxy=true"]),
            False,
            "api",
        ),
        (info("29.5.1", firewall=firewall(EnableUserlandProxy="true")), hints(), True, "api"),
        # the command line, in its three spellings, wins over daemon.json
        (
            info(),
            hints(
                cmdline=["dockerd", "--userland-proxy=false"], daemon_json={"userland-proxy": True}
            ),
            False,
            "cmdline",
        ),
        (info(), hints(cmdline=["dockerd", "--userland-proxy", "false"]), False, "cmdline"),
        (info(), hints(cmdline=["dockerd", "--userland-proxy"]), True, "cmdline"),
        (
            info(),
            hints(cmdline=["dockerd"], daemon_json={"userland-proxy": False}),
            False,
            "daemon.json",
        ),
        (info(), hints(daemon_json={"userland-proxy": "false"}), False, "daemon.json"),
        # docker-proxy children of the daemon prove it on
        (
            info(),
            hints(proxy_argvs=[proxy_argv("tcp", "0.0.0.0", 8080, "172.18.0.2", 80)]),
            True,
            "processes",
        ),
        # the command line was read and says nothing: Docker's default
        (info(), hints(cmdline=["dockerd", "-H", "fd://"], proxy_argvs=[]), True, "default"),
        # nothing known
        (info(), hints(), None, "unknown"),
        (info(), hints(proxy_argvs=[]), None, "unknown"),
    ],
)
def test_userland_proxy_detection(info_doc, hints_doc, want, source):
    d = daemon(info_doc=info_doc, hints_doc=hints_doc)
    assert (d.userland_proxy, d.userland_proxy_source) == (want, source)


def test_proxy_endpoints_from_processes():
    argvs = [
        proxy_argv("tcp", "0.0.0.0", 8080, "172.18.0.2", 80),
        proxy_argv("udp", "::", 5353, "fd00:18::2", 53),
        ["/usr/bin/docker-proxy", "-proto=sctp", "-host-ip=127.0.0.1", "-host-port=3868"],
        ["/usr/bin/docker-proxy", "-host-port", "not-a-port"],
        ["/usr/bin/docker-proxy"],
    ]
    d = daemon(hints_doc=hints(proxy_argvs=argvs))
    assert d.proxy_endpoints == {
        ("tcp", "0.0.0.0", 8080),
        ("udp", "::", 5353),
        ("sctp", "127.0.0.1", 3868),
    }
    assert daemon(hints_doc=hints()).proxy_endpoints is None  # processes not visible


def test_firewall_backend_and_reload_time():
    fw = firewall("iptables+firewalld", ReloadedAt="2026-11-26T10:00:00.123456789Z")
    d = daemon(info_doc=info("28.3.3", firewall=fw))
    assert d.firewall_backend == "iptables+firewalld" and d.generation == "g28"
    assert d.firewalld_reloaded_at == pytest.approx(1795687200.123456)
    assert daemon().firewall_backend == "iptables" and daemon().firewalld_reloaded_at is None


@pytest.mark.parametrize(
    ("engine", "backend", "gen"),
    [
        ("20.10.24+dfsg1", "", "g27"),
        ("23.0.6", "", "g27"),
        ("27.5.1", "iptables", "g27"),
        ("28.0.0", "", "g28.0"),
        ("28.0.0-rc.1", "", "g28.0"),
        ("28.0.1", "", "g28"),
        ("28.5.2", "iptables+firewalld", "g28"),
        ("29.0.0", "iptables", "g29"),
        ("29.5.1", "iptables", "g29"),
        ("29.5.1", "nftables", "nftables"),
        ("29.5.1", "nftables+firewalld", "nftables"),
        ("", "", "g27"),
    ],
)
def test_engine_generation(engine, backend, gen):
    assert engine_generation(engine, backend) == gen


def test_parse_version():
    assert parse_version("20.10.24+dfsg1") == (20, 10, 24)
    assert parse_version("28.0.0-rc.1") == (28, 0, 0)
    assert parse_version("29") == (29, 0, 0)
    assert parse_version("garbage") == (0, 0, 0)


def test_version_endpoint_wins_over_info():
    doc = doc_with([WEB], engine="28.3.3")
    doc["info"]["ServerVersion"] = "99.0.0"
    assert decode(doc).daemon.version == "28.3.3"
    del doc["version"]["Version"]
    assert decode(doc).daemon.version == "99.0.0"


# --- malformed answers: a DecodeError naming the field, never anything else -----------------

BAD_VALUES = [None, "x", 7, 2.5, True, [], {}, ["x"], {"a": 1}]


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:2]):
            yield from _paths(v, (*prefix, i))


def _mutations():
    doc = layout("g28")[0]
    for part in ("containers", "networks", "info", "version"):
        for path in _paths(doc[part]):
            yield part, path


@pytest.mark.parametrize(
    ("part", "path"),
    list(_mutations()),
    ids=lambda x: "/".join(map(str, x)) if isinstance(x, tuple) else x,
)
def test_malformed_fields_raise_decode_error_only(part, path):
    base = layout("g28")[0]
    for bad in BAD_VALUES:
        doc = copy.deepcopy(base)
        if not path:
            doc[part] = bad
        else:
            obj = doc[part]
            for k in path[:-1]:
                obj = obj[k]
            obj[path[-1]] = bad
        try:
            decode(doc)
        except DecodeError as exc:
            assert str(exc)  # a message, for the source's error


@pytest.mark.parametrize(
    "value",
    ["0.0.0.0", "10.100.0.2", "255.255.255.255", "1.2.3.04", "01.2.3.4", "256.1.1.1", "1.2.3",
     "1.2.3.4.5", " 1.2.3.4", "1.2.3.4\n", "١.2.3.4", "1.2.3.4/32", "", "::1", "fe80::1%eth0",
     "2001:db8::g"],
)  # fmt: skip
def test_addresses_checked_as_ipaddress_checks_them(value):
    # the dotted-quad shortcut accepts exactly what ipaddress accepts, and nothing else
    try:
        ipaddress.ip_address(value)
        valid = True
    except ValueError:
        valid = False
    doc = layout("g28")[0]
    c = next(c for c in doc["containers"] if c["Names"] == ["/diameter"])  # one endpoint
    c["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] = value
    if valid or not value:  # "": no address of this family
        got = {b.container_ip for b in decode(doc).bindings if b.container == "diameter"}
        assert value in got
    else:
        with pytest.raises(DecodeError, match="not an IP address"):
            decode(doc)
