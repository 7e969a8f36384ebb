"""End to end: `check`'s verdicts agree with what a real external client gets (issue 2).

Each scenario changes the rules of a real dockerd (tests/support/lab.py), runs `python -m exporter check
--json` inside the Docker host's namespace, and asks the external client (192.0.2.2) to fetch the
port: the verdict must be the expected one and the client's experience one it allows
(tests/support/labcheck.py). Rule changes are undone after each test. Three daemons per engine: the
module's default lab (nft, userland proxy on), one with `--userland-proxy=false`, one in the legacy
backend. The module runs once per engine (20.10, 26, 28; tests/conftest.py `every_engine`); where the
engines' layouts differ (28: DOCKER-FORWARD, DOCKER-BRIDGE, a per-network DROP in DOCKER, raw
DROPs), the expectations say so.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from support.lab import CLIENT_ADDR, IMAGE, Lab
from support.labcheck import (
    NONE,
    OTHER,
    assert_agrees,
    assert_table_row,
    delete_rule,
    experience,
    restored,
    run_check,
    run_two_port_web,
    save_lines,
)
from support.util import require_lab

pytestmark = [pytest.mark.lab, pytest.mark.every_engine]

WEB, OTHER_WEB, APP_WEB = "web", "other", "appweb"
WEB_PORT, OTHER_PORT, APP_PORT = 18080, 18085, 18090
HOST_NET, IDLE, LOOPBACK, RANGE, RANGE2 = "hostweb", "idle", "loweb", "rng", "rng2"
HOST_NET_PORT, LOOPBACK_PORT = 18097, 18096
ONE_IP, ONE_IP_PORT = "ipweb", 18130  # published on the host's external address only
INTERNAL, INTERNAL_PORT = "intweb", 18150
# on docker0, then connected to a second network whose name sorts before / after "bridge"
MOVED, MOVED_PORT, STAYED, STAYED_PORT = "dual1", 18140, "dual2", 18141
RANGE_PORTS, RANGE2_PORTS = (18100, 18101), (18110, 18111)


@dataclass(frozen=True)
class Site:
    """The default lab with its containers, and the facts scenarios need about them."""

    lab: Lab
    web_ip: str
    other_ip: str
    app_bridge: str
    nowhere: str  # an address on docker0's subnet that no container has


@pytest.fixture(scope="module")
def site(lab: Lab) -> Site:
    lab.run_web(WEB, WEB_PORT)
    lab.run_web(OTHER_WEB, OTHER_PORT)
    lab.docker("network", "create", "appnet")
    lab.run_web(APP_WEB, APP_PORT, network="appnet")
    # published ports are discarded in host network mode; httpd listens on the host itself
    lab.run_web(HOST_NET, HOST_NET_PORT, container_port=HOST_NET_PORT, network="host")
    lab.docker("run", "-d", "--name", IDLE, IMAGE, "sleep", "3600")
    lab.run_web(LOOPBACK, f"127.0.0.1:{LOOPBACK_PORT}")
    lab.run_web(RANGE, "{}-{}".format(*RANGE_PORTS))
    run_two_port_web(lab, RANGE2, "{}-{}:80-81".format(*RANGE2_PORTS))
    lab.run_web(ONE_IP, f"{lab.host_addr}:{ONE_IP_PORT}")
    lab.docker("network", "create", "--internal", "inet")
    lab.run_web(INTERNAL, INTERNAL_PORT, network="inet")
    lab.docker("network", "create", "znet")
    lab.run_web(MOVED, MOVED_PORT)
    lab.run_web(STAYED, STAYED_PORT)
    lab.docker("network", "connect", "appnet", MOVED)
    lab.docker("network", "connect", "znet", STAYED)
    net_id = lab.docker("network", "inspect", "-f", "{{.Id}}", "appnet").stdout.strip()
    nowhere = nowhere_on_docker0(lab)
    return Site(lab, lab.container_ip(WEB), lab.container_ip(OTHER_WEB), f"br-{net_id[:12]}",
                nowhere)  # fmt: skip


def nowhere_on_docker0(lab: Lab) -> str:
    """An address on the default bridge's subnet that no container has (the highest one)."""
    fmt = "{{range .IPAM.Config}}{{.Subnet}} {{end}}"
    subnets = lab.docker("network", "inspect", "-f", fmt, "bridge").stdout.split()
    [subnet] = [ipaddress.ip_network(n) for n in subnets if ":" not in n]
    taken = lab.docker("network", "inspect", "-f", "{{json .Containers}}", "bridge").stdout
    address = str(subnet.broadcast_address - 1)
    assert f'"{address}/' not in taken, taken
    return address


