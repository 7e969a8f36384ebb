"""The REAL exporter sees link and route changes when they happen, not at its next interval
refresh: rtnetlink's notifications ask for a refresh as an nf_tables change does.

A throwaway namespace holds Docker 20.10's IPv4 rules and its bridges, with a fake Engine API;
the exporter runs there with a refresh interval of ten minutes, so only the notification can
explain a refresh within the test's generous wait. Setting docker0 down, and adding a more
specific route that takes web's subnet elsewhere (a VPN's), must each turn web's port
`unreachable`; undoing them, `ok` again. Nothing is timed here.
"""

from __future__ import annotations

import pytest
import test_faults
from support.exporterproc import states
from test_faults import DEADLINE, docker_v4_namespace, healthy, start

pytestmark = pytest.mark.slow
exporters, docker = test_faults.exporters, test_faults.docker
WEB = ("web", "ipv4", "0.0.0.0", "18080")  # c1 on docker0, 172.17.0.0/16
INTERVAL = "600s"  # far beyond DEADLINE: no interval refresh comes during the test


@pytest.fixture
def netns():
    with docker_v4_namespace("dnenet") as ns:
        yield ns


def web_is(state: str):
    return lambda s: states(s.body).get(WEB) == state


def test_a_bridge_down_and_a_route_elsewhere_are_seen_before_the_interval(netns, docker,
                                                                          exporters):  # fmt: skip
    exp = start(exporters, netns, docker.url, interval=INTERVAL)
    exp.wait_for(healthy, DEADLINE, what="healthy")

    netns.run(["ip", "link", "set", "docker0", "down"])
    exp.wait_for(web_is("unreachable"), DEADLINE, what="docker0 down seen")
    netns.run(["ip", "link", "set", "docker0", "up"])
    exp.wait_for(web_is("ok"), DEADLINE, what="docker0 up again seen")

    netns.run(["ip", "link", "add", "vpn0", "type", "veth", "peer", "name", "vpn1"])
    netns.run(["ip", "link", "set", "vpn0", "up"])
    netns.run(["ip", "link", "set", "vpn1", "up"])
    exp.wait_for(web_is("ok"), DEADLINE, what="a new link changes nothing for web")
    netns.run(["ip", "route", "add", "172.17.0.0/24", "dev", "vpn0"])
    exp.wait_for(web_is("unreachable"), DEADLINE, what="the VPN's route seen")
    netns.run(["ip", "link", "del", "vpn0"])  # its route goes with it
    exp.wait_for(web_is("ok"), DEADLINE, what="the VPN gone seen")

    log = exp.stderr()
    assert "refresh requested: link docker0 down" in log
    assert "refresh requested: route 172.17.0.0/24 added" in log
    assert "interval refresh only" not in log
