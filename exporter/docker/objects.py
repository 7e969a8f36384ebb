"""Networks and containers from the Engine API lists, and one Binding per published host port."""

from __future__ import annotations

import ipaddress
import re

from exporter.docker.model import (
    DESIGN_BLIND,
    DESIGN_DNAT,
    DESIGN_NONE,
    DESIGN_PROXY,
    DESIGN_ROUTED,
    Binding,
    Container,
    Daemon,
    Network,
    parse_version,
)

OPT = "com.docker.network.bridge."
PROTOCOLS = ("tcp", "udp", "sctp")
IFNAME = re.compile(r"[^\s/\"'\\\x00-\x1f\x7f]{1,15}")  # what rules can name (IFNAMSIZ)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
DOTTED_QUAD = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")  # what ipaddress takes as IPv4


class DecodeError(ValueError):
    pass


def _str(obj: dict, key: str, what: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DecodeError(f"{what}: field {key!r} should be a string, got {type(value).__name__}")
    return value


def _dict(obj: dict, key: str, what: str) -> dict:
    value = obj.get(key) or {}
    if not isinstance(value, dict):
        raise DecodeError(f"{what}: field {key!r} should be an object")
    return value


def decode_network(raw) -> Network:
    if not isinstance(raw, dict):
        raise DecodeError("network entry is not an object")
    nid, name = _str(raw, "Id", "network"), _str(raw, "Name", "network")
    what = f"network {name or nid[:12]!r}"
    opts = {str(k): str(v) for k, v in _dict(raw, "Options", what).items()}
    driver = _str(raw, "Driver", what)
    config = _dict(raw, "IPAM", what).get("Config") or []
    if not isinstance(config, list):
        raise DecodeError(f"{what}: field 'IPAM.Config' should be an array")
    subnets = [str(c.get("Subnet") or "") for c in config if isinstance(c, dict)]
    for subnet in filter(None, subnets):
        try:
            ipaddress.ip_network(subnet, strict=False)
        except ValueError:
            raise DecodeError(f"{what}: subnet {subnet[:60]!r} is not an IP network") from None
    bridge = _bridge_name(nid, name, opts) if driver == "bridge" else ""
    if bridge and not IFNAME.fullmatch(bridge):
        raise DecodeError(f"{what}: bridge {bridge[:40]!r} is not an interface name")
    return Network(
        id=nid,
        name=name,
        driver=driver,
        bridge=bridge,
        internal=bool(raw.get("Internal")),
        subnets4=tuple(s for s in subnets if s and ":" not in s),
        subnets6=tuple(s for s in subnets if ":" in s),
        enable_ipv4=raw.get("EnableIPv4", True) is not False,
        enable_ipv6=bool(raw.get("EnableIPv6")),
        icc=opts.get(OPT + "enable_icc", "true") != "false",
        masquerade=opts.get(OPT + "enable_ip_masquerade", "true") != "false",
        gateway_mode4=opts.get(OPT + "gateway_mode_ipv4", "nat") or "nat",
        gateway_mode6=opts.get(OPT + "gateway_mode_ipv6", "nat") or "nat",
    )


def _bridge_name(nid: str, name: str, opts: dict) -> str:
    if opts.get(OPT + "name"):
        return opts[OPT + "name"]
    if name == "bridge" or opts.get(OPT + "default_bridge") == "true":
        return "docker0"
    return "br-" + nid[:12]


def decode_container(raw, networks: dict[str, Network], daemon: Daemon):
    """Return (Container, [Binding, ...]) for one entry of GET /containers/json."""
    if not isinstance(raw, dict):
        raise DecodeError("container entry is not an object")
    cid = _str(raw, "Id", "container")
    names = raw.get("Names") or []
    name = (str(names[0]) if isinstance(names, list) and names else cid[:12]).lstrip("/")
    what = f"container {name!r}"
    labels = _dict(raw, "Labels", what)
    mode = str(_dict(raw, "HostConfig", what).get("NetworkMode") or "")
    container = Container(
        id=cid,
        name=name,
        image=_str(raw, "Image", what),
        compose_project=str(labels.get("com.docker.compose.project", "")),
        compose_service=str(labels.get("com.docker.compose.service", "")),
        network_mode=mode,
    )
    ports = raw.get("Ports") or []
    if not isinstance(ports, list):
        raise DecodeError(f"{what}: field 'Ports' should be an array")
    published = [p for p in ports if isinstance(p, dict) and p.get("PublicPort")]
    if not published or mode == "host" or mode == "none" or mode.startswith("container:"):
        return container, []
    endpoints = _dict(_dict(raw, "NetworkSettings", what), "Networks", what)
    gws = gateway_endpoints(endpoints, networks, parse_version(daemon.version) >= (28, 0, 0))
    return container, [_binding(container, p, gws, daemon, what) for p in published]


def _endpoint_order(networks: dict[str, Network]):
    """libnetwork's Endpoint.Less: highest GwPriority, then non-internal, then dual-stack,
    then the smallest network name."""

    def order(item):
        name, ep = item
        net = networks.get(str(ep.get("NetworkID") or ""))
        internal = net.internal if net else False
        dual = bool(ep.get("IPAddress")) and bool(ep.get("GlobalIPv6Address"))
        try:
            prio = int(ep.get("GwPriority") or 0)
        except (TypeError, ValueError):
            raise DecodeError(f"endpoint {name!r}: field 'GwPriority' should be a number") from None
        return (-prio, internal, not dual, name)

    return order


def gateway_endpoints(endpoints: dict, networks: dict[str, Network], per_family: bool) -> dict:
    """The endpoint Docker gives each family's port mappings to, as {family: (name, ep, net)}.

    Before 28 one gateway endpoint (the first in Endpoint.Less order) takes both. From 28 on
    the gateway is chosen per family, and the first dual-stack endpoint with gateways takes
    both families even when an IPv4-only endpoint has a higher GwPriority (libnetwork's
    selectGatewayEndpoint; seen on 28.5.2: tests/fixtures/d28g28_*).
    """
    if not endpoints:
        return {}
    items = [(str(n), ep if isinstance(ep, dict) else {}) for n, ep in endpoints.items()]
    ordered = sorted(items, key=_endpoint_order(networks))
    first = _with_net(ordered[0], networks)
    if not per_family:
        return {"ipv4": first, "ipv6": first}
    found: dict[str, tuple] = {}
    for item in ordered:
        net = networks.get(str(item[1].get("NetworkID") or ""))
        if net is not None and net.internal:
            continue  # an internal network has no gateway
        has4, has6 = bool(item[1].get("IPAddress")), bool(item[1].get("GlobalIPv6Address"))
        if has4 and has6:
            return {"ipv4": (*item, net), "ipv6": (*item, net)}
        if has4:
            found.setdefault("ipv4", (*item, net))
        if has6:
            found.setdefault("ipv6", (*item, net))
    four = found.get("ipv4") or found.get("ipv6") or first
    return {"ipv4": four, "ipv6": found.get("ipv6") or four}


def _with_net(item: tuple[str, dict], networks: dict[str, Network]) -> tuple:
    return (*item, networks.get(str(item[1].get("NetworkID") or "")))


def _binding(c: Container, port: dict, gws: dict, daemon: Daemon, what: str) -> Binding:
    proto = str(port.get("Type") or "tcp").lower()
    host_ip = str(port.get("IP") or "0.0.0.0")
    try:
        host_port, cport = int(port["PublicPort"]), int(port.get("PrivatePort") or 0)
    except (TypeError, ValueError, KeyError, OverflowError):
        raise DecodeError(f"{what}: port entry {port!r:.200} has non-numeric ports") from None
    if not (0 < host_port < 65536 and 0 <= cport < 65536):
        raise DecodeError(f"{what}: port entry {port!r:.200} has ports out of range")
    family = "ipv6" if ":" in host_ip else "ipv4"
    net_name, ep, net = gws.get(family) or ("", {}, None)
    cip = str(ep.get("GlobalIPv6Address" if family == "ipv6" else "IPAddress") or "")
    _check_address(host_ip, f"{what}: port entry's IP")
    if cip:
        _check_address(cip, f"{what}: endpoint {net_name!r} address")
    design, code, why = binding_design(daemon, net, family, host_ip, cip, proto)
    return Binding(
        container=c.name,
        container_id=c.id,
        network=net_name,
        network_id=net.id if net else str(ep.get("NetworkID") or ""),
        bridge=net.bridge if net else "",
        family=family,
        protocol=proto,
        host_ip=host_ip,
        host_port=host_port,
        container_ip=cip,
        container_port=cport,
        design=design,
        why=why,
        design_code=code,
    )


def _check_address(value: str, what: str) -> None:
    """Addresses go into rule texts: anything but a plain IP address is nonsense from Docker."""
    if DOTTED_QUAD.fullmatch(value):
        return  # the common case, without ipaddress's object
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise DecodeError(f"{what} {value[:60]!r} is not an IP address") from None


def binding_design(daemon: Daemon, net: Network | None, family: str, host_ip: str, cip: str, proto):
    """How Docker means to deliver a remote client's connection: (design, the reason code of a
    design that is not evaluated further (blind, none), why when it is not DNAT)."""
    if daemon.rootless:
        return (
            DESIGN_BLIND,
            "rootless",
            "rootless daemon: RootlessKit forwards ports, rules not visible",
        )
    if net is None or net.driver != "bridge":
        driver = net.driver if net else "unknown"
        return (
            DESIGN_BLIND,
            "unsupported_driver",
            f"network driver {driver!r}: only bridge networks are evaluated",
        )
    if proto not in PROTOCOLS:
        return DESIGN_BLIND, "unsupported_protocol", f"protocol {proto!r} is not evaluated"
    if net.internal:
        return (
            DESIGN_NONE,
            "internal_network",
            "internal network: Docker publishes no ports from it",
        )
    if host_ip.startswith("127.") or host_ip == "::1":
        return (
            DESIGN_NONE,
            "loopback",
            "bound to loopback: only local clients can connect, by design",
        )
    mode = net.gateway_mode6 if family == "ipv6" else net.gateway_mode4
    if mode == "isolated":
        return DESIGN_NONE, "gateway_isolated", "gateway mode isolated: no external connectivity"
    enabled = daemon.ip6tables if family == "ipv6" else daemon.iptables
    if not enabled:
        flag = "--ip6tables" if family == "ipv6" and daemon.iptables else "--iptables"
        return DESIGN_PROXY, "", f"{flag}=false: Docker writes no {family} rules"
    if not cip:
        other = "IPv4" if family == "ipv6" else "IPv6"
        return DESIGN_PROXY, "", f"{other}-only container on an {family} address: no rules"
    if mode == "routed":
        return (
            DESIGN_ROUTED,
            "",
            "gateway mode routed: no NAT, clients route to the container address",
        )
    return DESIGN_DNAT, "", ""
