"""Whose rule decided: Docker's own, the admin's DOCKER-USER hook, or the rest of the host.

- `docker`: Docker's chains (DOCKER, DOCKER-FORWARD, DOCKER-ISOLATION-…) and tables (Docker
  29's `ip docker-bridges`), and the rules Docker puts in built-in chains (its jumps, and those
  naming its bridges);
- `docker-user`: DOCKER-USER and every chain it jumps to (ufw-docker's `ufw-user-forward`...);
- `host`: everything else: ufw, firewalld, an nftables.conf table, built-in chain policies.

Breakage in Docker's rules pages; a port the admin's rules close is policy and tickets.
"""

from __future__ import annotations

from exporter.rules.model import Rule, Ruleset

DOCKER, USER, HOST = "docker", "docker-user", "host"
OWNERS = (DOCKER, USER, HOST)
POLICY = (USER, HOST)  # the admin's rules: refusing some sources is policy, not breakage
USER_CHAIN = "DOCKER-USER"
# Docker's own chains: never the admin's, even when DOCKER-USER jumps to one
DOCKER_CHAINS = {"DOCKER", "DOCKER-FORWARD", "DOCKER-BRIDGE", "DOCKER-CT", "DOCKER-INGRESS",
                 "DOCKER-INTERNAL", "DOCKER-ISOLATION-STAGE-1",
                 "DOCKER-ISOLATION-STAGE-2"}  # fmt: skip
DOCKER_TABLE = "docker-bridges"  # Docker 29's native tables: ip docker-bridges, ip6 docker-bridges


def user_chains(rulesets) -> frozenset[tuple[str, str, str]]:
    """(backend, table, chain) of DOCKER-USER and every chain reachable from it by jumps."""
    out: set[tuple[str, str, str]] = set()
    for rs in rulesets:
        if getattr(rs, "nft_table", ""):
            continue  # a native table has no DOCKER-USER
        for name, t in rs.tables.items():
            if USER_CHAIN not in t.chains:
                continue
            todo = [USER_CHAIN]
            while todo:
                chain = todo.pop()
                if (rs.backend, name, chain) in out:
                    continue
                out.add((rs.backend, name, chain))
                for r in t.chains[chain].rules:
                    if r.target in t.chains and r.target not in DOCKER_CHAINS:
                        todo.append(r.target)
    return frozenset(out)


def rule_owner(r: Rule, users: frozenset, bridges: frozenset[str]) -> str:
    if r.backend.startswith("nft:"):
        return DOCKER if r.table.split(" ")[-1] == DOCKER_TABLE else HOST
    if (r.backend, r.table, r.chain) in users:
        return USER
    if r.chain.startswith("DOCKER") or r.target.startswith("DOCKER"):
        return DOCKER
    if any(c.option in ("-i", "-o") and c.values and c.values[0] in bridges for c in r.conds):
        return DOCKER  # e.g. `-A FORWARD -o docker0 -m conntrack --ctstate ... -j ACCEPT`
    return HOST


def policy_owner(rs: Ruleset) -> str:
    """Who set a chain's policy: Docker for its own native tables, else the host's admin."""
    table = getattr(rs, "nft_table", "")
    return DOCKER if table.split(" ")[-1] == DOCKER_TABLE else HOST