@pytest.fixture
def s(site: Site, scratch_lab: Lab) -> Site:
    """The site, with rule changes undone after the test (scratch_lab)."""
    return site


def g28(lab: Lab) -> bool:
    """Whether the lab's engine writes the 28.x layout (DOCKER-FORWARD and DOCKER-BRIDGE)."""
    return lab.engine == "28"


def bridge_jump(lab: Lab, bridge: str) -> str:
    """The rule sending traffic for `bridge` to the DOCKER chain."""
    return f"-A {'DOCKER-BRIDGE' if g28(lab) else 'FORWARD'} -o {bridge} -j DOCKER"


def insert_stale_dnat(lab: Lab, to: str, pos: str = "1") -> None:
    """A DNAT for WEB_PORT in nat DOCKER (at `pos`, or appended if pos == "end"), as a
    leftover from an earlier container would look."""
    where = ["-A", "DOCKER"] if pos == "end" else ["-I", "DOCKER", pos]
    lab.iptables("-t", "nat", *where, "!", "-i", "docker0", "-p", "tcp", "-m", "tcp",
                 "--dport", str(WEB_PORT), "-j", "DNAT", "--to-destination", to)  # fmt: skip


# ---------------------------------------------------------------- healthy


def test_healthy_ports_on_default_and_user_bridge_are_ok(s: Site) -> None:
    run = run_check(s.lab)
    assert run.returncode == 0, run.summary()
    for name in (WEB, OTHER_WEB, APP_WEB):
        assert_agrees(s.lab, run, name, "ok", reason=["DNAT by nat/DOCKER #"])
    # Docker 20.10 writes no ip6tables rules: docker-proxy serves [::]:port, by design
    assert_agrees(s.lab, run, WEB, "ok", family="ipv6", reason=["docker-proxy listens"])
    assert run.missing_jumps == [] and run.stale == []
    assert_table_row(s.lab, WEB, f"0.0.0.0:{WEB_PORT}/tcp", "ok")
    assert_table_row(s.lab, APP_WEB, f"0.0.0.0:{APP_PORT}/tcp", "ok")


def test_host_network_and_portless_containers_have_no_bindings(s: Site) -> None:
    run = run_check(s.lab)
    assert run.ports(HOST_NET) == run.ports(HOST_NET, "ipv6") == []
    assert run.ports(IDLE) == run.ports(IDLE, "ipv6") == []
    # Docker publishes nothing from an internal network, and nothing answers
    assert run.ports(INTERNAL) == run.ports(INTERNAL, "ipv6") == []
    assert experience(s.lab.client_get(INTERNAL_PORT), INTERNAL, CLIENT_ADDR) == NONE
    assert {p["container"] for p in run.doc["ports"]} == {
        WEB, OTHER_WEB, APP_WEB, LOOPBACK, RANGE, RANGE2, ONE_IP, MOVED, STAYED
    }  # fmt: skip
    # the host-network server is a plain host process: reachable, and none of Docker's business
    got = s.lab.client_get(HOST_NET_PORT)
    assert (got.answered_by, got.seen_client) == (HOST_NET, CLIENT_ADDR), got


def test_loopback_binding_is_ok_for_local_clients_only(s: Site) -> None:
    run = run_check(s.lab)
    got = assert_agrees(s.lab, run, LOOPBACK, "ok", reason=["only local clients"])
    assert "curl exit 7" in got.error  # refused: nothing listens on the external address
    assert run.ports(LOOPBACK, "ipv6") == []
    assert_table_row(s.lab, LOOPBACK, f"127.0.0.1:{LOOPBACK_PORT}/tcp", "ok")


