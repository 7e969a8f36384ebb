"""Where a remote client's packets arrive: the host addresses a binding is probed on."""

from __future__ import annotations

import ipaddress

from exporter.docker.model import Binding, DockerState
from exporter.path.matching import Env
from exporter.path.verdict import Probe


def network_env(state: DockerState) -> Env:
    """Docker's bridges, and the ipsets Docker 28.0 matches external bridges with."""
    ext = [n for n in state.networks if n.bridge and not n.internal]
    sets = {
        "docker-ext-bridges-v4": tuple(ipaddress.ip_network(s) for n in ext for s in n.subnets4),
        "docker-ext-bridges-v6": tuple(ipaddress.ip_network(s) for n in ext for s in n.subnets6),
    }
    return Env(frozenset(n.bridge for n in state.networks if n.bridge), sets)


class Probes:
    """`probes` with the host's external addresses sorted out once per family, not per port."""

    def __init__(self, host_addrs, env: Env) -> None:
        self.host_addrs, self.env, self.usable = host_addrs, env, {}

    def __call__(self, b: Binding) -> list[Probe]:
        if not b.wildcard:
            return probes(b, self.host_addrs, self.env)
        if b.family not in self.usable:
            self.usable[b.family] = probes(b, self.host_addrs, self.env)
        return self.usable[b.family]


def probes(b: Binding, host_addrs, env: Env) -> list[Probe]:
    """A specific host address is probed as itself; a wildcard on every external address (one
    probe without an address when the host's addresses are unknown)."""
    if not b.wildcard:
        iif = next((i for i, a in host_addrs or () if a == b.host_ip), None)
        return [Probe(b.host_ip, iif)]
    usable = [(i, a) for i, a in host_addrs or () if _external(i, a, b.family, env)]
    return [Probe(a, i) for i, a in usable] or [Probe(None, None)]


def _external(iface: str, addr: str, family: str, env: Env) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    if (ip.version == 6) != (family == "ipv6") or ip.is_loopback or ip.is_link_local:
        return False
    return iface not in env.bridges
