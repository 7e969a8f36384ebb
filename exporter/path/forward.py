"""After translation: the route to the bridge, mangle and filter FORWARD, mangle and nat
POSTROUTING towards the bridge (a source NAT there: `masqueraded`), and the container's reply
on its way back."""

from __future__ import annotations

from exporter.docker.model import DESIGN_ROUTED, Binding
from exporter.path.fastcopy import replace
from exporter.path.matching import Packet
from exporter.path.outcome import Fork
from exporter.path.owner import HOST
from exporter.path.route import Routing, forwarding_off, towards
from exporter.path.sources import Sources
from exporter.path.steps import MSS, Verdict, rule_desc, stopped, through
from exporter.path.walk import Walker

SYN_ACK = frozenset({"SYN", "ACK"})


def forward(b: Binding, rulesets, w: Walker, pkt: Packet, nat, forwarding) -> Verdict:
    routing = forwarding if isinstance(forwarding, Routing) else Routing(None, forwarding)
    stop = _routed(b, routing, pkt)
    if stop:
        return stop
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
    stop, fwd = through(w, rulesets, hooks[:1], fwd, "after translation the connection is")
    if stop:
        return stop
    o = w.hook(rulesets, "filter", "FORWARD", fwd)
    stop = stopped(o, "after translation the connection is", "FORWARD")
    if stop:
        return stop
    snat, fwd = _postrouting(w, rulesets, o.out or fwd)
    if isinstance(snat, Verdict):
        return snat
    stop = _replies(b, rulesets, w, pkt, fwd)
    if stop:
        return stop
    knob = forwarding_off(routing, b.family, b.bridge)
    if knob:
        why = f"the container's replies are not forwarded: {knob}"
        return Verdict("dropped", "ip_forward_off", why, owner=HOST)
    how = f"DNAT by {nat.rule.ref}" if nat and nat.rule else "routed"
    if fwd.ctstate == "UNTRACKED":
        how += f" untracked (by {fwd.untracked_by})"
    accepted = o.rule.ref if o.rule else o.why or "policy"
    rule = nat.rule.text if nat and nat.rule else ""
    if snat is not None:
        why = (f"{how}, accepted by {accepted}, then {rule_desc(snat)} rewrites the source: "
               "the container sees a host address, not the client's")  # fmt: skip
        text = snat.rule.text if snat.rule else rule
        return Verdict("masqueraded", "source_nat", why, text, snat.owner)
    code = "routed_accepted" if b.design == DESIGN_ROUTED else "dnat_accepted"
    return Verdict("ok", code, f"{how}, accepted by {accepted}", rule)


def _routed(b: Binding, routing: Routing, pkt: Packet) -> Verdict | None:
    """The kernel's route lookup for the translated packet, then its forwarding switch."""
    hop = towards(routing, b.family, b.bridge, b.container_ip, pkt.src, pkt.iif, pkt.mark)
    if hop.parts:
        raise Fork(hop.parts)
    if hop.reaches is None:
        return Verdict("unknown", hop.code, f"after translation to {b.container_ip}: {hop.why}")
    if hop.reaches is False:
        why = f"after translation to {b.container_ip} nothing reaches the container: {hop.why}"
        return Verdict("unreachable", hop.code, why, owner=HOST)
    knob = forwarding_off(routing, b.family, pkt.iif)
    if knob:
        why = f"after translation the connection is not forwarded: {knob}"
        return Verdict("dropped", "ip_forward_off", why, owner=HOST)
    return None


def _postrouting(w: Walker, rulesets, fwd: Packet):
    """mangle and nat POSTROUTING towards the bridge: a stop Verdict, or the source NAT rule
    that applies (None: none), and the packet."""
    what = "on its way to the bridge the connection is"
    stop, fwd = through(w, rulesets, [("mangle", "POSTROUTING")], fwd, what)
    if stop or fwd.ctstate == "UNTRACKED":  # nat hooks never see an untracked packet
        return stop, fwd
    o = w.hook(rulesets, "nat", "POSTROUTING", fwd)
    stop = stopped(o, what, "POSTROUTING")
    if stop:
        return stop, fwd
    return (o if o.verdict == "NAT" else None), o.out or fwd


def _replies(b: Binding, rulesets, w: Walker, pkt: Packet, fwd: Packet) -> Verdict | None:
    """The container's SYN-ACK: a new packet (mark 0) of the same connection (its ct mark),
    ESTABLISHED; INVALID when the connection was not tracked (a lone SYN-ACK opens nothing)."""
    tracked = fwd.ctstate != "UNTRACKED"
    client = pkt.src
    if type(client) is Sources and w.only is not None:
        client = w.only  # what each hook would narrow it to: the part still walking
    reply = replace(
        fwd,
        src=b.container_ip,
        dst=client,
        sport=b.container_port,
        dport=None,
        iif=b.bridge,
        oif=pkt.iif,
        ctstate="ESTABLISHED" if tracked else "INVALID",
        tcp_flags=SYN_ACK,
        reply=True,
        mark=0,
        ctmark=fwd.ctmark if tracked else 0,
        mss=MSS[b.family] if b.protocol == "tcp" else None,
    )
    back = [("raw", "PREROUTING"), ("mangle", "PREROUTING")]
    stop, reply = through(w, rulesets, back, reply, "the container's replies are")
    hooks = [("mangle", "FORWARD"), ("filter", "FORWARD")]
    return stop or through(w, rulesets, hooks, reply, "the replies are")[0]
