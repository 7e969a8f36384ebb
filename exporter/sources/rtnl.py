"""rtnetlink change notifications, read-only: links, addresses, routes, policy rules and the
forwarding switches (netconf) of this namespace.

A translated packet follows the host's routing: a bridge set down, a route that takes a
container's subnet elsewhere, a policy rule, an address or a forwarding switch changed can each
change a verdict. `subscribe()` opens a socket on the multicast groups that announce those
changes (no capability needed: any process may listen); `describe()` says what one batch of
messages changed, in words for the log, or nothing for the messages that change no published
port's path: routes the kernel clones for a PMTU exception, multicast routes, and link-local
addresses and routes (every veth gets one when a container starts, and again when its duplicate
address detection ends), which neither a remote client nor a container subnet uses.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from exporter.sources.nftnl import listen

NETLINK_ROUTE = 0
RCVBUF = 1 << 20
# RTNLGRP_*: LINK, IPV4_IFADDR, IPV4_ROUTE, IPV4_RULE, IPV6_IFADDR, IPV6_ROUTE, IPV6_RULE,
# IPV4_NETCONF, IPV6_NETCONF
GROUPS = (1, 5, 7, 8, 9, 11, 19, 24, 25)
# RTM_* → (what, how)
MESSAGES = {
    16: ("link", "changed"), 17: ("link", "deleted"), 20: ("address", "added"),
    21: ("address", "deleted"), 24: ("route", "added"), 25: ("route", "deleted"),
    32: ("rule", "added"), 33: ("rule", "deleted"), 80: ("forwarding", "changed"),
    81: ("forwarding", "changed"),
}  # fmt: skip
NLMSG_ERROR, NLMSG_DONE, NLMSG_OVERRUN = 2, 3, 4
RTM_GETLINK, NLM_F_DUMP_REQUEST = 18, 0x301  # NLM_F_REQUEST | NLM_F_DUMP
IFF_UP, IFLA_IFNAME, RTA_DST, RTM_F_CLONED = 0x1, 3, 1, 0x200
RT_SCOPE_LINK, RTN_MULTICAST = 253, 5
LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr
_ATTR = struct.Struct("=HH")  # struct rtattr
_IFINFO = struct.Struct("=BxHiII")  # struct ifinfomsg
_RTMSG = struct.Struct("=BBBBBBBBI")  # struct rtmsg
_IFADDR = struct.Struct("=BBBBI")  # struct ifaddrmsg


def subscribe() -> socket.socket:
    """A non-blocking socket receiving every link, address, route, rule and netconf change
    notification; raises OSError."""
    return listen(NETLINK_ROUTE, GROUPS, RCVBUF)


def link_states() -> dict[int, bool]:
    """Every link of this namespace: interface index → up (an RTM_GETLINK dump, read-only);
    raises OSError."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
        sock.settimeout(5)
        sock.bind((0, 0))
        req = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        sock.send(
            _HEADER.pack(_HEADER.size + len(req), RTM_GETLINK, NLM_F_DUMP_REQUEST, 1, 0) + req
        )
        links: dict[int, bool] = {}
        while True:
            data, at = sock.recv(1 << 16), 0
            while at + _HEADER.size <= len(data):
                length, mtype, _, _, _ = _HEADER.unpack_from(data, at)
                if mtype == NLMSG_DONE or length < _HEADER.size:
                    return links
                if mtype == NLMSG_ERROR:
                    raise OSError("rtnetlink link dump refused")
                body = data[at + _HEADER.size : at + length]
                if mtype == 16 and len(body) >= _IFINFO.size:
                    _, _, index, flags, _ = _IFINFO.unpack_from(body)
                    links[index] = bool(flags & IFF_UP)
                at += (length + 3) & ~3


def describe(data: bytes, links: dict[int, bool] | None = None) -> list[str]:
    """What the messages in one datagram changed (`link docker0 down`, `route 172.17.0.0/24
    added`); a message not understood is "network changed". `links` (interface index → up),
    when given, is the links' last known state, kept up to date: a link message that leaves a
    link as up or down as it was (the kernel sends them for carrier, statistics and bridge
    port changes too) changes nothing."""
    out: list[str] = []
    at = 0
    while at + _HEADER.size <= len(data):
        length, mtype, _, _, _ = _HEADER.unpack_from(data, at)
        if length < _HEADER.size or at + length > len(data):
            return [*out, "network changed"]
        body = data[at + _HEADER.size : at + length]
        at += (length + 3) & ~3
        if mtype in (NLMSG_ERROR, NLMSG_OVERRUN):
            out.append("network changed")
        elif mtype in MESSAGES:
            text = _message(mtype, body, links)
            if text:
                out.append(text)
    return out


def _message(mtype: int, body: bytes, links: dict[int, bool] | None = None) -> str:
    what, how = MESSAGES[mtype]
    if what == "link" and len(body) >= _IFINFO.size:
        _, _, index, flags, _ = _IFINFO.unpack_from(body)
        up = bool(flags & IFF_UP)
        if links is not None:
            was = links.pop(index, None) if how == "deleted" else links.get(index)
            if how != "deleted":
                links[index] = up
                if was == up:
                    return ""
        name = _attr(body[_IFINFO.size :], IFLA_IFNAME).rstrip(b"\0").decode("utf-8", "replace")
        state = "deleted" if how == "deleted" else "up" if up else "down"
        return f"link {name or '?'} {state}"
    if what == "address" and len(body) >= _IFADDR.size:
        return "" if _IFADDR.unpack_from(body)[3] == RT_SCOPE_LINK else f"address {how}"
    if what == "route" and len(body) >= _RTMSG.size:
        family, dst_len, *_, rtype, flags = _RTMSG.unpack_from(body)
        if flags & RTM_F_CLONED or rtype == RTN_MULTICAST:
            return ""  # a PMTU or redirect exception, a multicast route: no path changes
        prefix = _prefix(family, _attr(body[_RTMSG.size :], RTA_DST), dst_len)
        return "" if _link_local(prefix) else f"route {prefix} {how}"
    return f"{what} {how}"


def _attr(attrs: bytes, wanted: int) -> bytes:
    at = 0
    while at + _ATTR.size <= len(attrs):
        length, kind = _ATTR.unpack_from(attrs, at)
        if length < _ATTR.size:
            return b""
        if kind & 0x3FFF == wanted:
            return attrs[at + _ATTR.size : at + length]
        at += (length + 3) & ~3
    return b""


def _link_local(prefix: str) -> bool:
    try:
        net = ipaddress.ip_network(prefix, strict=False)
    except ValueError:
        return False
    return any(net.version == ll.version and net.subnet_of(ll) for ll in LINK_LOCAL)


def _prefix(family: int, dst: bytes, length: int) -> str:
    if family == socket.AF_INET and len(dst) == 4:
        return f"{socket.inet_ntop(family, dst)}/{length}"
    if family == socket.AF_INET6 and len(dst) == 16:
        return f"{socket.inet_ntop(family, dst)}/{length}"
    return "default" if not dst and length == 0 else "?"
