"""Parse `ipset save` output: which addresses each set holds, for `-m set --match-set` matches.

    create allow hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x…
    add allow 10.0.0.0/8
    add allow 10.1.0.0/16 nomatch

Pure and total: a line it cannot read is reported, never raised. path.setmembers turns the
sets of addresses into the address sets the matcher decides `-m set` with.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class IpSet:
    name: str
    kind: str  # hash:net, bitmap:ip, list:set, hash:ip,port...
    family: str  # ipv4 or ipv6
    members: tuple[str, ...] = ()  # as listed: 10.0.0.0/8, 192.0.2.7, a set's name (list:set)
    nomatch: tuple[str, ...] = ()  # hash:net entries marked nomatch: exceptions
    netmask: int | None = None  # hash:ip/bitmap:ip `netmask N`: each entry stands for its /N


def parse_ipset_save(text: str) -> tuple[tuple[IpSet, ...], tuple[str, ...]]:
    """The sets of one `ipset save` run, and the lines that could not be read (with why)."""
    heads: dict[str, dict] = {}
    errors: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:  # only comments are quoted; crowdsec-sized sets have 100,000 plain lines
            words = shlex.split(line) if '"' in line or "'" in line else line.split()
        except ValueError as exc:
            errors.append(f"line {n}: {exc}")
            continue
        if len(words) >= 3 and words[0] == "create":
            heads[words[1]] = _create(words[1], words[2], words[3:])
        elif len(words) >= 3 and words[0] == "add" and words[1] in heads:
            h = heads[words[1]]
            (h["nomatch"] if "nomatch" in words[3:] else h["members"]).append(words[2])
        else:
            errors.append(f"line {n}: not understood: {line[:120]}")
    sets = tuple(
        IpSet(name, h["kind"], h["family"], tuple(h["members"]), tuple(h["nomatch"]), h["netmask"])
        for name, h in heads.items()
    )
    return sets, tuple(errors)


def _create(name: str, kind: str, opts: list[str]) -> dict:
    values = dict(zip(opts[::1], [*opts[1:], ""], strict=True))
    family = "ipv6" if values.get("family") == "inet6" else "ipv4"
    mask = values.get("netmask", "")
    return {"kind": kind, "family": family, "members": [], "nomatch": [],
            "netmask": int(mask) if mask.isascii() and mask.isdigit() else None}  # fmt: skip
