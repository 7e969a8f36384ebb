"""IPv6 on a real engine: `check`'s IPv6 verdicts agree with real IPv6 connections (issue 16).

Docker 28 (tools/fetch-engines) writes ip6tables rules by default. The lab's veth pair carries
2001:db8:1::1 (Docker host) and 2001:db8:1::2 (client). The containers sit on an `--ipv6`
network, and Docker turns IPv6 forwarding on and sets the ip6 FORWARD policy to DROP when it
creates that network. Each scenario breaks one thing in ip6tables (or the forwarding sysctl),
runs `check --json` in the Docker host's namespace, and fetches the port from the client over
IPv6. The verdict must be the expected one, and the client's experience one it allows
(tests/support/labcheck.py). The IPv4 side of the same containers stays ok throughout.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from support.lab import CLIENT_ADDR6, Lab
from support.labcheck import (
    NONE,
    OTHER,
    assert_agrees,
    delete_rule,
    experience,
    restored,
    run_check,
    save_lines,
)
from support.util import require_lab

pytestmark = pytest.mark.lab

ENGINE = "28"
V6NET, SUBNET6 = "v6net", "fd00:db8:16::/64"
WEB, WEB_PORT, OTHER_WEB, OTHER_PORT = "web6", 18180, "other6", 18185
MULTI, MULTI_PORT = "multi6", 18190


@dataclass(frozen=True)
class Site:
    lab: Lab
    bridge: str
    web_ip6: str
    other_ip6: str
    nowhere6: str  # an address on the IPv6 subnet that no container has


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    require_lab(engine=ENGINE)
    with Lab(engine=ENGINE) as lab:
        net_id = lab.docker("network", "create", "--ipv6", "--subnet", SUBNET6, V6NET).stdout
        lab.run_web(WEB, WEB_PORT, network=V6NET)
        lab.run_web(OTHER_WEB, OTHER_PORT, network=V6NET)
        nowhere = str(ipaddress.ip_network(SUBNET6)[0xFFFE])
        yield Site(lab, f"br-{net_id.strip()[:12]}", lab.container_ip(WEB, family=6),
                   lab.container_ip(OTHER_WEB, family=6), nowhere)  # fmt: skip


@pytest.fixture
def s(site: Site) -> Iterator[Site]:
    """The site; rules changed by the test are put back (and checked) afterwards."""
    with restored(site.lab):
        yield site


def ip6tables(site: Site, *args: str) -> None:
    site.lab.iptables(*args, family=6)


def insert_stale_dnat6(site: Site, to: str) -> None:
    """An IPv6 DNAT for WEB_PORT ahead of Docker's in nat DOCKER, as a leftover would be."""
    ip6tables(site, "-t", "nat", "-I", "DOCKER", "1", "!", "-s", "fe80::/10", "!", "-i",
              site.bridge, "-p", "tcp", "-m", "tcp", "--dport", str(WEB_PORT),
              "-j", "DNAT", "--to-destination", f"[{to}]:80")  # fmt: skip


def test_healthy_ipv6_port_is_ok_and_the_container_sees_the_client(s: Site) -> None:
    run = run_check(s.lab)
    assert run.returncode == 0, run.summary()
    entry = run.port(WEB, "ipv6")
    assert (entry["host_ip"], entry["container_ip"]) == ("::", s.web_ip6)
    got = assert_agrees(s.lab, run, WEB, "ok", family="ipv6", reason=["DNAT by nat/DOCKER #"])
    assert (got.answered_by, got.seen_client) == (WEB, CLIENT_ADDR6)  # real IPv6 DNAT
    assert_agrees(s.lab, run, WEB, "ok")
    assert run.stale == [] and run.missing_jumps == []


def test_deleted_v6_dnat_is_proxied(s: Site) -> None:
    rule = delete_rule(s.lab, "nat", "-j DNAT", f"--dport {WEB_PORT} ", family=6)
    run = run_check(s.lab)
    assert run.returncode == 1
    got = assert_agrees(s.lab, run, WEB, "proxied", family="ipv6",
                        reason=["docker-proxy", rule.removeprefix("-A ")])  # fmt: skip
    assert got.seen_client != CLIENT_ADDR6  # docker-proxy connects from the bridge
    assert_agrees(s.lab, run, WEB, "ok")
    assert_agrees(s.lab, run, OTHER_WEB, "ok", family="ipv6")


