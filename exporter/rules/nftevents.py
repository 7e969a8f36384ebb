"""What changed in an nf_tables ruleset, from the kernel's change notifications.

The kernel multicasts every committed change to the NFNLGRP_NFTABLES netlink group: one message
per object (table, chain, rule, set, element, ...) naming its family and table, and for a chain
or a rule the chain, then NEWGEN once per transaction. `nft monitor` prints the same messages
as text (`delete rule ip filter INPUT handle 7`). Both are read into `Change`s here; anything
not understood becomes a Change of kind "" (which callers take as "anything may have changed").
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

NFNL_SUBSYS_NFTABLES = 10
# NFT_MSG_* → (kind, created): the object a message is about; GET* and TRACE never arrive here.
MESSAGES = {
    0: ("table", True), 2: ("table", False), 3: ("chain", True), 5: ("chain", False),
    6: ("rule", True), 8: ("rule", False), 9: ("set", True), 11: ("set", False),
    12: ("element", True), 14: ("element", False), 18: ("object", True), 20: ("object", False),
    21: ("object", False), 22: ("flowtable", True), 24: ("flowtable", False),
    25: ("rule", False), 26: ("table", False),
    27: ("chain", False), 28: ("rule", False), 29: ("set", False), 30: ("element", False),
    31: ("object", False), 32: ("flowtable", False), 33: ("element", False),
}  # fmt: skip
NEWGEN = 15
FAMILIES = {1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"}
TABLE_ATTR = 1  # NFTA_{TABLE_NAME,CHAIN_TABLE,RULE_TABLE,SET_TABLE,SET_ELEM_LIST_TABLE,...}
CHAIN_ATTR = {"chain": 3, "rule": 2}  # NFTA_CHAIN_NAME, NFTA_RULE_CHAIN
HOOK_ATTR = 4  # NFTA_CHAIN_HOOK: the chain is a base chain
_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr
_ATTR = struct.Struct("=HH")  # struct nlattr
NLMSG_ERROR, NLMSG_OVERRUN = 2, 4


@dataclass(frozen=True, slots=True)
class Change:
    """One changed object. `kind` "" means not understood: anything may have changed."""

    family: str  # ip ip6 inet arp bridge netdev ("" unknown)
    table: str
    chain: str = ""  # the chain of a chain or rule change
    kind: str = ""  # table chain rule set element object flowtable, or ""
    base: bool = False  # a chain created with a hook


EVERYTHING = Change("", "")  # events were lost, or something unreadable arrived


def parse_messages(data: bytes) -> list[Change]:
    """The Changes in one datagram from the NFNLGRP_NFTABLES group (NEWGEN is left out)."""
    out, at = [], 0
    while at + _HEADER.size <= len(data):
        length, mtype = _HEADER.unpack_from(data, at)[:2]
        if length < _HEADER.size or at + length > len(data):
            return [*out, EVERYTHING]
        if mtype in (NLMSG_ERROR, NLMSG_OVERRUN):
            out.append(EVERYTHING)
        elif mtype >> 8 == NFNL_SUBSYS_NFTABLES and mtype & 0xFF != NEWGEN:
            out.append(_message(mtype & 0xFF, data, at + _HEADER.size, at + length))
        at += (length + 3) & ~3
    return out


def _message(msg: int, data: bytes, start: int, end: int) -> Change:
    what = MESSAGES.get(msg)
    if what is None or end - start < 4:
        return EVERYTHING
    kind, created = what
    family = FAMILIES.get(data[start], "")
    attrs = _attrs(data, start + 4, end)  # after struct nfgenmsg
    table = _string(attrs.get(TABLE_ATTR))
    chain = _string(attrs.get(CHAIN_ATTR[kind])) if kind in CHAIN_ATTR else ""
    if not family or table is None or chain is None:
        return EVERYTHING
    return Change(family, table, chain, kind, kind == "chain" and created and HOOK_ATTR in attrs)


def _attrs(data: bytes, at: int, end: int) -> dict[int, bytes]:
    out = {}
    while at + _ATTR.size <= end:
        length, atype = _ATTR.unpack_from(data, at)
        if length < _ATTR.size or at + length > end:
            break
        out[atype & 0x3FFF] = data[at + _ATTR.size : at + length]
        at += (length + 3) & ~3
    return out


def _string(value: bytes | None) -> str | None:
    if value is None:
        return ""
    try:
        return value.rstrip(b"\0").decode("ascii")
    except UnicodeDecodeError:
        return None


MONITOR_OBJECTS = {"table", "chain", "rule", "set", "element", "map", "flowtable", "counter",
                   "quota", "limit", "ct", "synproxy", "secmark"}  # fmt: skip


def parse_monitor_line(line: str) -> Change | None:
    """A line of `nft monitor ruleset` as a Change (None for blank lines and comments)."""
    parts = line.split()
    if not parts or parts[0].startswith("#"):
        return None
    if len(parts) < 4 or parts[0] not in ("add", "delete", "destroy", "flush", "create"):
        return EVERYTHING  # "flush ruleset", new syntax, anything unclear
    verb, obj, family, table = parts[:4]
    if obj not in MONITOR_OBJECTS or family not in FAMILIES.values():
        return EVERYTHING
    kind = {"map": "set", "counter": "object", "quota": "object", "limit": "object"}.get(obj, obj)
    kind = "object" if obj in ("ct", "synproxy", "secmark") else kind
    chain = parts[4] if kind in ("chain", "rule") and len(parts) > 4 else ""
    base = kind == "chain" and verb in ("add", "create") and " hook " in f" {line} "
    return Change(family, table, chain, kind, base)
