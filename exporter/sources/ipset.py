"""Read every ipset with `ipset save` (read-only: it lists, it never creates or changes a set).

Without the ipset tool, or without the capability to list sets, nothing is read and matches on
ipsets stay `unknown` (Docker 28.0's own sets are then taken from Docker's networks).
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.rules.ipset import IpSet, parse_ipset_save
from exporter.sources.run import run, which


@dataclass(frozen=True, slots=True)
class IpsetRead:
    sets: tuple[IpSet, ...]
    error: str = ""  # non-empty: the sets could not be listed
    warnings: tuple[str, ...] = ()  # lines of the listing that could not be read


def read_ipsets(timeout: float = 10.0) -> IpsetRead:
    if which("ipset") is None:
        return IpsetRead((), "ipset not found on PATH: ipset contents not read")
    r = run(["ipset", "save"], timeout)
    if not r.ok:
        return IpsetRead((), f"ipset contents not read: {r.error}")
    sets, errors = parse_ipset_save(r.stdout)
    return IpsetRead(sets, "", tuple(f"ipset save {e}" for e in errors[:5]))
