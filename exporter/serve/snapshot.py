"""A Snapshot: everything the exporter knows at one instant, assessed purely from Readings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from exporter.docker.decode import DecodeError, decode_state
from exporter.docker.model import Container, Daemon, DockerState
from exporter.path.analysis import PortReport, analyse
from exporter.path.evidence import Evidence
from exporter.path.stale import StaleRule
from exporter.readings import Readings
from exporter.rules.family import FamilyRules
from exporter.rules.lazysave import rule_errors
from exporter.rules.nftjson import is_native, native_rule_count


@dataclass(frozen=True, slots=True)
class SourceStatus:
    name: str  # docker | iptables | ip6tables | hostfacts
    up: bool
    error: str = ""


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken_at: float
    duration_seconds: float
    sources: tuple[SourceStatus, ...]
    daemon: Daemon | None = None
    containers: tuple[Container, ...] = ()
    ports: tuple[PortReport, ...] = ()
    jumps: tuple[Evidence, ...] = ()
    bridge_rules: tuple[Evidence, ...] = ()
    stale: tuple[StaleRule, ...] = ()
    backend_rules: tuple[tuple[str, str, int], ...] = ()  # (backend, family, rules)
    parse_errors: tuple[tuple[str, str, int], ...] = ()  # (backend, family, unreadable lines)
    docker_backends: tuple[tuple[str, str], ...] = ()  # (family, backend) holding nat DOCKER
    host: Any = None  # exporter.hostfacts HostFacts, when read
    warnings: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)

    def source_up(self, name: str) -> bool:
        return any(s.up for s in self.sources if s.name == name)

    @property
    def readable(self) -> bool:
        """Docker and at least the IPv4 rules could be read."""
        return self.source_up("docker") and self.source_up("iptables")


def assess(
    r: Readings, clients: dict[str, str] | None = None, analyse_fn=analyse, decode_fn=decode_state
) -> Snapshot:
    """Decode and analyse: the one pure step from Readings to a Snapshot. `clients`: the modelled
    client per family; `analyse_fn` and `decode_fn` stand in for analysis.analyse and
    decode.decode_state (a RefreshState's memoised ones). The snapshot's timings are the
    readings' plus "decode", analyse's and "analyse"."""
    started = time.perf_counter()
    timings = dict(r.timings)
    state, docker_error = _decode(r, decode_fn)
    sources = [SourceStatus("docker", state is not None, docker_error)]
    for family, name in (("ipv4", "iptables"), ("ipv6", "ip6tables")):
        fr = r.rules.get(family)
        err = fr.error if fr else "not read"
        sources.append(SourceStatus(name, fr is not None and not fr.error, err))
    if r.host is not None or r.host_error:
        sources.append(SourceStatus("hostfacts", not r.host_error, r.host_error))
    timings["decode"] = time.perf_counter() - started
    a = analyse_fn(state, r.rules, r.host_addrs, clients, timings, r.net) if state else None
    parse_errors, late = _parse_errors(r.rules)  # after the analysis: it reads chains lazily
    counts, docker_backends = _backend_facts(r.rules)
    timings["analyse"] = time.perf_counter() - started
    return Snapshot(
        taken_at=r.taken_at,
        duration_seconds=0.0 if r.started is None else time.perf_counter() - r.started,
        sources=tuple(sources),
        daemon=state.daemon if state is not None else None,
        containers=state.containers if state is not None else (),
        ports=a.ports if a else (),
        jumps=a.jumps if a else (),
        bridge_rules=a.bridge_rules if a else (),
        stale=a.stale if a else (),
        backend_rules=counts,
        parse_errors=parse_errors,
        docker_backends=docker_backends,
        host=r.host,
        warnings=r.warnings + late,
        timings=timings,
    )


def _decode(r: Readings, decode_fn=decode_state) -> tuple[DockerState | None, str]:
    if r.docker is None:
        return None, r.docker_error
    d = r.docker
    try:
        return decode_fn(d.containers, d.networks, d.info, d.version, d.hints), r.docker_error
    except DecodeError as exc:
        return None, f"Docker answered something unexpected: {exc}"


def _parse_errors(rules: dict[str, FamilyRules]):
    """Unreadable lines per (backend, family), and warnings for the rules found unreadable while
    the analysis read their chains (lazysave): up to 5 per ruleset with those the reader gave."""
    out: dict[tuple[str, str], int] = {}
    late: list[str] = []
    for family, fr in sorted(rules.items()):
        for rs in fr.rulesets:
            lazy = rule_errors(rs)
            backend = "nftables" if is_native(rs) else rs.backend
            out[(backend, family)] = out.get((backend, family), 0) + len(rs.errors) + len(lazy)
            late += [f"{family} {rs.backend}: {e}" for e in lazy[: max(0, 5 - len(rs.errors))]]
    return tuple((b, f, n) for (b, f), n in out.items()), tuple(late)


def _backend_facts(rules: dict[str, FamilyRules]):
    counts, holders = [], []
    for family, fr in sorted(rules.items()):
        for rs in fr.rulesets:
            if is_native(rs):
                continue
            counts.append((rs.backend, family, rs.rule_count()))
            if rs.has_chain("nat", "DOCKER"):
                holders.append((family, rs.backend))
        native = native_rule_count(fr.rulesets)  # one "nftables" entry for all native tables
        if native is not None:
            counts.append(("nftables", family, native))
    return tuple(counts), tuple(holders)
