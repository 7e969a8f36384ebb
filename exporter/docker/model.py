"""Docker state as the core sees it: networks, containers, one Binding per published host port."""

from __future__ import annotations

import functools
from dataclasses import dataclass

# How Docker intends a remote client's connection to a binding to be delivered.
DESIGN_DNAT = "dnat"  # nat DOCKER DNAT straight to the container
DESIGN_PROXY = "proxy"  # docker-proxy only (no rules expected)
DESIGN_ROUTED = "routed"  # gateway mode routed: clients route to the container address
DESIGN_NONE = "none"  # not reachable from outside by design (loopback, internal, isolated)
DESIGN_BLIND = "blind"  # rules live where the exporter cannot see (rootless, unsupported backend)


@dataclass(frozen=True, slots=True)
class Network:
    id: str
    name: str
    driver: str
    bridge: str  # kernel interface name; "" for non-bridge drivers
    internal: bool
    subnets4: tuple[str, ...]
    subnets6: tuple[str, ...]
    enable_ipv4: bool
    enable_ipv6: bool
    icc: bool
    masquerade: bool
    gateway_mode4: str  # nat | nat-unprotected | routed | isolated
    gateway_mode6: str


@dataclass(frozen=True, slots=True)
class Container:
    id: str
    name: str
    image: str
    compose_project: str
    compose_service: str
    network_mode: str


@dataclass(frozen=True, slots=True)
class Binding:
    container: str
    container_id: str
    network: str
    network_id: str
    bridge: str
    family: str  # ipv4 | ipv6 (of the host address)
    protocol: str  # tcp | udp | sctp
    host_ip: str
    host_port: int
    container_ip: str  # "" when the endpoint has no address of this family
    container_port: int
    design: str
    why: str  # why the design is not DNAT ("" when it is)
    design_code: str = ""  # the reason code (exporter.path.codes) of a blind or none design

    @property
    def label(self) -> str:
        return f"{self.container} {self.host_ip_display}:{self.host_port}/{self.protocol}"

    @property
    def host_ip_display(self) -> str:
        return f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip

    @property
    def wildcard(self) -> bool:
        return self.host_ip in ("0.0.0.0", "::", "")

    @property
    def loopback(self) -> bool:
        return self.host_ip.startswith("127.") or self.host_ip == "::1"


@dataclass(frozen=True, slots=True)
class Daemon:
    version: str
    api_version: str
    firewall_backend: str  # iptables | iptables+firewalld | nftables | nftables+firewalld
    userland_proxy: bool | None  # None: could not be determined
    userland_proxy_source: str  # api | cmdline | daemon.json | processes | default
    iptables: bool
    ip6tables: bool
    rootless: bool
    firewalld_reloaded_at: float | None
    pid: int | None
    # (protocol, host_ip, host_port) served by this daemon's docker-proxy processes;
    # None when the processes are not visible (no host PID namespace).
    proxy_endpoints: frozenset[tuple[str, str, int]] | None

    @property
    def generation(self) -> str:
        return engine_generation(self.version, self.firewall_backend)


@dataclass(frozen=True, slots=True)
class DockerState:
    daemon: Daemon
    networks: tuple[Network, ...]
    containers: tuple[Container, ...]
    bindings: tuple[Binding, ...]

    def network_by_id(self, nid: str) -> Network | None:
        for n in self.networks:
            if n.id == nid:
                return n
        return None


@functools.lru_cache(maxsize=64)  # asked per container by every decode; one or two daemons
def parse_version(version: str) -> tuple[int, int, int]:
    """`20.10.24+dfsg1` → (20, 10, 24); unparsable parts count as 0."""
    core = version.split("+", 1)[0].split("-", 1)[0]
    parts = []
    for piece in core.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch in "0123456789")  # not isdigit: "¹"
        parts.append(int(digits) if digits else 0)
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


@functools.lru_cache(maxsize=64)  # asked per binding by every analysis; one or two daemons
def engine_generation(version: str, firewall_backend: str = "") -> str:
    """The rule layout Docker writes: g27 (20.10 and 23–27), g28.0, g28, g29, or nftables."""
    if firewall_backend.startswith("nftables"):
        return "nftables"
    v = parse_version(version)
    if v < (28, 0, 0):
        return "g27"
    if v == (28, 0, 0):
        return "g28.0"
    if v < (29, 0, 0):
        return "g28"
    return "g29"
