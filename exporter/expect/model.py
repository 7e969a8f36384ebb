"""An expected rule, and the one table that picks the layout Docker writes by engine generation.

Each layout module (`expect.iptables`, `expect.nftables`) builds `Expected` rules for one firewall
backend; `layout(daemon)` is the only place that chooses between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from exporter.rules.iptsave import parse_rule_tokens
from exporter.rules.normalize import key_of

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
    tokens = text.split()
    conds, target, topts, goto = parse_rule_tokens(tokens[2:])
    key = key_of(family, table, tokens[1], conds, target, topts, goto)
    return Expected(kind, family, table, tokens[1], target, text, key, bridge)