def test_host_port_range_to_one_container_port_uses_one_port(s: Site) -> None:
    run = run_check(s.lab)
    [binding] = run.ports(RANGE)
    used = binding["host_port"]
    assert used in RANGE_PORTS and binding["container_port"] == 80
    assert_agrees(s.lab, run, RANGE, "ok")
    [unused] = set(RANGE_PORTS) - {used}
    assert experience(s.lab.client_get(unused), RANGE, CLIENT_ADDR) == NONE


def test_binding_on_one_host_address_is_ok(s: Site) -> None:
    run = run_check(s.lab)
    assert run.port(ONE_IP)["host_ip"] == s.lab.host_addr
    assert run.ports(ONE_IP, "ipv6") == []
    assert_agrees(s.lab, run, ONE_IP, "ok", reason=["DNAT by nat/DOCKER #"])
    assert_table_row(s.lab, ONE_IP, f"{s.lab.host_addr}:{ONE_IP_PORT}/tcp", "ok")


def test_container_on_two_networks_is_judged_on_the_one_docker_publishes_from(s: Site) -> None:
    """Docker moves the port mapping to the gateway endpoint: the network whose name sorts
    first. The exporter must judge the binding on the network the DNAT really targets."""
    run = run_check(s.lab)
    for name, network in ((MOVED, "appnet"), (STAYED, "bridge")):
        entry = run.port(name)
        assert entry["network"] == network, entry
        assert entry["container_ip"] == s.lab.container_ip(name, network)
        [dnat] = save_lines(s.lab, "nat", "-j DNAT", f"--dport {entry['host_port']} ")
        assert f"--to-destination {entry['container_ip']}:80" in dnat
        assert_agrees(s.lab, run, name, "ok")


def test_port_range_to_port_range_gives_one_binding_per_port(s: Site) -> None:
    run = run_check(s.lab)
    pairs = sorted((p["host_port"], p["container_port"]) for p in run.ports(RANGE2))
    assert pairs == [(RANGE2_PORTS[0], 80), (RANGE2_PORTS[1], 81)]
    for port in RANGE2_PORTS:
        assert_agrees(s.lab, run, RANGE2, "ok", host_port=port)


# ---------------------------------------------------------------- the incident (nat)


def test_deleted_dnat_is_proxied(s: Site) -> None:
    rule = delete_rule(s.lab, "nat", "-j DNAT", f"--dport {WEB_PORT} ")
    run = run_check(s.lab)
    assert run.returncode == 1
    assert_agrees(s.lab, run, WEB, "proxied", reason=["docker-proxy", rule.removeprefix("-A ")])
    assert_agrees(s.lab, run, APP_WEB, "ok")
    assert_table_row(s.lab, WEB, f"0.0.0.0:{WEB_PORT}/tcp", "proxied")


def test_stale_dnat_before_dockers_misroutes(s: Site) -> None:
    insert_stale_dnat(s.lab, f"{s.nowhere}:80")
    run = run_check(s.lab)
    assert run.returncode == 1
    got = assert_agrees(s.lab, run, WEB, "misrouted",
                        reason=["nat/DOCKER #1", f"{s.nowhere}:80 (no container has it)"])  # fmt: skip
    assert "curl exit 28" in got.error  # the SYN goes to an address nobody has
    local = s.lab.local_get(WEB_PORT)  # the reported symptom: local clients still get through
    assert local.ok and local.answered_by == WEB, local
    assert [(r["rule"], r["backend"]) for r in run.stale] == [("nat/DOCKER #1", "nf_tables")]
    assert f"--to-destination {s.nowhere}:80" in run.stale[0]["text"]
    assert_agrees(s.lab, run, APP_WEB, "ok")
    table = assert_table_row(s.lab, WEB, f"0.0.0.0:{WEB_PORT}/tcp", "misrouted")
    assert "Stale rules: 1" in table