def test_stale_v6_dnat_to_nowhere_misroutes(s: Site) -> None:
    insert_stale_dnat6(s, s.nowhere6)
    run = run_check(s.lab)
    assert run.returncode == 1
    got = assert_agrees(s.lab, run, WEB, "misrouted", family="ipv6",
                        reason=["nat/DOCKER #1", f"{s.nowhere6}:80 (no container has it)"])  # fmt: skip
    assert experience(got, WEB, CLIENT_ADDR6) == NONE
    assert [(r["family"], r["rule"]) for r in run.stale] == [("ipv6", "nat/DOCKER #1")]
    assert_agrees(s.lab, run, WEB, "ok")


def test_stale_v6_dnat_to_another_container_misroutes_to_it(s: Site) -> None:
    insert_stale_dnat6(s, s.other_ip6)
    run = run_check(s.lab)
    got = assert_agrees(s.lab, run, WEB, "misrouted", family="ipv6",
                        reason=["nat/DOCKER #1", f"(container {OTHER_WEB})"])  # fmt: skip
    assert experience(got, WEB, CLIENT_ADDR6) == OTHER
    assert (got.answered_by, got.seen_client) == (OTHER_WEB, CLIENT_ADDR6)


def test_docker_user_drop_in_ip6tables_is_dropped_for_ipv6_only(s: Site) -> None:
    ip6tables(s, "-I", "DOCKER-USER", "-p", "tcp", "--dport", "80", "-j", "DROP")
    run = run_check(s.lab)
    for name in (WEB, OTHER_WEB):
        assert_agrees(s.lab, run, name, "dropped", family="ipv6",
                      reason=["filter/DOCKER-USER #1", "DROP"])  # fmt: skip
        assert_agrees(s.lab, run, name, "ok")


def test_forward_policy_drop_with_the_docker_chain_flushed_is_dropped(s: Site) -> None:
    assert save_lines(s.lab, "filter", f"-A DOCKER -d {s.web_ip6}/128", family=6)
    ip6tables(s, "-F", "DOCKER")
    run = run_check(s.lab)
    assert run.returncode == 1
    for name in (WEB, OTHER_WEB):
        assert_agrees(s.lab, run, name, "dropped", family="ipv6",
                      reason=["filter/FORWARD policy DROP", "expected rule missing"])  # fmt: skip
        assert_agrees(s.lab, run, name, "ok")


def test_ipv6_forwarding_off_is_dropped(s: Site) -> None:
    knob = "net.ipv6.conf.all.forwarding"
    s.lab.nsexec(["sysctl", "-q", "-w", f"{knob}=0"])
    try:
        run = run_check(s.lab)
        entry = run.port(WEB, "ipv6")
        got = s.lab.client_get(WEB_PORT, family=6)
        v4 = s.lab.client_get(WEB_PORT)
    finally:
        s.lab.nsexec(["sysctl", "-q", "-w", f"{knob}=1"])
    assert experience(got, WEB, CLIENT_ADDR6) == NONE, got
    assert (entry["state"], entry["code"]) == ("dropped", "ip_forward_off"), entry
    assert knob in entry["reason"]
    assert run.port(WEB)["state"] == "ok" and v4.answered_by == WEB


def api(lab: Lab, path: str, body: dict | None = None) -> dict | list | None:
    """The lab daemon's Engine API at its own version (the system's docker CLI speaks 1.41)."""
    args = ["curl", "-sSf", "--unix-socket", str(lab.socket), f"http://docker/v1.51{path}"]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    out = lab.nsexec(args).stdout
    return json.loads(out) if out.strip() else None


def test_multi_network_container_publishes_on_its_dual_stack_network(s: Site) -> None:
    """On the default bridge with GwPriority 1 and on the dual-stack network with 0: Docker 28
    still gives both families' ports to the dual-stack network (tests/fixtures/d28g28_*)."""
    lab = s.lab
    cid = lab.run_web(MULTI, MULTI_PORT, network=V6NET, start=False)
    try:
        api(
            lab, "/networks/bridge/connect", {"Container": cid, "EndpointConfig": {"GwPriority": 1}}
        )
        lab.docker("start", MULTI)
        lab.wait_web(MULTI)
        nets = api(lab, f"/containers/{cid}/json")["NetworkSettings"]["Networks"]
        assert (nets["bridge"]["GwPriority"], nets[V6NET]["GwPriority"]) == (1, 0)
        run = run_check(lab)
        assert run.stale == [], run.stale
        for family, address in (("ipv4", "IPAddress"), ("ipv6", "GlobalIPv6Address")):
            entry = run.port(MULTI, family)
            assert (entry["network"], entry["container_ip"]) == (V6NET, nets[V6NET][address])
            assert_agrees(lab, run, MULTI, "ok", family=family, reason=["DNAT by nat/DOCKER #"])
    finally:
        lab.docker("rm", "-f", MULTI, check=False)
