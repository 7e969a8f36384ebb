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
)

OPT = "com.docker.network.bridge."
PROTOCOLS = ("tcp", "udp", "sctp")
IFNAME = re.compile(r"[^\s/\"'\\\x00-\x1f\x7f]{1,15}")  # what rules can name (IFNAMSIZ)


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
    gw = gateway_endpoint(endpoints, networks)
    return container, [_binding(container, p, gw, daemon, what) for p in published]


def gateway_endpoint(endpoints: dict, networks: dict[str, Network]):
    """The endpoint Docker gives the port mappings to: highest GwPriority, then non-internal,
    then dual-stack, then the smallest network name (libnetwork's Endpoint.Less)."""

    def order(item):
        name, ep = item
        ep = ep if isinstance(ep, dict) else {}
        net = networks.get(str(ep.get("NetworkID") or ""))
        internal = net.internal if net else False
        dual = bool(ep.get("IPAddress")) and bool(ep.get("GlobalIPv6Address"))
        try:
            prio = int(ep.get("GwPriority") or 0)
        except (TypeError, ValueError):
            raise DecodeError(f"endpoint {name!r}: field 'GwPriority' should be a number") from None
        return (-prio, internal, not dual, name)

    if not endpoints:
        return None
    name, ep = min(endpoints.items(), key=order)
    ep = ep if isinstance(ep, dict) else {}
    return name, ep, networks.get(str(ep.get("NetworkID") or ""))


def _binding(c: Container, port: dict, gw, daemon: Daemon, what: str) -> Binding:
    proto = str(port.get("Type") or "tcp").lower()
    host_ip = str(port.get("IP") or "0.0.0.0")
    try:
        host_port, cport = int(port["PublicPort"]), int(port.get("PrivatePort") or 0)
    except (TypeError, ValueError, KeyError, OverflowError):
        raise DecodeError(f"{what}: port entry {port!r:.200} has non-numeric ports") from None
    if not (0 < host_port < 65536 and 0 <= cport < 65536):
        raise DecodeError(f"{what}: port entry {port!r:.200} has ports out of range")
    family = "ipv6" if ":" in host_ip else "ipv4"
    net_name, ep, net = gw if gw else ("", {}, None)
    cip = str(ep.get("GlobalIPv6Address" if family == "ipv6" else "IPAddress") or "")
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