def test_stale_dnat_after_dockers_is_harmless_but_reported(s: Site) -> None:
    insert_stale_dnat(s.lab, f"{s.nowhere}:80", pos="end")
    run = run_check(s.lab)
    assert_agrees(s.lab, run, WEB, "ok")
    [stale] = run.stale
    position = len(save_lines(s.lab, "nat", "-A DOCKER "))
    assert stale["rule"] == f"nat/DOCKER #{position}"
    assert f"--to-destination {s.nowhere}:80" in stale["text"]
    assert run.returncode == 0  # stale rules alone do not fail `check`


def test_flushing_docker_nat_chain_after_the_incident_is_proxied(s: Site) -> None:
    insert_stale_dnat(s.lab, f"{s.nowhere}:80")
    s.lab.iptables("-t", "nat", "-F", "DOCKER")
    run = run_check(s.lab)
    assert run.returncode == 1 and run.stale == []
    for name in (WEB, OTHER_WEB, APP_WEB):
        assert_agrees(s.lab, run, name, "proxied", reason=["expected rule missing"])


def test_missing_prerouting_jump_is_proxied_and_reported(s: Site) -> None:
    jump = delete_rule(s.lab, "nat", "-A PREROUTING ", "-j DOCKER")
    run = run_check(s.lab)
    assert run.returncode == 1
    assert run.missing_jumps == [f"-t nat {jump}"]
    for name in (WEB, APP_WEB):
        assert_agrees(s.lab, run, name, "proxied", reason=[jump.removeprefix("-A ")])
    table = assert_table_row(s.lab, WEB, f"0.0.0.0:{WEB_PORT}/tcp", "proxied")
    assert f"MISSING ipv4: -t nat {jump}" in table


def test_stale_dnat_in_prerouting_before_docker_jump_misroutes(s: Site) -> None:
    s.lab.iptables("-t", "nat", "-I", "PREROUTING", "1", "-p", "tcp", "--dport", str(WEB_PORT),
                   "-j", "DNAT", "--to-destination", f"{s.nowhere}:80")  # fmt: skip
    run = run_check(s.lab)
    assert_agrees(s.lab, run, WEB, "misrouted", reason=["nat/PREROUTING #1", s.nowhere])


def test_stale_dnat_to_another_live_container_misroutes_to_it(s: Site) -> None:
    insert_stale_dnat(s.lab, f"{s.other_ip}:80")
    run = run_check(s.lab)
    got = assert_agrees(s.lab, run, WEB, "misrouted",
                        reason=["nat/DOCKER #1", f"{s.other_ip}:80 (container {OTHER_WEB})"])  # fmt: skip
    assert experience(got, WEB, CLIENT_ADDR) == OTHER
    assert (got.answered_by, got.seen_client) == (OTHER_WEB, CLIENT_ADDR)
    assert_agrees(s.lab, run, OTHER_WEB, "ok")


# ---------------------------------------------------------------- filter


def test_missing_forward_accept_is_dropped_by_the_policy(s: Site) -> None:
    rule = delete_rule(s.lab, "filter", "-A DOCKER ", f"-d {s.web_ip}/32")
    run = run_check(s.lab)
    assert run.returncode == 1
    # up to 27 the packet leaves DOCKER unmatched; 28 ends DOCKER with a DROP per bridge
    decider = "filter/FORWARD policy DROP"
    if g28(s.lab):
        chain = save_lines(s.lab, "filter", "-A DOCKER ")
        decider = f"filter/DOCKER #{chain.index('-A DOCKER ! -i docker0 -o docker0 -j DROP') + 1}"
    got = assert_agrees(s.lab, run, WEB, "dropped",
                        reason=[decider, rule.removeprefix("-A ")])  # fmt: skip
    assert "curl exit 28" in got.error
    assert_agrees(s.lab, run, APP_WEB, "ok")
    assert_table_row(s.lab, WEB, f"0.0.0.0:{WEB_PORT}/tcp", "dropped")


def test_missing_user_bridge_forward_jump_drops_that_bridge_only(s: Site) -> None:
    """What iptables 1.8.11 did: the per-bridge FORWARD rules of user-defined networks vanished."""
    jump = delete_rule(s.lab, "filter", bridge_jump(s.lab, s.app_bridge))
    run = run_check(s.lab)
    assert run.missing_jumps == [f"-t filter {jump}"]
    assert_agrees(s.lab, run, APP_WEB, "dropped", reason=["filter/FORWARD policy DROP"])
    assert_agrees(s.lab, run, WEB, "ok")
    assert_agrees(s.lab, run, OTHER_WEB, "ok")


