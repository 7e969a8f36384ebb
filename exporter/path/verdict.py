"""What a remote client's new connection to a published port experiences, and why.

The path: raw PREROUTING → nat PREROUTING (first DNAT) → routing → filter FORWARD to the bridge
and the reply's way back through FORWARD; or, untranslated, filter INPUT to docker-proxy.
"""

from __future__ import annotations

from dataclasses import replace

from exporter.docker.model import (
    DESIGN_BLIND,
    DESIGN_NONE,
    DESIGN_PROXY,
    DESIGN_ROUTED,
    Binding,
    Daemon,
)
from exporter.path.classes import REACH, SEVERITY, SourceClass, exposure_of, summarise
from exporter.path.forward import forward
from exporter.path.index import IndexedRuleset
from exporter.path.matching import LOCAL, REMOTE, Env, Packet
from exporter.path.outcome import Fork
from exporter.path.owner import DOCKER, HOST
from exporter.path.route import Routing
from exporter.path.sources import Sources, client_space, describe
from exporter.path.steps import MSS, Probe, Verdict, rule_desc, settled, stopped, through
from exporter.path.walk import Walker

STATES = ("ok", "proxied", "masqueraded", "misrouted", "dropped", "unreachable", "unknown")
SYN = frozenset({"SYN"})
MAX_CLASSES = 1024  # source classes walked per binding and host address (a bound, not a goal)


def judge(
    b: Binding,
    daemon: Daemon,
    rulesets: list[IndexedRuleset] | None,
    env: Env,
    probes: list[Probe],
    owners: dict[tuple[str, int], str],
    client: str | Sources = REMOTE,
    forwarding: Routing | bool | None = True,
    missing: bool = False,
) -> Verdict:
    """The state of one binding. `rulesets` is None when the family's rules could not be read;
    `owners` maps (container address, port) to the container that serves it; `client` is the
    modelled clients' addresses (a Sources, one address, or REMOTE: every remote address);
    `missing`: a rule Docker's layout expects for it is missing, so what falls through to a
    chain policy falls through because of Docker's rules."""
    if b.design == DESIGN_BLIND:
        return Verdict("unknown", b.design_code, b.why, exposure="unknown")
    if b.design == DESIGN_NONE and not (b.loopback and rulesets is None):
        return Verdict("ok", b.design_code, b.why, exposure="local", allowed="none")
    if rulesets is None:  # a loopback binding too: since 28 its protection is a raw DROP rule
        why = f"{b.family} rules could not be read"
        return Verdict("unknown", "rules_unreadable", why, exposure="unknown")
    space = _space(client, b.family)
    ctx = (daemon, rulesets, env, owners, forwarding, missing)
    verdicts = [_classified(b, pr, space, ctx) for pr in probes]
    # Worst first: a port broken for one of the host's addresses is broken.
    i = min(range(len(verdicts)), key=lambda k: SEVERITY[verdicts[k].state])
    worst = verdicts[i]
    if len(probes) > 1:  # reached through any of the host's addresses is reached
        allowed = Sources(space.version)
        for c in (c for v in verdicts for c in v.classes if c.state in REACH):
            allowed = allowed | c.sources
        unknown = any(v.exposure == "unknown" for v in verdicts)
        exposure = exposure_of(allowed, space, unknown)
        worst = replace(worst, exposure=exposure, allowed=describe(allowed, space))
    if len(probes) > 1 and any(v.state != worst.state for v in verdicts):
        return replace(worst, reason=f"via {probes[i].dst}: {worst.reason}")
    return worst


def _space(client: str | Sources, family: str) -> Sources:
    if isinstance(client, Sources):
        return client
    one = Sources.parse(client) if client != REMOTE else None
    return one if one is not None else client_space(family)


def _classified(b: Binding, pr: Probe, space: Sources, ctx) -> Verdict:
    """Walk the path once per class of sources the rules on it tell apart: a walk that meets a
    hook whose outcome differs inside its class is repeated for each part (outcome.Fork)."""
    daemon, rulesets, env, owners, forwarding, _ = ctx
    todo, done = [space], []
    while todo:
        part, w = todo.pop(), Walker(env)
        if len(done) + len(todo) >= MAX_CLASSES:
            why = f"more than {MAX_CLASSES} classes of source addresses"
            done.append(_class(part, Verdict("unknown", "undecidable_rule", why), ctx, space))
            continue
        try:
            v = _path(b, pr, daemon, rulesets, env, owners, part, forwarding, w)
        except Fork as fork:
            todo.extend(fork.parts)
            v = None
        done += [_class(st.sources, settled(st), ctx, space) for st in w.settled]
        if v is not None:
            done.append(_class(w.only or part, v, ctx, space))
    if len(done) > 1:
        done.sort(key=lambda c: c.sources.spans[0] if c.sources.spans else (0, 0))
    s = summarise(done, space)
    return Verdict(s.state, s.code, s.reason, s.rule, s.owner, tuple(done), s.exposure, s.allowed)


