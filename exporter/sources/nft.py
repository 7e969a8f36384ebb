"""Read native nftables tables with `nft -j`: Docker 29's own tables and any other firewall's.

`nft -j list chains` (cheap: no rules) says which tables have base chains at the hooks the
evaluator walks; only those are listed in full with `nft -j list table FAMILY NAME`, because
`nft -j` is slow and memory-hungry at scale (docs/nftables.md). Tables iptables-nft owns
(ip/ip6 filter, nat, raw, mangle, security) are left to `iptables-nft-save`, which keeps what
nft JSON loses (the DNAT target of an xt rule). arp, bridge and netdev tables are not read.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from exporter.rules.family import FamilyRules
from exporter.rules.model import Ruleset
from exporter.rules.nftjson import (
    IPTABLES_TABLES,
    WALKED_HOOKS,
    BaseChain,
    NftJsonError,
    base_chain,
    objects,
    order_rulesets,
    parse,
    table_families,
    unreadable,
)
from exporter.sources.nftnl import list_tables
from exporter.sources.run import run, which

FAMILIES = ("ipv4", "ipv6")


@dataclass(frozen=True, slots=True)
class NativeRead:
    rulesets: dict[str, tuple[Ruleset, ...]]  # family → one NativeRuleset per base chain
    error: str  # non-empty: no native table could be read (nft missing, failing, not JSON)
    tables: tuple[str, ...]  # "ip docker-bridges", ... read in full
    warnings: tuple[str, ...] = ()  # tables that failed (their hooks judge `unknown`)


def read_native(
    timeout: float = 10.0, iptables_nft: frozenset[str] = frozenset(), tables=list_tables
) -> NativeRead:
    """`iptables_nft`: families whose iptables-nft tables `iptables-nft-save` read. `tables()`:
    every table's (family, name), None when unknown (sources.nftnl.list_tables); when each is
    one of those iptables-nft-save read, there is nothing else to read and nft is not run."""
    listed = tables(timeout)
    if listed is not None and all(_read_by_iptables(t, iptables_nft) for t in listed):
        return NativeRead({}, "", ())
    if which("nft") is None:
        return NativeRead({}, "nft not found on PATH: native nftables tables not read", ())
    r = run(["nft", "-j", "list", "chains"], timeout)
    if not r.ok:
        return NativeRead({}, r.error, ())
    try:
        bases = [b for b in map(base_chain, objects(r.stdout)) if b is not None]
    except NftJsonError as exc:
        return NativeRead({}, f"nft -j list chains: {exc}", ())
    wanted = tables_to_read(bases, iptables_nft)
    out: dict[str, list[Ruleset]] = {f: [] for f in FAMILIES}
    warnings, read = [], []
    for fam, name in wanted:
        got, err = _read_table(fam, name, timeout)
        if err:
            warnings.append(err)
            got = _stand_ins(bases, fam, name, err)
        else:
            read.append(f"{fam} {name}")
        for family, rulesets in got.items():
            out[family] += rulesets
    rulesets = {f: tuple(v) for f, v in out.items()}
    return NativeRead(rulesets, "", tuple(read), tuple(warnings))


def _read_by_iptables(table: tuple[str, str], iptables_nft: frozenset[str]) -> bool:
    family, name = table
    fams = table_families(family)
    return name in IPTABLES_TABLES and len(fams) == 1 and fams[0] in iptables_nft


def tables_to_read(bases: list[BaseChain], iptables_nft: frozenset[str]) -> list[tuple[str, str]]:
    """(family, table) of the tables with a base chain the evaluator walks, in first-seen order,
    less those iptables-nft owns in a family whose iptables-nft rules were read."""
    out: dict[tuple[str, str], None] = {}
    for b in bases:
        fams = table_families(b.family)
        owned = b.table in IPTABLES_TABLES and len(fams) == 1 and fams[0] in iptables_nft
        if fams and b.hook in WALKED_HOOKS and not owned:
            out[(b.family, b.table)] = None
    return list(out)


def _read_table(fam: str, name: str, timeout: float):
    r = run(["nft", "-j", "list", "table", fam, name], timeout)
    if not r.ok:
        if "No such file or directory" in r.stderr:
            return {}, ""  # deleted since `list chains`: nothing there any more
        return {}, f"nft table {fam} {name}: {r.error}"
    try:
        return parse(r.stdout), ""
    except NftJsonError as exc:
        return {}, f"nft table {fam} {name}: {exc}"


def _stand_ins(bases, fam: str, name: str, why: str) -> dict[str, list[Ruleset]]:
    """Rulesets that make each hook of an unread table `unknown` instead of ignoring it."""
    out: dict[str, list[Ruleset]] = {}
    for b in bases:
        if (b.family, b.table) != (fam, name):
            continue
        for family in table_families(fam):
            rs = unreadable(b, family, why)
            if rs is not None:
                out.setdefault(family, []).append(rs)
    return out


def from_ruleset_json(text: str, iptables_nft: frozenset[str] = frozenset()) -> NativeRead:
    """A saved `nft -j list ruleset` as `read_native` would have read it live (for offline
    checks). Raises NftJsonError when `text` is not an nft JSON document."""
    bases = [b for b in map(base_chain, objects(text)) if b is not None]
    wanted = {f"{fam} {name}" for fam, name in tables_to_read(bases, iptables_nft)}
    got = parse(text)
    rulesets = {f: tuple(rs for rs in got.get(f, ()) if rs.nft_table in wanted) for f in FAMILIES}
    return NativeRead(rulesets, "", tuple(sorted(wanted)))


def with_native(fr: FamilyRules, native: NativeRead) -> FamilyRules:
    """`fr` plus the native rulesets of its family, every backend in hook-priority order."""
    rulesets = order_rulesets((*fr.rulesets, *native.rulesets.get(fr.family, ())))
    return replace(fr, rulesets=rulesets, nft_error=native.error)