def test_forward_policy_accept_without_bridge_jump_is_ok(s: Site) -> None:
    jump = delete_rule(s.lab, "filter", bridge_jump(s.lab, s.app_bridge))
    s.lab.iptables("-P", "FORWARD", "ACCEPT")
    run = run_check(s.lab)
    assert_agrees(s.lab, run, APP_WEB, "ok", reason=["filter/FORWARD policy ACCEPT"])
    assert run.returncode == 1  # the missing jump is still reported
    assert run.missing_jumps == [f"-t filter {jump}"]


def test_docker_user_drop_of_the_container_port_is_dropped(s: Site) -> None:
    s.lab.iptables("-I", "DOCKER-USER", "-p", "tcp", "--dport", "80", "-j", "DROP")
    run = run_check(s.lab)
    for name in (WEB, APP_WEB):
        assert_agrees(s.lab, run, name, "dropped", reason=["filter/DOCKER-USER #1", "DROP"])


def test_docker_user_drop_of_another_port_is_ok(s: Site) -> None:
    s.lab.iptables("-I", "DOCKER-USER", "-p", "tcp", "--dport", "81", "-j", "DROP")
    run = run_check(s.lab)
    assert_agrees(s.lab, run, WEB, "ok")
    assert_agrees(s.lab, run, RANGE2, "dropped", host_port=RANGE2_PORTS[1])
    assert_agrees(s.lab, run, RANGE2, "ok", host_port=RANGE2_PORTS[0])


def test_docker_user_drop_of_one_container_address(s: Site) -> None:
    s.lab.iptables("-I", "DOCKER-USER", "-d", s.web_ip, "-p", "tcp", "--dport", "80", "-j", "DROP")
    run = run_check(s.lab)
    assert_agrees(s.lab, run, WEB, "dropped", reason=["filter/DOCKER-USER #1"])
    assert_agrees(s.lab, run, OTHER_WEB, "ok")


def test_docker_user_reject_is_dropped(s: Site) -> None:
    s.lab.iptables("-I", "DOCKER-USER", "-p", "tcp", "--dport", "80", "-j", "REJECT")
    run = run_check(s.lab)
    got = assert_agrees(s.lab, run, WEB, "dropped", reason=["REJECT"])
    assert "curl exit 7" in got.error  # refused by the ICMP error, not a timeout


def test_docker_user_interface_rules_follow_the_arrival_interface(s: Site) -> None:
    external = s.lab.host_ns  # the host end of the client's veth is named after the namespace
    s.lab.iptables("-I", "DOCKER-USER", "-i", "eth9", "-p", "tcp", "--dport", "80", "-j", "DROP")
    assert_agrees(s.lab, run_check(s.lab), WEB, "ok")
    s.lab.iptables("-I", "DOCKER-USER", "-i", external, "-p", "tcp", "--dport", "80", "-j", "DROP")
    assert_agrees(s.lab, run_check(s.lab), WEB, "dropped", reason=[f"-i {external}"])


def test_docker_user_source_rule_with_the_client_address_given(s: Site) -> None:
    """A rule on the client's source prefix decides only when `--probe.client-ipv4` says who the
    client is (without it the exporter models a client no rule names)."""
    s.lab.iptables("-I", "DOCKER-USER", "-s", "192.0.2.0/24", "-j", "DROP")
    run = run_check(s.lab, "--probe.client-ipv4", CLIENT_ADDR)
    assert_agrees(s.lab, run, WEB, "dropped", reason=["-s 192.0.2.0/24"])


def test_input_policy_drop_only_matters_without_dnat(s: Site) -> None:
    s.lab.iptables("-P", "INPUT", "DROP")
    assert_agrees(s.lab, run_check(s.lab), WEB, "ok")
    delete_rule(s.lab, "nat", "-j DNAT", f"--dport {WEB_PORT} ")
    run = run_check(s.lab)
    assert_agrees(s.lab, run, WEB, "dropped", reason=["filter/INPUT policy DROP"])


