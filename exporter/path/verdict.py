"""What a remote client's new connection to a published port experiences, and why.

The path: raw PREROUTING → nat PREROUTING (first DNAT) → routing → filter FORWARD to the bridge
and the reply's way back through FORWARD; or, untranslated, filter INPUT to docker-proxy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from exporter.docker.model import (
    DESIGN_BLIND,
    DESIGN_NONE,
    DESIGN_PROXY,
    DESIGN_ROUTED,
    Binding,
    Daemon,
)
from exporter.path.classes import REACH, SEVERITY, SourceClass, exposure_of, summarise
from exporter.path.codes import policy_drop
from exporter.path.matching import LOCAL, REMOTE, Env, Packet
from exporter.path.owner import DOCKER, HOST
from exporter.path.sources import Sources, client_space, describe
from exporter.path.walk import Fork, IndexedRuleset, Outcome, Settled, Walker

STATES = ("ok", "proxied", "masqueraded", "misrouted", "dropped", "unreachable", "unknown")
# The MSS option of a client's SYN on an Ethernet path (MTU 1500 less the IP and TCP headers).
MSS = {"ipv4": 1460, "ipv6": 1440}
MAX_CLASSES = 1024  # source classes walked per binding and host address (a bound, not a goal)


@dataclass(frozen=True, slots=True)
class Verdict:
    state: str
    code: str  # stable, in exporter.path.codes.CODES: the metric's reason label
    reason: str  # free text naming the deciding rule and its position: check, status page
    rule: str = ""  # the deciding rule as the kernel lists it, with its position
    owner: str = ""  # whose rule decided a state other than ok/proxied (path.owner)
    classes: tuple[SourceClass, ...] = ()  # what each class of remote sources gets
    exposure: str = ""  # public | restricted | local | unknown (path.classes)
    allowed: str = ""  # the remote sources that reach the port (path.sources.describe)


@dataclass(frozen=True, slots=True)
class Probe:
    """Where the modelled client aims: one local address (None: unknown) and its interface."""

    dst: str | None
    iif: str | None


def _rule_desc(o: Outcome) -> str:
    if o.rule is None:
        return o.why
    more = f" ({o.why})" if o.why else ""  # "and 49 more rules of filter/DOCKER-USER"
    return f"{o.rule.ref} `{o.rule.text}`{more}"


def _stopped(o: Outcome, what: str, chain: str, reply: bool = False) -> Verdict | None:
    """The verdict when `o`, the outcome of `chain` for the connection (or for the container's
    replies), stops it."""
    text = o.rule.text if o.rule else ""
    if o.verdict in ("DROP", "REJECT"):
        code = "reply_dropped" if reply else "dropped_by_rule" if o.rule else policy_drop(chain)
        return Verdict("dropped", code, f"{what} dropped by {_rule_desc(o)}", text, o.owner)
    if o.verdict == "UNKNOWN":
        return _unknown(o)
    return None


def _unknown(o: Outcome) -> Verdict:
    # The walker names a rule for every undecidable case; only an unreadable table has none.
    code = "undecidable_rule" if o.rule else "rules_unreadable"
    return Verdict("unknown", code, o.why, o.rule.text if o.rule else "", o.owner)


def judge(
    b: Binding,
    daemon: Daemon,
    rulesets: list[IndexedRuleset] | None,
    env: Env,
    probes: list[Probe],
    owners: dict[tuple[str, int], str],
    client: str | Sources = REMOTE,
    forwarding: bool | None = True,
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
    hook whose outcome differs inside its class is repeated for each part (walk.Fork)."""
    daemon, rulesets, env, owners, forwarding, missing = ctx
    todo, done = [space], []
    while todo:
        part, w = todo.pop(), Walker(env)
        if len(done) + len(todo) >= MAX_CLASSES:
            why = f"more than {MAX_CLASSES} classes of source addresses"
            done.append(_class(part, Verdict("unknown", "undecidable_rule", why), missing))
            continue
        try:
            v = _path(b, pr, daemon, rulesets, env, owners, part, forwarding, w)
        except Fork as fork:
            todo.extend(fork.parts)
            v = None
        done += [_class(st.sources, _settled(st), missing) for st in w.settled]
        if v is not None:
            done.append(_class(w.only or part, v, missing))
    done.sort(key=lambda c: c.sources.spans[0] if c.sources.spans else (0, 0))
    s = summarise(done, space)
    return Verdict(s.state, s.code, s.reason, s.rule, s.owner, tuple(done), s.exposure, s.allowed)


