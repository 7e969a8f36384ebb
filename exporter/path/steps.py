"""The steps every walk shares: the Verdict, where the client aims (Probe), and turning a
hook's Outcome into a stop with the reason that names the deciding rule."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.path.classes import SourceClass
from exporter.path.codes import policy_drop
from exporter.path.matching import Packet
from exporter.path.outcome import Outcome, Settled
from exporter.path.walk import Walker, idle

# The MSS option of a client's SYN on an Ethernet path (MTU 1500 less the IP and TCP headers).
MSS = {"ipv4": 1460, "ipv6": 1440}


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


def rule_desc(o: Outcome) -> str:
    if o.rule is None:
        return o.why
    more = f" ({o.why})" if o.why else ""  # "and 49 more rules of filter/DOCKER-USER"
    return f"{o.rule.ref} `{o.rule.text}`{more}"


def stopped(o: Outcome, what: str, chain: str, reply: bool = False) -> Verdict | None:
    """The verdict when `o`, the outcome of `chain` for the connection (or for the container's
    replies), stops it."""
    text = o.rule.text if o.rule else ""
    if o.verdict in ("DROP", "REJECT"):
        code = "reply_dropped" if reply else "dropped_by_rule" if o.rule else policy_drop(chain)
        return Verdict("dropped", code, f"{what} dropped by {rule_desc(o)}", text, o.owner)
    if o.verdict == "UNKNOWN":
        return unknown(o)
    return None


def unknown(o: Outcome) -> Verdict:
    # The walker names a rule for every undecidable case; only an unreadable table has none.
    code = "undecidable_rule" if o.rule else "rules_unreadable"
    return Verdict("unknown", code, o.why, o.rule.text if o.rule else "", o.owner)


# What a hook stops, as _path's walks say it
STOPPED = {(False, "PREROUTING"): "the connection is",
           (False, "FORWARD"): "after translation the connection is",
           (False, "INPUT"): "the untranslated connection is",
           (False, "POSTROUTING"): "on its way to the bridge the connection is",
           (True, "PREROUTING"): "the container's replies are",
           (True, "FORWARD"): "the replies are"}  # fmt: skip


def settled(st: Settled) -> Verdict:
    """The verdict of a part of the client class the walk left behind at a hook."""
    what = STOPPED.get((st.reply, st.chain), "the connection is")
    return stopped(st.outcome, what, st.chain, st.reply)


def through(w: Walker, rulesets, hooks, pkt: Packet, what: str):
    """Walk `hooks` ((table, chain) pairs) in order; a stop verdict, or None and the packet as
    the last hook let it go (its marks and conntrack state carried from hook to hook)."""
    for table, chain in hooks:
        if idle(rulesets, table, chain):  # no chain there: no outcome to make
            continue
        o = w.hook(rulesets, table, chain, pkt)
        stop = stopped(o, what, chain, pkt.reply)
        if stop:
            return stop, pkt
        pkt = o.out or pkt
    return None, pkt
