"""A Snapshot: everything the exporter knows at one instant, built purely from raw source data."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from exporter.docker.decode import DecodeError, decode_state
from exporter.docker.model import Container, Daemon, DockerState
from exporter.path.analysis import Analysis, PortReport, analyse
from exporter.path.evidence import Evidence
from exporter.path.stale import StaleRule
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


def build(
    taken_at: float,
    docker_raw,
    docker_error: str,
    rules: dict[str, FamilyRules],
    host_addrs,
    host=None,
    host_error: str = "",
    warnings: tuple[str, ...] = (),
    clients: dict[str, str] | None = None,
    timings: dict[str, float] | None = None,
    analyse_fn=analyse,
) -> Snapshot:
    """Decode and analyse. `docker_raw` is a sources.docker_api.DockerRaw or None on failure.
    `timings`, when given, gets the seconds spent per step ("decode", then analyse's);
    `analyse_fn` stands in for analysis.analyse (refresh passes a memoised one)."""
    started = time.perf_counter()
    state: DockerState | None = None
    if docker_raw is not None:
        try:
            state = decode_state(
                docker_raw.containers,
                docker_raw.networks,
                docker_raw.info,
                docker_raw.version,
                docker_raw.hints,
            )
        except DecodeError as exc:
            docker_error = f"Docker answered something unexpected: {exc}"
    sources = [SourceStatus("docker", state is not None, docker_error)]
    for family, name in (("ipv4", "iptables"), ("ipv6", "ip6tables")):
        fr = rules.get(family)
        err = fr.error if fr else "not read"
        sources.append(SourceStatus(name, fr is not None and not fr.error, err))
    if host is not None or host_error:
        sources.append(SourceStatus("hostfacts", not host_error, host_error))
    counts, docker_backends = _backend_facts(rules)
    base = dict(
        taken_at=taken_at,
        duration_seconds=0.0,
        sources=tuple(sources),
        backend_rules=counts,
        docker_backends=docker_backends,
        host=host,
        warnings=warnings,
    )
    if timings is not None:
        timings["decode"] = time.perf_counter() - started
    if state is None:
        return Snapshot(**base, parse_errors=_parse_errors(rules))
    a: Analysis = analyse_fn(state, rules, host_addrs, clients, timings)
    return Snapshot(
        **base,
        daemon=state.daemon,
        containers=state.containers,
        ports=a.ports,
        jumps=a.jumps,
        bridge_rules=a.bridge_rules,
        stale=a.stale,
        parse_errors=_parse_errors(rules),  # after the analysis: it reads chains lazily
    )


def _parse_errors(rules: dict[str, FamilyRules]) -> tuple[tuple[str, str, int], ...]:
    out: dict[tuple[str, str], int] = {}
    for family, fr in sorted(rules.items()):
        for rs in fr.rulesets:
            backend = "nftables" if is_native(rs) else rs.backend
            n = len(rs.errors) + len(rule_errors(rs))  # rule_errors: chains read lazily so far
            out[(backend, family)] = out.get((backend, family), 0) + n
    return tuple((b, f, n) for (b, f), n in out.items())


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


def backends_mixed(s: Snapshot) -> bool:
    with_rules = {b for b, _, n in s.backend_rules if n > 0}
    return {"nf_tables", "legacy"} <= with_rules