def _class(part: Sources, v: Verdict, missing: bool) -> SourceClass:
    owner = DOCKER if missing and v.state == "dropped" and not v.rule else v.owner
    return SourceClass(part, v.state, v.code, v.reason, v.rule, owner)


# What a hook stops, as _path's walks say it
STOPPED = {(False, "PREROUTING"): "the connection is",
           (False, "FORWARD"): "after translation the connection is",
           (False, "INPUT"): "the untranslated connection is",
           (False, "POSTROUTING"): "on its way to the bridge the connection is",
           (True, "PREROUTING"): "the container's replies are",
           (True, "FORWARD"): "the replies are"}  # fmt: skip


def _settled(st: Settled) -> Verdict:
    """The verdict of a part of the client class the walk left behind at a hook."""
    what = STOPPED.get((st.reply, st.chain), "the connection is")
    return _stopped(st.outcome, what, st.chain, st.reply)


def _through(w: Walker, rulesets, hooks, pkt: Packet, what: str):
    """Walk `hooks` ((table, chain) pairs) in order; a stop verdict, or None and the packet as
    the last hook let it go (its marks and conntrack state carried from hook to hook)."""
    for table, chain in hooks:
        o = w.hook(rulesets, table, chain, pkt)
        stop = _stopped(o, what, chain, pkt.reply)
        if stop:
            return stop, pkt
        pkt = o.out or pkt
    return None, pkt


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
        tcp_flags=frozenset({"SYN"}),
        mss=MSS[b.family] if b.protocol == "tcp" else None,
    )
    pre = [("raw", "PREROUTING"), ("mangle", "PREROUTING")]
    stop, pkt = _through(w, rulesets, pre, pkt, "the connection is")
    if stop:
        return stop
    if pkt.ctstate == "UNTRACKED":  # no conntrack, no NAT: the packet stays addressed as sent
        if routed:
            return _forward(b, rulesets, w, pkt, None, forwarding)
        return _local(b, daemon, rulesets, w, pkt)
    nat = w.hook(rulesets, "nat", "PREROUTING", pkt)
    stop = _stopped(nat, "the connection is", "PREROUTING")
    if stop:
        return stop
    if nat.verdict == "REDIRECT":
        why = f"{_rule_desc(nat)} redirects it to a local port"
        return Verdict("misrouted", "redirected", why, nat.rule.text, nat.owner)
    if nat.verdict == "DNAT":
        addr, port = nat.to[0], nat.to[1] if nat.to[1] is not None else pkt.dport
        if (addr, port) != (b.container_ip, b.container_port):
            owner = owners.get((addr, port))
            whose = f" (container {owner})" if owner else " (no container has it)"
            dest = f"{addr}:{port}{whose} instead of {b.container_ip}:{b.container_port}"
            why = f"{_rule_desc(nat)} sends it to {dest}"
            return Verdict("misrouted", "shadowed_by_dnat", why, nat.rule.text, nat.owner)
        return _forward(b, rulesets, w, nat.out or pkt, nat, forwarding)
    pkt = nat.out or pkt
    if routed:
        return _forward(b, rulesets, w, pkt, None, forwarding)
    return _local(b, daemon, rulesets, w, pkt)


