"""The rules Docker writes with its iptables firewall backend, per binding, per bridge, globally.

Layouts follow docs/docker-rules.md: g27 (20.10, 23–27), g28.0 (28.0.0), g28 (28.0.1–28.x),
g29 (29.x, iptables backend). Rules are written in `iptables-save` syntax and parsed with the same
parser as the kernel's, so they compare by `normalize.rule_key`.
"""

from __future__ import annotations

from exporter.docker.model import DESIGN_DNAT, DESIGN_NONE, DESIGN_ROUTED, Binding, Daemon, Network
from exporter.expect.model import Expected, make


def _ep(family: str, ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if family == "ipv6" else f"{ip}:{port}"


def _host(family: str, ip: str) -> str:
    return f"{ip}/128" if family == "ipv6" else f"{ip}/32"


def for_binding(b: Binding, daemon: Daemon, net: Network | None) -> tuple[Expected, ...]:
    """Per-port rules for one binding (empty when Docker writes none for it)."""
    gen, fam = daemon.generation, b.family
    loop = b.design == DESIGN_NONE and b.loopback
    if net is None or not (b.design in (DESIGN_DNAT, DESIGN_ROUTED) or loop):
        return ()
    p, br, cip = b.protocol, b.bridge, b.container_ip
    match = f"-p {p} -m {p} --dport"
    proxy = daemon.userland_proxy is not False
    out = []
    if b.design != DESIGN_ROUTED and cip:
        dst = "" if b.wildcard else f"-d {_host(fam, b.host_ip)} "
        src = "! -s fe80::/10 " if fam == "ipv6" and gen != "g27" else ""
        iif = f"! -i {br} " if proxy else ""
        to = _ep(fam, cip, b.container_port)
        text = f"-A DOCKER {dst}{src}{iif}{match} {b.host_port} -j DNAT --to-destination {to}"
        out.append(make("dnat", fam, "nat", text))
    mode = net.gateway_mode6 if fam == "ipv6" else net.gateway_mode4
    if cip and mode != "nat-unprotected":
        dst = _host(fam, cip)
        text = f"-A DOCKER -d {dst} ! -i {br} -o {br} {match} {b.container_port} -j ACCEPT"
        out.append(make("forward_accept", fam, "filter", text))
    if cip and b.design == DESIGN_DNAT and (gen == "g27" or not proxy):
        h = _host(fam, cip)
        text = f"-A POSTROUTING -s {h} -d {h} {match} {b.container_port} -j MASQUERADE"
        out.append(make("hairpin_masquerade", fam, "nat", text))
    if loop and fam == "ipv4" and gen != "g27":
        text = f"-A PREROUTING -d {_host(fam, b.host_ip)} ! -i lo {match} {b.host_port} -j DROP"
        out.append(make("loopback_drop", fam, "raw", text))
    return tuple(out)


def for_bridge(net: Network, family: str, daemon: Daemon) -> tuple[Expected, ...]:
    """Per-bridge rules that every published port on this bridge depends on."""
    gen, br = daemon.generation, net.bridge
    proxy = daemon.userland_proxy is not False
    out: list[Expected] = []

    def add(kind, table, text):
        out.append(make(kind, family, table, text, br))

    if gen == "g27":
        add("jump", "filter", f"-A FORWARD -o {br} -j DOCKER")
        add("bridge_rule", "filter", f"-A FORWARD -o {br} {_CT} -j ACCEPT")
        add("bridge_rule", "filter", f"-A FORWARD -i {br} ! -o {br} -j ACCEPT")
    elif gen in ("g28", "g29"):
        add("jump", "filter", f"-A DOCKER-BRIDGE -o {br} -j DOCKER")
        add("bridge_rule", "filter", f"-A DOCKER-CT -o {br} {_CT} -j ACCEPT")
        if net.icc:
            add("bridge_rule", "filter", f"-A DOCKER-FORWARD -i {br} -j ACCEPT")
        else:
            add("bridge_rule", "filter", f"-A DOCKER-FORWARD -i {br} ! -o {br} -j ACCEPT")
    if proxy and gen in ("g27", "g28.0", "g28"):
        add("bridge_rule", "nat", f"-A DOCKER -i {br} -j RETURN")
    mode = net.gateway_mode6 if family == "ipv6" else net.gateway_mode4
    if net.masquerade and mode not in ("routed", "isolated"):  # those modes never NAT
        for sub in net.subnets6 if family == "ipv6" else net.subnets4:
            add("bridge_rule", "nat", f"-A POSTROUTING -s {sub} ! -o {br} -j MASQUERADE")
    return tuple(out)


_CT = "-m conntrack --ctstate RELATED,ESTABLISHED"


def global_jumps(family: str, daemon: Daemon) -> tuple[Expected, ...]:
    """The jumps that lead packets into Docker's chains; without them every port is dead."""
    gen = daemon.generation
    lo = "::1/128" if family == "ipv6" else "127.0.0.0/8"
    not_lo = f"! -d {lo} " if daemon.userland_proxy is not False else ""
    texts = [
        ("nat", "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER"),
        ("nat", f"-A OUTPUT {not_lo}-m addrtype --dst-type LOCAL -j DOCKER"),
        ("filter", "-A FORWARD -j DOCKER-USER"),
    ]
    if gen in ("g27", "g28.0"):
        texts.append(("filter", "-A FORWARD -j DOCKER-ISOLATION-STAGE-1"))
    if gen == "g28.0":
        v = "v6" if family == "ipv6" else "v4"
        ipset = f"-m set --match-set docker-ext-bridges-{v} dst"
        texts.append(("filter", f"-A FORWARD {ipset} -j DOCKER"))
    if gen in ("g28", "g29"):
        texts.append(("filter", "-A FORWARD -j DOCKER-FORWARD"))
        texts.append(("filter", "-A DOCKER-FORWARD -j DOCKER-CT"))
        if gen == "g28":
            texts.append(("filter", "-A DOCKER-FORWARD -j DOCKER-ISOLATION-STAGE-1"))
        texts.append(("filter", "-A DOCKER-FORWARD -j DOCKER-BRIDGE"))
    return tuple(make("jump", family, t, text) for t, text in texts)
