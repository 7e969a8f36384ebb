"""The host's links, routes, policy rules and forwarding switches, as frozen data.

A translated packet follows the host's routing table, and the kernel forwards it only where
forwarding is on: a bridge that is down, a more specific route that sends a container's subnet
elsewhere (a VPN's), or `net.ipv4.conf.<uplink>.forwarding=0` makes a port unreachable whatever
the firewall says. sources.hostnet reads these (`ip -j link`, `ip -j route show table all`,
`ip -j rule`, /proc/sys/net/*/conf/*); the parsers here are pure, path.route decides with them.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field

FAMILIES = ("ipv4", "ipv6")
DEFAULT_RULES = {  # `ip rule` on a host nobody changed
    "ipv4": ((0, "local"), (32766, "main"), (32767, "default")),
    "ipv6": ((0, "local"), (32766, "main")),
}
RULE_KEYS = {"priority", "src", "srclen", "dst", "dstlen", "iif", "oif", "fwmark", "fwmask",
             "table", "not", "suppress_prefixlen", "action", "iif_detached", "oif_detached",
             "flags", "protocol"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Route:
    dst: str  # a network, "0.0.0.0/0" or "::/0" for the default route
    dev: str = ""
    kind: str = "unicast"  # unicast, local, blackhole, unreachable, prohibit, throw, ...
    table: str = "main"
    metric: int = 0
    gateway: str = ""
    dead: bool = False  # its next hop is down: the kernel skips it

    @property
    def text(self) -> str:
        kind = "" if self.kind == "unicast" else f"{self.kind} "
        via = f" via {self.gateway}" if self.gateway else ""
        dev = f" dev {self.dev}" if self.dev else ""
        table = "" if self.table == "main" else f" table {self.table}"
        return f"{kind}{self.dst}{via}{dev}{table}"


@dataclass(frozen=True, slots=True)
class RouteRule:
    """One `ip rule`: which table a packet is looked up in (or what happens to it)."""

    priority: int
    table: str = ""
    action: str = "lookup"  # lookup, blackhole, unreachable, prohibit, goto, nop
    src: str = ""  # a network, "" for any
    dst: str = ""
    iif: str = ""
    fwmark: int | None = None
    fwmask: int = 0xFFFFFFFF
    invert: bool = False
    suppress_prefixlen: int = -1
    unmodelled: str = ""  # a selector the exporter does not model (sport, ipproto, uidrange)

    @property
    def text(self) -> str:
        """As `ip rule` prints it: `32765: not from all fwmark 0xca6c lookup 51820`."""
        parts = [f"{self.priority}:", "not" if self.invert else "", f"from {self.src or 'all'}",
                 f"to {self.dst}" if self.dst else "", f"iif {self.iif}" if self.iif else "",
                 f"fwmark 0x{self.fwmark:x}/0x{self.fwmask:x}" if self.fwmark is not None else "",
                 self.unmodelled,
                 f"lookup {self.table}" if self.action == "lookup" else self.action,
                 f"suppress_prefixlength {self.suppress_prefixlen}"
                 if self.suppress_prefixlen >= 0 else ""]  # fmt: skip
        return " ".join(p for p in parts if p)


@dataclass(frozen=True, slots=True)
class NetState:
    links: dict[str, bool]  # interface → administratively up
    routes: dict[str, tuple[Route, ...]]  # family → the routes of every table
    rules: dict[str, tuple[RouteRule, ...]]  # family → policy rules by priority (None: unread)
    # family → interface ("all" too) → forwarding on (IPv4: conf.<if>.forwarding; IPv6:
    # conf.all.forwarding, or the interface's force_forwarding)
    forwarding: dict[str, dict[str, bool]] = field(default_factory=dict)
    errors: tuple[str, ...] = ()  # what could not be read; their part is left unjudged


def parse_links(text: str) -> dict[str, bool]:
    """`ip -j link show` → interface → whether it is administratively up (flag UP)."""
    out = {}
    for link in _json_list(text):
        name = link.get("ifname")
        if isinstance(name, str):
            out[name] = "UP" in (link.get("flags") or ())
    return out


def parse_routes(text: str, family: str) -> tuple[Route, ...]:
    """`ip -j -4|-6 route show table all` → the routes (multicast, broadcast left out)."""
    out = []
    for r in _json_list(text):
        kind = str(r.get("type") or "unicast")
        if kind in ("broadcast", "multicast", "anycast"):
            continue
        dst = _network(r.get("dst"), family)
        if dst is None:
            continue
        flags = r.get("flags") or ()
        metric = r.get("metric", 0)
        out.append(Route(dst, str(r.get("dev") or ""), kind, str(r.get("table") or "main"),
                         metric if isinstance(metric, int) else 0, str(r.get("gateway") or ""),
                         "dead" in flags))  # fmt: skip
    return tuple(out)


def parse_rules(text: str, family: str) -> tuple[RouteRule, ...]:
    """`ip -j -4|-6 rule show` → the policy rules, by priority."""
    out = []
    for r in _json_list(text):
        prio = r.get("priority")
        if not isinstance(prio, int):
            continue
        action = str(r.get("action") or ("lookup" if "table" in r else "nop"))
        action = {"to_tbl": "lookup"}.get(action, action)
        mark, mask = _int(r.get("fwmark")), _int(r.get("fwmask"))
        suppress = r.get("suppress_prefixlen", -1)
        unmodelled = ", ".join(sorted(k for k in r if k not in RULE_KEYS))
        out.append(RouteRule(
            prio, str(r.get("table") or ""), action,
            _selector(r.get("src"), r.get("srclen"), family),
            _selector(r.get("dst"), r.get("dstlen"), family),
            str(r.get("iif") or ""), mark, mask if mask is not None else 0xFFFFFFFF,
            "not" in r, suppress if isinstance(suppress, int) else -1, unmodelled,
        ))  # fmt: skip
    return tuple(sorted(out, key=lambda x: x.priority))


def default_rules(family: str) -> tuple[RouteRule, ...]:
    return tuple(RouteRule(p, t) for p, t in DEFAULT_RULES[family])


def _json_list(text: str) -> list[dict]:
    try:
        data = json.loads(text or "[]")
    except ValueError:
        return []
    return [x for x in data if isinstance(x, dict)] if isinstance(data, list) else []


def _network(dst, family: str) -> str | None:
    if dst == "default":
        return "0.0.0.0/0" if family == "ipv4" else "::/0"
    try:
        net = ipaddress.ip_network(str(dst), strict=False)
    except ValueError:
        return None
    return str(net) if (net.version == 6) == (family == "ipv6") else None


def _selector(addr, length, family: str) -> str:
    if addr in (None, "all", ""):
        return ""
    spec = f"{addr}/{length}" if isinstance(length, int) else str(addr)
    return _network(spec, family) or f"?{spec}"


def _int(value) -> int | None:
    if isinstance(value, int):
        return value
    try:
        return int(str(value), 0)
    except ValueError:
        return None


def to_doc(net: NetState) -> dict:
    """A JSON-ready dict of `net`, for the saved-state file (`check --save-docker-state`)."""
    return {
        "links": net.links,
        "routes": {f: [list(_route_row(r)) for r in rs] for f, rs in net.routes.items()},
        "rules": {f: [list(_rule_row(r)) for r in rs] for f, rs in net.rules.items()},
        "forwarding": net.forwarding,
    }


def from_doc(doc) -> NetState | None:
    """`to_doc`'s dict back; None when it is missing or not one (the routes then go unjudged)."""
    try:
        routes = {f: tuple(Route(*row) for row in rows) for f, rows in doc["routes"].items()}
        rules = {f: tuple(RouteRule(*row) for row in rows) for f, rows in doc["rules"].items()}
        links = {str(k): bool(v) for k, v in doc["links"].items()}
        fwd = {f: {str(k): bool(v) for k, v in d.items()} for f, d in doc["forwarding"].items()}
    except (KeyError, TypeError, AttributeError, ValueError):
        return None
    return NetState(links, routes, rules, fwd)


def _route_row(r: Route):
    return (r.dst, r.dev, r.kind, r.table, r.metric, r.gateway, r.dead)


def _rule_row(r: RouteRule):
    return (r.priority, r.table, r.action, r.src, r.dst, r.iif, r.fwmark, r.fwmask, r.invert,
            r.suppress_prefixlen, r.unmodelled)  # fmt: skip
