"""Targets that change the packet and let it go on: MARK, CONNMARK, NOTRACK, TCPMSS.

What they change stays with the packet through the later hooks: a mark set in raw or mangle
PREROUTING is what `-m mark` in DOCKER-USER sees, a connection mark is what the reply carries,
an untracked packet is never translated. Values are exact where the kernel's arithmetic is
(xt_MARK, xt_CONNMARK, nft `meta mark set`/`ct mark set` translated to those), and None
("cannot be told") where it is not, so a later match on them is answered MAYBE.
"""

from __future__ import annotations

from exporter.path.fastcopy import replace
from exporter.path.matching import Packet
from exporter.rules.model import Rule

MASK32 = 0xFFFFFFFF
# Conntrack's hook priority at prerouting: a native chain at a lower one (or iptables' raw
# table) runs before the packet has a connection: notrack works there, and only there
# (nft_notrack_eval), while a connection mark can be neither set nor matched (xt_CONNMARK).
CONNTRACK_PRIORITY = -200
MUTATING = frozenset({"MARK", "CONNMARK", "NOTRACK", "CT", "TCPMSS"})


def before_conntrack(table: str, rs) -> bool:
    """Whether `rs`'s chain at `table`'s hook runs before conntrack: iptables' raw table, a
    native ingress chain or prerouting chain below priority -200."""
    if table != "raw":
        return False
    hook = getattr(rs, "hook", "")
    return not hook or hook == "ingress" or getattr(rs, "priority", 0) < CONNTRACK_PRIORITY


def mangle(r: Rule, p: Packet) -> Packet:
    """The packet after `r`'s target (one of MUTATING)."""
    t = r.target
    if t == "MARK":
        return replace(p, mark=xmark(p.mark, r.target_opt("--set-xmark")))
    if t == "CONNMARK":
        return _connmark(r, p)
    if t == "NOTRACK" or (t == "CT" and r.target_opt("--notrack") is not None):
        if not p.before_ct or p.ctstate == "UNTRACKED":
            return p
        return replace(p, ctstate="UNTRACKED", untracked_by=f"{r.ref} `{r.text}`")
    if t == "TCPMSS" and "SYN" in p.tcp_flags:
        size = r.target_opt("--set-mss")
        if size is not None and size.isdigit() and p.mss is not None:
            return replace(p, mss=min(p.mss, int(size)))
        return replace(p, mss=None)  # clamped to the path MTU, or an option not understood
    return p


def xmark(mark: int | None, spec: str | None) -> int | None:
    """`--set-xmark value/mask`: clear the mask's bits, then XOR the value (xt_MARK)."""
    if mark is None or not spec:
        return None
    value, _, mask = spec.partition("/")
    try:
        v, m = int(value, 0), int(mask, 0) if mask else MASK32
    except ValueError:
        return None
    return (mark & ~m & MASK32) ^ v


def _connmark(r: Rule, p: Packet) -> Packet:
    if p.ctstate == "UNTRACKED" or p.before_ct:
        return p  # no connection to mark
    spec = r.target_opt("--set-xmark")
    if spec is not None:
        return replace(p, ctmark=xmark(p.ctmark, spec))
    known = {"--save-mark", "--restore-mark", "--nfmask", "--ctmask", "--mask"}
    if any(k not in known for k, _ in r.target_opts):
        return replace(p, mark=None, ctmark=None)  # shifts (revision 2): not modelled
    try:
        nf, ct = (int(r.target_opt(k) or r.target_opt("--mask") or "0xffffffff", 0)
                  for k in ("--nfmask", "--ctmask"))  # fmt: skip
    except ValueError:
        return replace(p, mark=None, ctmark=None)
    mark, ctmark = p.mark, p.ctmark
    if r.target_opt("--save-mark") is not None:
        known_both = mark is not None and ctmark is not None
        return replace(p, ctmark=((ctmark & ~ct) ^ (mark & nf)) & MASK32 if known_both else None)
    if r.target_opt("--restore-mark") is not None:
        known_both = mark is not None and ctmark is not None
        return replace(p, mark=((mark & ~nf) ^ (ctmark & ct)) & MASK32 if known_both else None)
    return replace(p, mark=None, ctmark=None)


def merge(a: Packet | None, b: Packet | None) -> Packet | None:
    """One packet for two branches that end alike: what they disagree on becomes unknown.
    None when they differ in what cannot be unknown (one branch untracked the packet)."""
    if a is None:
        return b
    if b is None or a == b:
        return a
    if a.ctstate != b.ctstate:
        return None
    return replace(
        a,
        mark=a.mark if a.mark == b.mark else None,
        ctmark=a.ctmark if a.ctmark == b.ctmark else None,
        mss=a.mss if a.mss == b.mss else None,
    )


def carry(p: Packet, out: Packet | None) -> Packet:
    """`p` with what the rules changed on `out` (its marks, conntrack state, MSS): `out` may be
    the packet of a remembered walk of a wider class of clients (walk.Walker.hook)."""
    if out is None or out is p:
        return p
    if (out.mark, out.ctmark, out.ctstate, out.mss, out.untracked_by) == (
        p.mark, p.ctmark, p.ctstate, p.mss, p.untracked_by
    ):  # fmt: skip
        return p  # nothing changed: no copy (this runs for every hook and jump)
    return replace(p, mark=out.mark, ctmark=out.ctmark, ctstate=out.ctstate, mss=out.mss,
                   untracked_by=out.untracked_by)  # fmt: skip


def mangled(out: Packet | None) -> tuple:
    """What the rules may have changed on a packet: outcomes that differ in it differ."""
    return () if out is None else (out.mark, out.ctmark, out.ctstate, out.mss)