def _forward(b: Binding, rulesets, w: Walker, pkt: Packet, nat, forwarding) -> Verdict:
    if forwarding is False:
        knob = "net.ipv6.conf.all.forwarding" if b.family == "ipv6" else "net.ipv4.ip_forward"
        why = f"after translation the connection is not forwarded: {knob}=0"
        return Verdict("dropped", "ip_forward_off", why, owner=HOST)
    fwd = replace(
        pkt,
        dst=b.container_ip,
        dport=b.container_port,
        oif=b.bridge,
        dst_local=False,
        orig_dst=pkt.dst,
        orig_dport=pkt.dport,
    )
    hooks = [("mangle", "FORWARD"), ("filter", "FORWARD")]
    stop, fwd = _through(w, rulesets, hooks[:1], fwd, "after translation the connection is")
    if stop:
        return stop
    o = w.hook(rulesets, "filter", "FORWARD", fwd)
    stop = _stopped(o, "after translation the connection is", "FORWARD")
    if stop:
        return stop
    snat, fwd = _postrouting(w, rulesets, o.out or fwd)
    if isinstance(snat, Verdict):
        return snat
    stop = _replies(b, rulesets, w, pkt, fwd)
    if stop:
        return stop
    how = f"DNAT by {nat.rule.ref}" if nat and nat.rule else "routed"
    if fwd.ctstate == "UNTRACKED":
        how += f" untracked (by {fwd.untracked_by})"
    accepted = o.rule.ref if o.rule else o.why or "policy"
    rule = nat.rule.text if nat and nat.rule else ""
    if snat is not None:
        why = (f"{how}, accepted by {accepted}, then {_rule_desc(snat)} rewrites the source: "
               "the container sees a host address, not the client's")  # fmt: skip
        text = snat.rule.text if snat.rule else rule
        return Verdict("masqueraded", "source_nat", why, text, snat.owner)
    code = "routed_accepted" if b.design == DESIGN_ROUTED else "dnat_accepted"
    return Verdict("ok", code, f"{how}, accepted by {accepted}", rule)


def _postrouting(w: Walker, rulesets, fwd: Packet):
    """mangle and nat POSTROUTING towards the bridge: a stop Verdict, or the source NAT rule
    that applies (None: none), and the packet."""
    what = "on its way to the bridge the connection is"
    stop, fwd = _through(w, rulesets, [("mangle", "POSTROUTING")], fwd, what)
    if stop or fwd.ctstate == "UNTRACKED":  # nat hooks never see an untracked packet
        return stop, fwd
    o = w.hook(rulesets, "nat", "POSTROUTING", fwd)
    stop = _stopped(o, what, "POSTROUTING")
    if stop:
        return stop, fwd
    return (o if o.verdict == "NAT" else None), o.out or fwd


def _replies(b: Binding, rulesets, w: Walker, pkt: Packet, fwd: Packet) -> Verdict | None:
    """The container's SYN-ACK: a new packet (mark 0) of the same connection (its ct mark),
    ESTABLISHED; INVALID when the connection was not tracked (a lone SYN-ACK opens nothing)."""
    tracked = fwd.ctstate != "UNTRACKED"
    reply = replace(
        fwd,
        src=b.container_ip,
        dst=pkt.src,
        sport=b.container_port,
        dport=None,
        iif=b.bridge,
        oif=pkt.iif,
        ctstate="ESTABLISHED" if tracked else "INVALID",
        tcp_flags=frozenset({"SYN", "ACK"}),
        reply=True,
        mark=0,
        ctmark=fwd.ctmark if tracked else 0,
        mss=MSS[b.family] if b.protocol == "tcp" else None,
    )
    back = [("raw", "PREROUTING"), ("mangle", "PREROUTING")]
    stop, reply = _through(w, rulesets, back, reply, "the container's replies are")
    hooks = [("mangle", "FORWARD"), ("filter", "FORWARD")]
    return stop or _through(w, rulesets, hooks, reply, "the replies are")[0]


def _local(b: Binding, daemon: Daemon, rulesets, w: Walker, pkt: Packet) -> Verdict:
    """No DNAT applied: the connection is for the host itself, where docker-proxy may listen."""
    hooks = [("mangle", "INPUT"), ("filter", "INPUT")]
    stop, _ = _through(w, rulesets, hooks, pkt, "the untranslated connection is")
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
