"""Where a remote client's packets arrive: the host addresses a binding is probed on."""

from __future__ import annotations

import ipaddress

from exporter.docker.model import Binding, DockerState
from exporter.path.matching import Env
from exporter.path.owner import user_chains
from exporter.path.setmembers import addresses, nft_addresses
from exporter.path.sources import Sources, client_space
from exporter.path.verdict import Probe


def network_env(state: DockerState, rulesets=(), ipsets=()) -> Env:
    """Docker's bridges; the sets of addresses `-m set` and nft `@set` matches look up (those
    read with `ipset save`, the native tables' named sets, and for Docker 28.0's own ipsets
    what Docker's networks say when they were not read); the chains DOCKER-USER reaches in
    `rulesets` (path.owner)."""
    ext = [n for n in state.networks if n.bridge and not n.internal]
    sets = {
        "docker-ext-bridges-v4": Sources.union_of(4, [s for n in ext for s in n.subnets4]),
        "docker-ext-bridges-v6": Sources.union_of(6, [s for n in ext for s in n.subnets6]),
    }
    bridges = frozenset(n.bridge for n in state.networks if n.bridge)
    sets = {k: v for k, v in sets.items() if v is not None}
    sets.update(nft_addresses(rulesets))
    sets.update(addresses(ipsets))  # what the kernel holds wins over what Docker should hold
    return Env(bridges, sets, user_chains(rulesets))


def client_spaces(state: DockerState, host_addrs, clients: dict[str, str]) -> dict:
    """Per family, the addresses modelled clients may have: the one address given with
    --probe.client-*, or every remote address (not the host's own, not Docker's subnets)."""
    local = [a for _, a in host_addrs or ()]
    local += [s for n in state.networks for s in (*n.subnets4, *n.subnets6)]
    out = {}
    for family in ("ipv4", "ipv6"):
        given = Sources.parse(clients[family]) if clients.get(family) else None
        out[family] = given or client_space(family, local)
    return out


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
