"""The one table from engine generation to the layout of rules Docker writes.

A layout answers three questions: the per-port rules of a binding, the per-bridge rules every port
on a bridge depends on, and the global jumps into Docker's chains. A new generation with a new
layout is a new entry here (and a module beside `iptables`/`nftables`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from exporter.docker.model import Binding, Daemon, Network
from exporter.expect import iptables, nftables
from exporter.expect.model import Expected


@dataclass(frozen=True, slots=True)
class Layout:
    for_binding: Callable[[Binding, Daemon, Network | None], tuple[Expected, ...]]
    for_bridge: Callable[[Network, str, Daemon], tuple[Expected, ...]]
    global_jumps: Callable[[str, Daemon], tuple[Expected, ...]]


IPTABLES = Layout(iptables.for_binding, iptables.for_bridge, iptables.global_jumps)
NFTABLES = Layout(nftables.for_binding, nftables.for_bridge, nftables.global_jumps)

# Generations g27, g28.0, g28 and g29 write iptables rules (expect.iptables tells them apart);
# Docker 29's nftables firewall backend writes its own tables.
BY_GENERATION = {"nftables": NFTABLES}


def layout(daemon: Daemon) -> Layout:
    return BY_GENERATION.get(daemon.generation, IPTABLES)


def for_binding(b: Binding, daemon: Daemon, net: Network | None) -> tuple[Expected, ...]:
    """Per-port rules for one binding (empty when Docker writes none for it)."""
    return layout(daemon).for_binding(b, daemon, net)


def for_bridge(net: Network, family: str, daemon: Daemon) -> tuple[Expected, ...]:
    """Per-bridge rules that every published port on this bridge depends on."""
    return layout(daemon).for_bridge(net, family, daemon)


def global_jumps(family: str, daemon: Daemon) -> tuple[Expected, ...]:
    """The jumps that lead packets into Docker's chains; without them every port is dead."""
    return layout(daemon).global_jumps(family, daemon)