def test_raw_prerouting_drop_is_dropped(s: Site) -> None:
    s.lab.iptables("-t", "raw", "-A", "PREROUTING", "-p", "tcp", "--dport", str(WEB_PORT),
                   "-j", "DROP")  # fmt: skip
    position = len(save_lines(s.lab, "raw", "-A PREROUTING "))  # 28 has its own DROPs first
    run = run_check(s.lab)
    assert_agrees(s.lab, run, WEB, "dropped", reason=[f"raw/PREROUTING #{position}"])
    assert_agrees(s.lab, run, APP_WEB, "ok")


# ---------------------------------------------------------------- cases the first version got wrong
# Each of these once disagreed with the kernel (mangle not walked, ip_forward not read,
# --ctorigdstport not modelled); they now agree.


@pytest.mark.parametrize("chain", ["PREROUTING", "FORWARD"])
def test_mangle_drop_is_dropped(s: Site, chain: str) -> None:
    s.lab.iptables("-t", "mangle", "-A", chain, "-d", s.web_ip if chain == "FORWARD" else
                   s.lab.host_addr, "-p", "tcp", "-j", "DROP")  # fmt: skip
    assert_agrees(s.lab, run_check(s.lab), WEB, "dropped", reason=[f"mangle/{chain} #1"])


