"""What was read of the kernel's rules for one address family, from every backend holding some."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.rules.ipset import IpSet
from exporter.rules.model import Ruleset


@dataclass(frozen=True, slots=True)
class FamilyRules:
    family: str
    rulesets: tuple[Ruleset, ...]  # every backend that holds tables for this family
    error: str = ""  # non-empty: the rules could not be read at all
    # Why the native nftables tables are not in `rulesets` ("" when they are: sources.nft).
    nft_error: str = "native nftables tables not read"
    forwarding: bool | None = None  # net.ipv4.ip_forward / net.ipv6.conf.all.forwarding
    ipsets: tuple[IpSet, ...] = ()  # every ipset (`ipset save`): set names are not per family
