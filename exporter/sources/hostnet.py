"""The host's network: its addresses (where a remote client's connection arrives), links,
routes and forwarding switches (whether a translated packet reaches the bridge)."""

from __future__ import annotations

import json
import os
from dataclasses import replace

from exporter.netstate import FAMILIES, NetState, parse_links, parse_routes, parse_rules
from exporter.sources.run import run


def host_addresses(timeout: float = 5.0) -> tuple[tuple[str, str], ...] | None:
    """(interface, address) pairs from `ip -j addr`; None when they cannot be read."""
    r = run(["ip", "-j", "addr", "show"], timeout)
    if not r.ok:
        return None
    return parse_ip_addr_json(r.stdout)


def parse_ip_addr_json(text: str) -> tuple[tuple[str, str], ...] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    out = []
    for link in data if isinstance(data, list) else ():
        if not isinstance(link, dict):
            continue
        name = str(link.get("ifname", ""))
        for a in link.get("addr_info") or ():
            if isinstance(a, dict) and a.get("local"):
                out.append((name, str(a["local"])))
    return tuple(out)


SYSCTL_CONF = "/proc/sys/net/{v}/conf"


def read_netstate(timeout: float = 5.0, sysctl_conf: str = SYSCTL_CONF) -> NetState:
    """Links, routes of every table, policy rules and forwarding switches, read-only: `ip -j
    link`, `ip -j -4|-6 route show table all`, `ip -j -4|-6 rule show`, /proc/sys/net/*/conf.
    What cannot be read is left out (its part of the verdict is not judged) and named in
    `errors`."""
    errors: list[str] = []
    links: dict[str, bool] = {}
    r = run(["ip", "-j", "link", "show"], timeout)
    if r.ok:
        links = parse_links(r.stdout)
    else:
        errors.append(f"ip -j link: {r.error}")
    routes, rules, forwarding = {}, {}, {}
    for family in FAMILIES:
        flag = "-6" if family == "ipv6" else "-4"
        r = run(["ip", "-j", flag, "route", "show", "table", "all"], timeout)
        if r.ok:
            routes[family] = parse_routes(r.stdout, family)
        else:
            errors.append(f"ip -j {flag} route: {r.error}: routes not judged")
        r = run(["ip", "-j", flag, "rule", "show"], timeout)
        if r.ok:
            rules[family] = parse_rules(r.stdout, family)
        elif family in routes:  # without the rules, a lookup in main alone could be wrong
            del routes[family]
            errors.append(f"ip -j {flag} rule: {r.error}: routes not judged")
        forwarding[family] = _forwarding(family, sysctl_conf)
    return NetState(links, routes, rules, forwarding, tuple(errors))


def with_forwarding(net: NetState, sysctl_conf: str = SYSCTL_CONF) -> NetState:
    """`net` with its forwarding switches read now (a reused read: netconf notifications may
    not tell of every switch, and reading them costs little)."""
    return replace(net, forwarding={f: _forwarding(f, sysctl_conf) for f in FAMILIES})


def _forwarding(family: str, sysctl_conf: str) -> dict[str, bool]:
    """IPv4: conf.<if>.forwarding of every interface and `all`; IPv6: conf.all.forwarding as
    "all" and each interface's force_forwarding (kernels that have it)."""
    v = "ipv6" if family == "ipv6" else "ipv4"
    base = sysctl_conf.format(v=v)
    out: dict[str, bool] = {}
    try:
        names = os.listdir(base)
    except OSError:
        return out
    for name in names:
        key = "forwarding" if v == "ipv4" or name == "all" else "force_forwarding"
        try:
            with open(os.path.join(base, name, key)) as f:
                out[name] = f.read().strip() != "0"
        except OSError:
            continue
    return out
