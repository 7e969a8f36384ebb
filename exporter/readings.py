"""Readings: everything read from Docker and the kernel at one instant, live or saved.

Two ways in produce the same Readings: serve.refresh.read_host (the sources, live) and
sources.saved.read_saved (a post-mortem given to `check --docker-state ...`). One pure step,
serve.snapshot.assess, turns Readings into the Snapshot that /metrics and `check` show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exporter.docker.raw import DockerRaw
from exporter.netstate import NetState
from exporter.rules.family import FamilyRules


@dataclass(frozen=True, slots=True)
class Readings:
    taken_at: float  # Unix time the reading started (a saved state: the file's mtime)
    docker: DockerRaw | None  # None: Docker could not be read (docker_error says why)
    docker_error: str
    rules: dict[str, FamilyRules]  # family → every backend's rules, native nftables included
    host_addrs: tuple[tuple[str, str], ...] | None  # (interface, address); None: unknown
    host: Any = None  # exporter.hostfacts HostFacts, when read
    host_error: str = ""
    warnings: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)  # seconds per source read
    started: float | None = None  # time.perf_counter() when a live reading began
    net: NetState | None = None  # links, routes, forwarding switches; None: not read
