"""Read single chains of iptables-nft's tables again, instead of the whole ruleset.

`iptables-nft -t TABLE -S CHAIN` asks the kernel for that chain's rules only and prints them as
`iptables-nft-save` does (`-P CHAIN POLICY` or `-N CHAIN`, then `-A CHAIN ...`). Given the last
Ruleset and the chains changed since (sources.nftwatch.ChainWatch), `reread` reads again those
the last analysis looked at and leaves the others stale: should a later analysis look one of
them up (lazysave records what it looks up), it is read then (serve.refresh).
Anything unexpected (a failing command, odd output, a table the Ruleset lacks, too many chains)
gives None: the caller reads the whole ruleset instead.
"""

from __future__ import annotations

from exporter.rules.lazysave import looked_at, patch_ruleset
from exporter.rules.model import Ruleset
from exporter.sources.run import run, which

# never plain `iptables`: were it the legacy one, `-t TABLE` would load the table
TOOLS = {"ipv4": ("iptables-nft",), "ipv6": ("ip6tables-nft",)}
MAX_CHAINS = 16  # more than this many chains to read: one whole read is cheaper


def reread(
    rs: Ruleset, stale: dict[str, set[str]], timeout: float, wanted=None, read=None
) -> Ruleset | None:
    """`rs` with the chains of `stale` (table → names changed since its text was taken) that
    were looked up read again (`wanted`: these (table, chain) instead), and `stale` updated in
    place to what is left; `rs` itself when there is nothing to read. `read`: read_chain."""
    read = read or read_chain
    if any(table not in rs.tables for table in stale):
        return None  # a table created since: only a whole read lists it
    if wanted is None:
        wanted = {(t, c) for t, names in stale.items() for c in names if looked_at(rs, t, c)}
    if len(wanted) > MAX_CHAINS:
        return None
    got: dict[str, dict] = {}
    for table, chain in sorted(wanted):
        listing = read(rs.family, table, chain, timeout)
        if listing is None:
            return None
        got.setdefault(table, {})[chain] = listing
    if not got:
        return rs
    again = patch_ruleset(rs, got)
    if again is not None:
        for table, chain in wanted:
            stale.get(table, set()).discard(chain)
    return again


def read_chain(family: str, table: str, chain: str, timeout: float):
    """(policy, rule lines) of one chain; None when it cannot be read so (a missing chain
    included: iptables-nft 1.8.9 calls it "incompatible", so a whole read tells)."""
    tool = next((t for t in TOOLS[family] if which(t)), None)
    if tool is None:
        return None
    r = run([tool, "-t", table, "-S", chain], timeout)
    return parse_listing(r.stdout, chain) if r.ok else None


def parse_listing(text: str, chain: str) -> tuple[str | None, tuple[str, ...]] | None:
    """`iptables -S CHAIN` output as (policy, rule lines); None when it is not that."""
    lines = text.splitlines()
    if not lines:
        return None
    head = lines[0].split()
    if head == ["-N", chain]:
        policy = None
    elif len(head) == 3 and head[:2] == ["-P", chain]:
        policy = head[2]
    else:
        return None
    prefix, bare = f"-A {chain} ", f"-A {chain}"
    rules = tuple(lines[1:])
    if not all(line.startswith(prefix) or line == bare for line in rules):
        return None
    return policy, rules