def _class(part: Sources, v: Verdict, ctx, space: Sources) -> SourceClass:
    missing = ctx[-1]
    owner = DOCKER if missing and v.state == "dropped" and not v.rule else v.owner
    return SourceClass(part, v.state, v.code, v.reason, v.rule, owner, describe(part, space))


def _path(b, pr: Probe, daemon, rulesets, env, owners, client, forwarding, w=None) -> Verdict:
    w = w or Walker(env)
    routed = b.design == DESIGN_ROUTED
    pkt = Packet(
        family=b.family,
        proto=b.protocol,
        src=client,
        dst=b.container_ip if routed else (pr.dst or LOCAL),
        sport=None,
        dport=b.container_port if routed else b.host_port,
        iif=pr.iif,
        oif=None,
        ctstate="NEW",
        dst_local=not routed,
        src_local=False,
        tcp_flags=SYN,
        mss=MSS[b.family] if b.protocol == "tcp" else None,
    )
    pre = [("raw", "PREROUTING"), ("mangle", "PREROUTING")]
    stop, pkt = through(w, rulesets, pre, pkt, "the connection is")
    if stop:
        return stop
    if pkt.ctstate == "UNTRACKED":  # no conntrack, no NAT: the packet stays addressed as sent
        if routed:
            return forward(b, rulesets, w, pkt, None, forwarding)
        return _local(b, daemon, rulesets, w, pkt)
    nat = w.hook(rulesets, "nat", "PREROUTING", pkt)
    stop = stopped(nat, "the connection is", "PREROUTING")
    if stop:
        return stop
    if nat.verdict == "REDIRECT":
        why = f"{rule_desc(nat)} redirects it to a local port"
        return Verdict("misrouted", "redirected", why, nat.rule.text, nat.owner)
    if nat.verdict == "DNAT":
        addr, port = nat.to[0], nat.to[1] if nat.to[1] is not None else pkt.dport
        if (addr, port) != (b.container_ip, b.container_port):
            owner = owners.get((addr, port))
            whose = f" (container {owner})" if owner else " (no container has it)"
            dest = f"{addr}:{port}{whose} instead of {b.container_ip}:{b.container_port}"
            why = f"{rule_desc(nat)} sends it to {dest}"
            return Verdict("misrouted", "shadowed_by_dnat", why, nat.rule.text, nat.owner)
        return forward(b, rulesets, w, nat.out or pkt, nat, forwarding)
    pkt = nat.out or pkt
    if routed:
        return forward(b, rulesets, w, pkt, None, forwarding)
    return _local(b, daemon, rulesets, w, pkt)


def _local(b: Binding, daemon: Daemon, rulesets, w: Walker, pkt: Packet) -> Verdict:
    """No DNAT applied: the connection is for the host itself, where docker-proxy may listen."""
    hooks = [("mangle", "INPUT"), ("filter", "INPUT")]
    stop, _ = through(w, rulesets, hooks, pkt, "the untranslated connection is")
    if stop:
        return stop
    serves, how = proxy_serves(b, daemon)
    none, untracked = "no DNAT applies", pkt.ctstate == "UNTRACKED"
    if untracked:
        none = f"the connection is untracked (by {pkt.untracked_by}), so no DNAT applies"
    if serves is None:
        return Verdict("unknown", "proxy_unknown", f"{none} and {how}", owner=DOCKER)
    if not serves:
        code = "untracked_no_proxy" if untracked else "no_proxy"
        return Verdict(
            "unreachable", code, f"{none} and {how}", owner=HOST if untracked else DOCKER
        )
    if b.design == DESIGN_PROXY:
        return Verdict("ok", "proxy_by_design", f"{b.why}; {how}")
    why = f"{none}; {how}: it works but the container sees the host"
    return Verdict("proxied", "untracked_proxied" if untracked else "dnat_missing", why)


def proxy_serves(b: Binding, daemon: Daemon) -> tuple[bool | None, str]:
    if daemon.proxy_endpoints is not None:
        for host_ip in (b.host_ip, "0.0.0.0" if b.family == "ipv4" else "::", ""):
            if (b.protocol, host_ip, b.host_port) in daemon.proxy_endpoints:
                return True, "docker-proxy listens"
        off = "" if daemon.userland_proxy else " (userland proxy off: dockerd only holds it)"
        return False, f"no docker-proxy process listens on it{off}"
    if daemon.userland_proxy is None:
        return (
            None,
            "whether docker-proxy serves it cannot be told (userland proxy setting unknown)",
        )
    if daemon.userland_proxy:
        return True, "docker-proxy serves it (userland proxy on)"
    return False, "the userland proxy is off (dockerd holds the port: connects, then silence)"


__all__ = ["DESIGN_PROXY", "SEVERITY", "STATES", "Probe", "Verdict", "judge", "proxy_serves"]