def test_forwarding_off_is_not_ok(s: Site) -> None:
    s.lab.nsexec(["sysctl", "-q", "-w", "net.ipv4.ip_forward=0"])
    try:
        run = run_check(s.lab)
        entry = run.port(WEB)
        got = s.lab.client_get(WEB_PORT)
    finally:
        s.lab.nsexec(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
    assert experience(got, WEB, CLIENT_ADDR) == NONE, got
    assert entry["state"] != "ok", f"{entry['state']}: {entry['reason']}; but the client: {got}"
    assert entry["code"] == "ip_forward_off", entry


def test_docker_user_drop_by_original_port(s: Site) -> None:
    """Docker's documentation filters published ports in DOCKER-USER with
    `-m conntrack --ctorigdstport`: the port as the client sent it, before DNAT."""
    s.lab.iptables("-I", "DOCKER-USER", "-p", "tcp", "-m", "conntrack", "--ctorigdstport",
                   str(WEB_PORT), "-j", "DROP")  # fmt: skip
    run = run_check(s.lab)
    assert_agrees(s.lab, run, APP_WEB, "ok")
    assert_agrees(s.lab, run, WEB, "dropped", reason=["filter/DOCKER-USER #1"])


# ---------------------------------------------------------------- other daemons


def _own_lab(engine: str, **kwargs) -> Iterator[Lab]:
    require_lab(str(kwargs.get("backend", "nft")), engine)
    with Lab(engine=engine, **kwargs) as the_lab:
        the_lab.run_web(WEB, WEB_PORT)
        the_lab.run_web(OTHER_WEB, OTHER_PORT)
        yield the_lab


@pytest.fixture(scope="module")
def proxyless(engine: str) -> Iterator[Lab]:
    yield from _own_lab(engine, daemon_args=["--userland-proxy=false"])


@pytest.fixture(scope="module")
def legacy(engine: str) -> Iterator[Lab]:
    yield from _own_lab(engine, backend="legacy")


def test_without_userland_proxy_healthy_is_ok(proxyless: Lab) -> None:
    with restored(proxyless):
        run = run_check(proxyless)
        assert run.returncode == 0, run.summary()
        assert run.doc["daemon"]["userland_proxy"] is False
        assert_agrees(proxyless, run, WEB, "ok")
        # without the proxy Docker 20.10 lists no [::] binding, and nothing serves IPv6
        assert run.ports(WEB, "ipv6") == []
        assert not proxyless.client_get(WEB_PORT, family=6).ok


def test_without_userland_proxy_deleted_dnat_is_unreachable(proxyless: Lab) -> None:
    with restored(proxyless):
        rule = delete_rule(proxyless, "nat", "-j DNAT", f"--dport {WEB_PORT} ")
        run = run_check(proxyless)
        assert run.returncode == 1
        got = assert_agrees(proxyless, run, WEB, "unreachable",
                            reason=["no docker-proxy", rule.removeprefix("-A ")])  # fmt: skip
        # dockerd itself holds the port (a listener that never accepts): the TCP handshake
        # succeeds, then nothing answers. A TCP-connect probe would call this port up.
        assert "with 0 bytes received" in got.error, got
        assert_table_row(proxyless, WEB, f"0.0.0.0:{WEB_PORT}/tcp", "unreachable")


def _says_legacy(run) -> None:
    counts = {(b["backend"], b["family"]): b["rules"] for b in run.doc["backend_rules"]}
    assert counts[("legacy", "ipv4")] > 0 and counts.get(("nf_tables", "ipv4"), 0) == 0, counts
    assert run.doc["backends_mixed"] is False


def test_legacy_backend_healthy_is_ok(legacy: Lab) -> None:
    with restored(legacy):
        run = run_check(legacy)
        assert run.returncode == 0, run.summary()
        _says_legacy(run)
        assert_agrees(legacy, run, WEB, "ok", reason=["DNAT by nat/DOCKER #"])
        table = assert_table_row(legacy, WEB, f"0.0.0.0:{WEB_PORT}/tcp", "ok")
        assert "Docker's ipv4 chains are in the legacy backend" in table


def test_legacy_backend_stale_dnat_misroutes(legacy: Lab) -> None:
    with restored(legacy):
        nowhere = nowhere_on_docker0(legacy)
        insert_stale_dnat(legacy, f"{nowhere}:80")
        assert save_lines(legacy, "nat", nowhere)  # in the legacy tables...
        assert nowhere not in legacy.iptables_save(backend="nft")  # ...and only there
        run = run_check(legacy)
        assert run.returncode == 1
        _says_legacy(run)
        assert_agrees(legacy, run, WEB, "misrouted", reason=["nat/DOCKER #1", f"{nowhere}:80"])
        assert [(r["rule"], r["backend"]) for r in run.stale] == [("nat/DOCKER #1", "legacy")]
        table = assert_table_row(legacy, WEB, f"0.0.0.0:{WEB_PORT}/tcp", "misrouted")
        assert "Docker's ipv4 chains are in the legacy backend" in table
        assert "ipv4 legacy nat/DOCKER #1" in table


# Debian's default `iptables` is the nft one: a firewall script run on a host whose Docker
# writes legacy rules puts its rules in the other backend. The kernel runs both.


def test_drop_in_the_other_backend_is_dropped(legacy: Lab) -> None:
    with restored(legacy):
        web_ip = legacy.container_ip(WEB)
        legacy.iptables("-A", "FORWARD", "-d", web_ip, "-j", "DROP", backend="nft")
        run = run_check(legacy)
        assert run.doc["backends_mixed"] is True
        assert_agrees(legacy, run, WEB, "dropped", reason=["filter/FORWARD #1", web_ip])
        assert_agrees(legacy, run, OTHER_WEB, "ok")
        table = assert_table_row(legacy, WEB, f"0.0.0.0:{WEB_PORT}/tcp", "dropped")
        assert "WARNING: both the nf_tables and the legacy backend hold rules" in table


def test_dnat_in_the_other_backend_is_unknown(legacy: Lab) -> None:
    """Which backend's DNAT the kernel applies depends on which nat table registered its hook
    last (not visible in any rule listing), so the exporter must not pick one."""
    with restored(legacy):
        nowhere = nowhere_on_docker0(legacy)
        legacy.iptables("-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", str(WEB_PORT),
                        "-j", "DNAT", "--to-destination", f"{nowhere}:80", backend="nft")  # fmt: skip
        run = run_check(legacy)
        entry = run.port(WEB)
        got = legacy.client_get(WEB_PORT)
        assert entry["state"] == "unknown", (entry, got)
        assert "nat/PREROUTING #1" in entry["reason"] and "2 backends" in entry["reason"], entry
        assert_agrees(legacy, run, OTHER_WEB, "ok")
