"""The rules Docker 29's nftables firewall backend should have installed
(docs/docker-rules.md, the nftables backend).

Tables `ip docker-bridges` / `ip6 docker-bridges`. Each rule is built as the `nft -j` expressions
Docker's own rule text parses to (daemon/libnetwork/drivers/bridge/internal/nftabler) and goes
through the same translation as the kernel's rules (nftexpr), so the two compare by
`normalize.rule_key`. Expected.table/chain name where the parsed rules live in a NativeRuleset:
the iptables table the base chain is walked as, and the built-in name or `nft:<chain>`.
"""

from __future__ import annotations

from exporter.docker.model import DESIGN_DNAT, DESIGN_NONE, DESIGN_ROUTED, Binding, Daemon, Network
from exporter.expect.model import Expected
from exporter.rules.model import Rule
from exporter.rules.nftexpr import CHAIN_PREFIX, translate
from exporter.rules.nftprint import rule_text
from exporter.rules.normalize import rule_key

TABLE = "docker-bridges"
NAT_CHAIN = "nat-prerouting-and-output"
BASE_CHAINS = {
    "raw-PREROUTING": ("raw", "PREROUTING"),
    "nat-PREROUTING": ("nat", "PREROUTING"),
    "nat-OUTPUT": ("nat", "OUTPUT"),
    "nat-POSTROUTING": ("nat", "POSTROUTING"),
    "filter-FORWARD": ("filter", "FORWARD"),
}


def nft_family(family: str) -> str:
    return "ip6" if family == "ipv6" else "ip"


def label(family: str) -> str:
    return f"{nft_family(family)} {TABLE}"


def _m(op: str, left: dict, right) -> dict:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str) -> dict:
    return {"meta": {"key": key}}


def _pl(proto: str, field: str) -> dict:
    return {"payload": {"protocol": proto, "field": field}}


def _fib_local(flag: str) -> dict:
    return _m("==", {"fib": {"result": "type", "flags": [flag]}}, "local")


def _prefix(cidr: str) -> dict:
    addr, _, length = cidr.partition("/")
    return {"prefix": {"addr": addr, "len": int(length)}} if length else addr


def expected(kind, family, chain, exprs, bridge="", comment="", display="") -> Expected:
    """One expected rule in `chain` of Docker's table for `family`."""
    table, key_chain = BASE_CHAINS.get(chain) or (chain.split("-", 1)[0], CHAIN_PREFIX + chain)
    alt = translate(exprs, family, {})[0]
    rule = Rule(family, label(family), chain, 0, alt.conds, alt.target, alt.target_opts, alt.goto)
    text = rule_text(exprs, comment)
    shown = display or f"nft add rule {label(family)} {chain} {text}"
    key = rule_key(rule)
    return Expected(kind, family, table, key_chain, rule.target, text, key, bridge, shown)


# Verdict maps: the base chain that looks them up, and on which interface name.
MAPS = {
    "filter-forward-in-jumps": ("filter-FORWARD", "oifname"),
    "filter-forward-out-jumps": ("filter-FORWARD", "iifname"),
    "nat-postrouting-in-jumps": ("nat-POSTROUTING", "oifname"),
    "nat-postrouting-out-jumps": ("nat-POSTROUTING", "iifname"),
}


def _element(kind: str, family: str, map_name: str, bridge: str) -> Expected:
    """The map element that sends the bridge's packets to its own chain, e.g.
    `"bridge1" : jump filter-forward-in__bridge1` in filter-forward-in-jumps."""
    chain, iface = MAPS[map_name]
    target = f"{map_name.removesuffix('-jumps')}__{bridge}"
    jump = {"jump": {"target": target}}
    exprs = [{"vmap": {"key": _meta(iface), "data": {"set": [[bridge, jump]]}}}]
    shown = f'nft add element {label(family)} {map_name} {{ "{bridge}" : jump {target} }}'
    return expected(kind, family, chain, exprs, bridge, display=shown)


