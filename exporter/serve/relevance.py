"""Whether an nf_tables change can alter what the last refresh worked out.

The last analysis looked up a known set of chains in each iptables-nft table (lazysave records
every name asked for, found or not) and read a known set of native tables. A rule added to a
chain nothing looked up (fail2ban's INPUT rules on a host whose ports are all DNATed, a
kube-proxy endpoint chain) cannot change any verdict, expectation or stale rule, so it costs
no refresh. Anything else does: a looked-up chain, a new table or base chain, a table-level
object (set, element, ...) in a table something was looked up in, a change not understood.
"""

from __future__ import annotations

from collections.abc import Mapping

from exporter.rules.family import FamilyRules
from exporter.rules.lazysave import LazyChains
from exporter.rules.nftevents import Change
from exporter.rules.nftjson import IPTABLES_TABLES, is_native

IPTABLES_FAMILIES = {"ip": "ipv4", "ip6": "ipv6"}


def relevant(change: Change, rules: Mapping[str, FamilyRules] | None) -> bool:
    """`rules`: what the last analysis read (None: there was none, everything is relevant)."""
    if rules is None or not change.kind:
        return True
    family = IPTABLES_FAMILIES.get(change.family)
    if family is not None and change.table in IPTABLES_TABLES:
        return _iptables_nft(change, rules.get(family))
    return change.base or _native_read(change, rules)


def _iptables_nft(change: Change, fr: FamilyRules | None) -> bool:
    rs = next((r for r in (fr.rulesets if fr else ()) if r.backend == "nf_tables"), None)
    t = rs.tables.get(change.table) if rs is not None and not is_native(rs) else None
    if t is None or not isinstance(t.chains, LazyChains) or t.chains.listed:
        return True  # a new table, one read eagerly, or one whose every chain was listed
    seen = t.chains.seen
    if change.kind in ("chain", "rule"):
        return change.base or change.chain in seen
    return bool(seen)  # a set, element, ... of the table: any rule looked at may use it


def _native_read(change: Change, rules: Mapping[str, FamilyRules]) -> bool:
    label = f"{change.family} {change.table}"
    for fr in rules.values():
        if fr.nft_error:
            return True  # native tables unread: whether this one matters is not known
        if any(getattr(rs, "nft_table", "") == label for rs in fr.rulesets):
            return True
    return False
