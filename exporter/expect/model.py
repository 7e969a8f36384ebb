"""An expected rule, and the one table that picks the layout Docker writes by engine generation.

Each layout module (`expect.iptables`, `expect.nftables`) builds `Expected` rules for one firewall
backend; `layout(daemon)` is the only place that chooses between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from exporter.rules.normalize import key_of
from exporter.rules.ruleline import parse_line

PORT_KINDS = ("dnat", "forward_accept", "hairpin_masquerade", "loopback_drop")


@dataclass(frozen=True, slots=True)
class Expected:
    kind: str  # a PORT_KINDS entry, "jump" or "bridge_rule"
    family: str
    table: str
    chain: str
    target: str
    text: str  # as `iptables-save` would print it, less the normalisation
    key: tuple
    bridge: str = ""
    display: str = ""  # how to show it when not an iptables rule (nftables backend)

    @property
    def line(self) -> str:
        return self.display or f"-t {self.table} {self.text}"


@lru_cache(maxsize=1 << 16)  # every refresh expects (mostly) the same rules again
def make(kind: str, family: str, table: str, text: str, bridge: str = "") -> Expected:
    """An expected rule from its `iptables-save` text, e.g. `-A DOCKER ... -j DNAT ...`."""
    chain, conds, target, topts, goto = parse_line(text)  # read once with the kernel's line
    key = key_of(family, table, chain, conds, target, topts, goto)
    return Expected(kind, family, table, chain, target, text, key, bridge)
