"""Semantic keys for rules, so expected and kernel rules compare equal whatever their spelling.

`iptables-save` adds `-m tcp`, appends `/32`, drops `0/0`, reorders options; hand-written and
generated rules do not. A key ignores all of that, plus comments and counters.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from exporter.rules.model import Cond, Rule

PROTO_NUMBERS = {"6": "tcp", "17": "udp", "132": "sctp", "1": "icmp", "58": "ipv6-icmp"}
PORT_MODULES = {"tcp", "udp", "sctp", "udplite", "dccp"}
IGNORED_MODULES = {"comment"}


@lru_cache(maxsize=65536)
def norm_addr(value: str) -> str:
    """`172.17.0.2` → `172.17.0.2/32`; `0/0` → `0.0.0.0/0`; garbage is returned unchanged."""
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        if value in ("0/0", "0"):
            return "0.0.0.0/0"
        return value


def is_any(prefix: str) -> bool:
    return prefix.endswith("/0")


def norm_proto(value: str) -> str:
    value = value.lower()
    return PROTO_NUMBERS.get(value, value)


def norm_endpoint(value: str) -> str:
    """`[fd00::2]:80` and `fd00::2:80`-style --to-destination values, lowercased."""
    return value.lower()


def split_endpoint(spec: str) -> tuple[str, int | None] | None:
    """`172.17.0.2:80`, `172.17.0.2`, `[fd00::2]:80`, `fd00::2` → (address, port or None)."""
    if not spec or "-" in spec:
        return None  # ranges: more than one destination
    if spec.startswith("["):
        addr, _, rest = spec[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif spec.count(":") == 1:
        addr, port = spec.split(":")
    else:
        addr, port = spec, ""
    if port and not port.isdigit():
        return None
    return addr, int(port) if port else None


@lru_cache(maxsize=1 << 16)  # conditions are shared (iptsave): so are their keys, made once
def cond_key(c: Cond) -> tuple | None:
    if c.module in IGNORED_MODULES:
        return None
    if c.option in ("-s", "-d"):
        addr = norm_addr(c.values[0])
        if is_any(addr) and not c.negated:
            return None
        return (c.option, (addr,), c.negated)
    if c.option == "-p":
        proto = norm_proto(c.values[0])
        return None if proto == "all" and not c.negated else ("-p", (proto,), c.negated)
    if c.option in ("--ctstate", "--state"):
        states = ",".join(sorted(c.values[0].upper().split(","))) if c.values else ""
        return ("--ctstate", (states,), c.negated)
    module = "" if c.module in PORT_MODULES or c.module in ("conntrack", "state") else c.module
    return (module, c.option, c.values, c.negated)


def rule_key(rule: Rule) -> tuple:
    """The identity of a rule for expected-versus-present comparison (position excluded)."""
    return key_of(rule.family, rule.table, rule.chain, rule.conds, rule.target, rule.target_opts,
                  rule.goto)  # fmt: skip


def key_of(family: str, table: str, chain: str, conds, target: str, target_opts, goto) -> tuple:
    """`rule_key` of the rule with these fields (without making the Rule)."""
    keys = set(map(cond_key, conds))
    keys.discard(None)
    topts = tuple(sorted(map(_topt_key, target_opts))) if target_opts else ()
    return (family, table, chain, target, goto, frozenset(keys), topts)


def _topt_key(opt: tuple[str, tuple[str, ...]]) -> tuple:
    name, values = opt
    return (name, tuple(map(norm_endpoint, values))) if name == "--to-destination" else opt
