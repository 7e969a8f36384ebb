"""After translation the kernel routes the packet: to the container's bridge, or elsewhere.

Between nat PREROUTING and FORWARD the kernel looks the translated destination up (`ip rule` in
priority order, longest prefix in each table, lowest metric) and forwards only where the
incoming interface lets it: IPv4 checks `net.ipv4.conf.<in>.forwarding`, IPv6 the global
`conf.all.forwarding` (or the interface's `force_forwarding`). The container's reply comes in
on the bridge, so the bridge's own switch counts too. A bridge that is down, a more specific
route sending the subnet into a VPN, a blackhole: nothing reaches the container.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.netstate import NetState, Route, RouteRule, default_rules
from exporter.path.matching import MAYBE, NO, YES, addr_test
from exporter.path.routetable import inside, prefixlen, table_of
from exporter.path.sources import Sources

GLOBAL_KNOB = {"ipv4": "net.ipv4.ip_forward", "ipv6": "net.ipv6.conf.all.forwarding"}


@dataclass(frozen=True, slots=True)
class Routing:
    """What the walk needs of the host's network: its state (None: not read) and the family's
    global forwarding switch as the rule reader saw it (the fallback)."""

    net: NetState | None = None
    forwarding: bool | None = True


@dataclass(frozen=True, slots=True)
class Hop:
    reaches: bool | None  # the packet goes out on the bridge; None: cannot be told
    code: str = ""  # path.codes when it does not
    why: str = ""
    parts: tuple[Sources, ...] = ()  # the decision differs between these sources (outcome.Fork)


REACHES = Hop(True)  # shared: the common answer, once


def forwarding_off(r: Routing, family: str, iif: str | None) -> str | None:
    """The switch that keeps a packet coming in on `iif` from being forwarded (`knob=0`), or
    None when it is forwarded (or that cannot be told)."""
    table = (r.net.forwarding.get(family) if r.net else None) or {}
    if family == "ipv4" and iif and iif in table:
        return None if table[iif] else f"net.ipv4.conf.{iif}.forwarding=0"
    on = table.get("all", r.forwarding)
    if family == "ipv6" and on is False and iif and table.get(iif):
        return None  # force_forwarding on that interface
    return f"{GLOBAL_KNOB[family]}=0" if on is False else None


def towards(r: Routing, family: str, bridge: str, dst: str, src, iif: str | None, mark) -> Hop:
    """Whether the host routes a packet for the container address `dst` out on `bridge`."""
    net = r.net
    if net is None or family not in net.routes:
        return REACHES  # not read: the routes are not judged
    if net.links.get(bridge) is False:
        why = f"bridge {bridge} is down (`ip link set {bridge} up` brings it back)"
        return Hop(False, "bridge_down", why)
    rules = net.rules.get(family) or default_rules(family)
    for rule in rules:
        m = _applies(rule, src, dst, iif, mark)
        if m is NO:
            continue
        if type(m) is Sources:
            return Hop(None, parts=(m, src - m))
        if m is MAYBE:
            return Hop(None, "route_undecidable", f"ip rule `{rule.text}` may or may not apply")
        if rule.action in ("blackhole", "unreachable", "prohibit"):
            return Hop(False, "no_route", f"ip rule `{rule.text}` refuses it")
        if rule.action != "lookup":
            if rule.action == "nop":
                continue
            return Hop(None, "route_undecidable", f"ip rule `{rule.text}` is not modelled")
        route = table_of(net.routes[family]).lookup(rule.table, dst)
        if route is None or route.kind == "throw":
            continue
        if prefixlen(route.dst) <= rule.suppress_prefixlen:
            continue
        return _out(route, bridge, dst)
    return Hop(False, "no_route", f"the host has no route to {dst}")


def _out(route: Route, bridge: str, dst: str) -> Hop:
    if route.kind in ("blackhole", "unreachable", "prohibit"):
        return Hop(False, "no_route", f"the host's route `{route.text}` discards it")
    if route.kind != "unicast" or route.dev != bridge:
        where = f"via {route.dev}" if route.dev else f"as {route.kind}"
        why = f"the host routes {dst} {where} (`{route.text}`), not to bridge {bridge}"
        return Hop(False, "routed_elsewhere", why)
    return REACHES


def _applies(rule: RouteRule, src, dst: str, iif: str | None, mark):
    """YES, NO, MAYBE, or the part of a class of sources it applies to."""
    if rule.unmodelled or "?" in rule.src + rule.dst:
        return MAYBE
    result = YES
    for test in (_fwmark(rule, mark), _iif(rule, iif), _dst(rule, dst)):
        if test is NO:
            return _invert(rule, NO)
        if test is MAYBE:
            result = MAYBE
    part = addr_test(src, rule.src) if rule.src else YES
    if part is NO:
        return _invert(rule, NO)
    if result is MAYBE or part is MAYBE:
        return MAYBE
    if type(part) is Sources:
        return src - part if rule.invert else part
    return _invert(rule, YES)


def _invert(rule: RouteRule, m):
    return m if not rule.invert else (NO if m is YES else YES)


def _fwmark(rule: RouteRule, mark):
    if rule.fwmark is None:
        return YES
    if mark is None:
        return MAYBE
    return YES if (mark & rule.fwmask) == rule.fwmark else NO


def _iif(rule: RouteRule, iif: str | None):
    if not rule.iif:
        return YES
    if iif is None:
        return MAYBE
    return YES if iif == rule.iif else NO


def _dst(rule: RouteRule, dst: str):
    if not rule.dst:
        return YES
    return YES if inside(dst, rule.dst) else NO