def for_binding(b: Binding, daemon: Daemon, net: Network | None) -> tuple[Expected, ...]:
    """Per-port rules (port.go: setPerPortForwarding, setPerPortDNAT, setPerPortHairpinMasq,
    filterPortMappedOnLoopback)."""
    loop = b.design == DESIGN_NONE and b.loopback
    if net is None or not b.container_ip or not (b.design in (DESIGN_DNAT, DESIGN_ROUTED) or loop):
        return ()
    fam, ip, p, br = b.family, nft_family(b.family), b.protocol, b.bridge
    proxy = daemon.userland_proxy is not False
    cdport = _m("==", _pl(p, "dport"), b.container_port)
    to_c = [_m("==", _pl(ip, "daddr"), b.container_ip), cdport]
    out = []
    if b.design != DESIGN_ROUTED:
        exprs = [_m("!=", _meta("iifname"), br)] if proxy else []
        if fam == "ipv6":
            exprs.append(_m("!=", _pl("ip6", "saddr"), _prefix("fe80::/10")))
        if not b.wildcard:
            exprs.append(_m("==", _pl(ip, "daddr"), b.host_ip))
        exprs += [_m("==", _pl(p, "dport"), b.host_port), {"counter": None}]
        exprs.append({"dnat": {"addr": b.container_ip, "port": b.container_port}})
        out.append(expected("dnat", fam, NAT_CHAIN, exprs, comment="DNAT"))
    mode = net.gateway_mode6 if fam == "ipv6" else net.gateway_mode4
    if mode != "nat-unprotected":
        exprs = [*to_c, {"counter": None}, {"accept": None}]
        out.append(expected("forward_accept", fam, f"filter-forward-in__{br}", exprs))
    if b.design == DESIGN_DNAT and not proxy:
        src = _m("==", _pl(ip, "saddr"), b.container_ip)
        exprs = [src, *to_c, {"counter": None}, {"masquerade": None}]
        chain = f"nat-postrouting-in__{br}"
        out.append(expected("hairpin_masquerade", fam, chain, exprs, comment="MASQ TO OWN PORT"))
    if loop and fam == "ipv4":
        exprs = [_m("!=", _meta("iifname"), "lo"), _m("==", _pl(ip, "daddr"), b.host_ip)]
        exprs += [_m("==", _pl(p, "dport"), b.host_port), {"counter": None}, {"drop": None}]
        drop = "DROP REMOTE LOOPBACK"
        out.append(expected("loopback_drop", fam, "raw-PREROUTING", exprs, comment=drop))
    return tuple(out)


def for_bridge(net: Network, family: str, daemon: Daemon) -> tuple[Expected, ...]:
    """Per-bridge rules: the verdict-map elements that lead into the bridge's chains (the
    forward one is the "jump" every published port depends on), conntrack, outgoing, NAT."""
    br = net.bridge
    accept = [{"counter": None}, {"accept": None}]
    ct = [_m("in", {"ct": {"key": "state"}}, ["established", "related"]), *accept]
    fwd_in, fwd_out = f"filter-forward-in__{br}", f"filter-forward-out__{br}"
    out = [
        _element("jump", family, "filter-forward-in-jumps", br),
        _element("bridge_rule", family, "filter-forward-out-jumps", br),
        expected("bridge_rule", family, fwd_in, ct, br),
        expected("bridge_rule", family, fwd_out, ct, br),
        expected("bridge_rule", family, fwd_out, accept, br, "OUTGOING"),
    ]
    mode = net.gateway_mode6 if family == "ipv6" else net.gateway_mode4
    if net.masquerade and mode not in ("routed", "isolated"):
        post_out = f"nat-postrouting-out__{br}"
        out.append(_element("bridge_rule", family, "nat-postrouting-out-jumps", br))
        ip = nft_family(family)
        for sub in net.subnets6 if family == "ipv6" else net.subnets4:
            exprs = [_m("!=", _meta("oifname"), br), _m("==", _pl(ip, "saddr"), _prefix(sub))]
            exprs += [{"counter": None}, {"masquerade": None}]
            out.append(expected("bridge_rule", family, post_out, exprs, br, "MASQUERADE"))
    return tuple(out)


def global_jumps(family: str, daemon: Daemon) -> tuple[Expected, ...]:
    """nat-PREROUTING and nat-OUTPUT into nat-prerouting-and-output; without them no port is
    translated. With the userland proxy on, nat-OUTPUT leaves loopback to docker-proxy."""
    jump = [{"counter": None}, {"jump": {"target": NAT_CHAIN}}]
    pre = expected("jump", family, "nat-PREROUTING", [_fib_local("daddr"), *jump])
    lo = _m("!=", _pl("ip6", "daddr"), "::1") if family == "ipv6" else None
    lo = lo or _m("!=", _pl("ip", "daddr"), _prefix("127.0.0.0/8"))
    not_lo = [lo] if daemon.userland_proxy is not False else []
    out_ = expected("jump", family, "nat-OUTPUT", [*not_lo, _fib_local("daddr"), *jump])
    return (pre, out_)


def stale(rulesets, family: str, dnat_sig, accept_sig, dnat_live, accept_live) -> list[tuple]:
    """DNAT rules in nat-prerouting-and-output and per-port accepts in filter-forward-in__*
    of Docker's table that serve no live binding, as (backend, table, chain, ref, text)."""
    out, seen = [], set()
    for rs in rulesets:
        if getattr(rs, "nft_table", "") != label(family):
            continue
        for table in rs.tables.values():
            for key, chain in table.chains.items():
                name = key.removeprefix(CHAIN_PREFIX)
                if key == name or (rs.nft_table, name) in seen:
                    continue
                seen.add((rs.nft_table, name))
                for r in chain.rules:
                    if name == NAT_CHAIN and r.target == "DNAT":
                        dead = dnat_sig(r) not in dnat_live
                    elif name.startswith("filter-forward-in__") and r.target == "ACCEPT":
                        sig = accept_sig(r)
                        dead = sig is not None and sig not in accept_live
                    else:
                        dead = False
                    if dead:
                        out.append(("nft", rs.nft_table, name, r.ref, r.text))
    return out
