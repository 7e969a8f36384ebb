"""Snapshots built from the real Docker 20.10 fixtures, for collector and web tests."""

from __future__ import annotations

import json
import pathlib

from exporter.docker.decode import DaemonHints
from exporter.docker.raw import DockerRaw
from exporter.readings import Readings
from exporter.rules.family import FamilyRules
from exporter.rules.iptsave import parse_save
from exporter.serve.snapshot import Snapshot, assess

FIX = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
HOST_ADDRS = (("lo", "127.0.0.1"), ("dne-h", "192.0.2.1"), ("docker0", "172.17.0.1"))
TAKEN_AT = 1795000000.0


def docker_raw(proxy_argvs=None) -> DockerRaw:
    def load(name):
        return json.loads((FIX / f"d2010_{name}.json").read_text())

    hints = DaemonHints(pid=4242, cmdline=("dockerd",), proxy_argvs=proxy_argvs)
    return DockerRaw(load("containers"), load("networks"), load("info"), load("version"), hints)


def rules(v4_text: str | None = None, v6_text: str | None = None) -> dict[str, FamilyRules]:
    v4 = v4_text if v4_text is not None else (FIX / "d2010_iptables.txt").read_text()
    v6 = v6_text if v6_text is not None else (FIX / "d2010_ip6tables.txt").read_text()
    return {
        "ipv4": FamilyRules("ipv4", (parse_save(v4, "ipv4", "nf_tables"),)),
        "ipv6": FamilyRules("ipv6", (parse_save(v6, "ipv6", "nf_tables"),)),
    }


def fixture_snapshot(v4_text: str | None = None, docker_up: bool = True) -> Snapshot:
    raw = docker_raw() if docker_up else None
    error = "" if docker_up else "Docker socket /var/run/docker.sock does not exist"
    return assess(Readings(TAKEN_AT, raw, error, rules(v4_text), HOST_ADDRS))


def incident_rules() -> str:
    """The reported incident: a stale DNAT for web's port inserted before Docker's."""
    text = (FIX / "d2010_iptables.txt").read_text()
    stale = (
        "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 18080 -j DNAT --to-destination 172.17.0.9:80"
    )
    first = "-A DOCKER -i br-"
    return text.replace(first, stale + "\n" + first, 1)


class StaticHolder:
    def __init__(self, snapshot: Snapshot | None, errors: dict | None = None) -> None:
        self.snapshot = snapshot
        self.errors = errors or {"docker": 0, "iptables": 0, "ip6tables": 0}
