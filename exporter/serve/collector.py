"""The custom collector: fresh metric families from the latest snapshot on every collect().

A container, port or rule that is gone from the snapshot is gone from the next scrape. Nothing
here talks to Docker or the kernel; see docs/metrics.md for the contract.
"""

from __future__ import annotations

import operator
import platform
from collections.abc import Iterator
from dataclasses import fields

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.expect import nftables as nft_expect
from exporter.expect.model import PORT_KINDS
from exporter.path.classes import EXPOSURES
from exporter.path.verdict import SEVERITY, STATES
from exporter.serve.collector_facts import fact_metrics
from exporter.serve.labels import bound
from exporter.serve.snapshot import Snapshot
from exporter.summary import backends_mixed

PORT_LABELS = [
    "container",
    "network",
    "family",
    "protocol",
    "host_ip",
    "host_port",
    "container_port",
]
INFO_LABELS = ["container_id", "bridge", "container_ip", "reason", "owner", "allowed_sources"]


def port_labels(b) -> list[str]:
    return [bound(b.container), bound(b.network), b.family, bound(b.protocol), bound(b.host_ip),
            str(b.host_port), str(b.container_port)]  # fmt: skip


def info_values(p) -> tuple[str, ...]:
    """The values of docker_nat_port_info's INFO_LABELS for port `p`, bounded."""
    b, v = p.binding, p.verdict
    return tuple(map(bound, (b.container_id, b.bridge, b.container_ip, v.code, v.owner, v.allowed)))


def port_families(ports) -> tuple[Metric, Metric, Metric, Metric]:
    """docker_nat_port_state, docker_nat_port (info), docker_nat_port_exposure and
    docker_nat_rule_present for `ports`."""
    state = GaugeMetricFamily(
        "docker_nat_port_state",
        "1 for the state a remote client's new connection to the port gets, 0 for the others.",
        labels=[*PORT_LABELS, "state"],
    )
    info = InfoMetricFamily(
        "docker_nat_port",
        "The verdict's stable reason code, whose rule decided it (owner), the remote "
        "sources that reach the port, and the binding's container side.",
        labels=[*PORT_LABELS, *INFO_LABELS],
    )
    exposure = GaugeMetricFamily(
        "docker_nat_port_exposure",
        "1 for who can reach the port (public: every remote address, restricted: some, "
        "local: none), 0 for the others.",
        labels=[*PORT_LABELS, "exposure"],
    )
    present = GaugeMetricFamily(
        "docker_nat_rule_present",
        "1 when a per-port rule Docker's layout expects is in the kernel.",
        labels=[*PORT_LABELS, "kind"],
    )
    for p in ports:
        lv = port_labels(p.binding)
        for st in STATES:
            state.add_metric([*lv, st], 1 if p.verdict.state == st else 0)
        info.add_metric([*lv, *info_values(p)], {})
        for ex in EXPOSURES:
            exposure.add_metric([*lv, ex], 1 if p.verdict.exposure == ex else 0)
        for e in p.rules:
            present.add_metric([*lv, e.expected.kind], 1 if e.present else 0)
    return state, info, exposure, present


def select_ports(ports, limit: int):
    """At most `limit` ports, the unhealthy ones first so a cap never hides a broken port."""
    if len(ports) <= limit:
        return ports, 0
    ranked = sorted(ports, key=lambda p: SEVERITY[p.verdict.state])
    return ranked[:limit], len(ports) - limit


def stale_counts(s: Snapshot) -> dict[tuple[str, str, str], int]:
    """Stale rules per (family, table, chain): a 0 for each chain Docker's generation keeps its
    DNAT and ACCEPT rules in (iptables: nat/filter DOCKER; nftables backend: the DNAT chain of
    `ip(6) docker-bridges`), so the series exists before anything goes stale, plus every chain
    a stale rule was found in (the nftables backend's per-bridge filter-forward-in__* chains)."""
    nft = s.daemon is not None and s.daemon.generation == "nftables"
    counts: dict[tuple[str, str, str], int] = {}
    for fam in sorted({r.family for r in s.stale} | {"ipv4"}):
        if nft:
            counts[(fam, nft_expect.label(fam), nft_expect.NAT_CHAIN)] = 0
        else:
            counts.update({(fam, "nat", "DOCKER"): 0, (fam, "filter", "DOCKER"): 0})
    for r in s.stale:
        key = (r.family, r.table, r.chain)
        counts[key] = counts.get(key, 0) + 1
    return counts


# what only the families before the per-port ones show (or nothing does)
BEFORE_ONLY = frozenset({"taken_at", "duration_seconds", "sources", "warnings", "timings"})
AFTER_FIELDS = tuple(f.name for f in fields(Snapshot) if f.name not in BEFORE_ONLY | {"ports"})


def same_after(a: Snapshot, b: Snapshot) -> bool:
    """Whether the families after the per-port ones are the same for both: the same port
    objects (the analysis keeps a port it did not walk again; comparing 5,000 ports field by
    field costs more than the families) and every other field the families read equal."""
    return (len(a.ports) == len(b.ports) and all(map(operator.is_, a.ports, b.ports))
            and all(getattr(a, f) == getattr(b, f) for f in AFTER_FIELDS))  # fmt: skip


class SnapshotCollector(Collector):
    def __init__(self, holder, max_bindings: int = 5000) -> None:
        self.holder = holder  # has .snapshot (Snapshot | None) and .errors (dict source → count)
        self.max_bindings = max_bindings
        self._after: tuple[Snapshot, list[Metric]] | None = None  # parts(): the last "after"
        self._kept_containers: tuple[tuple, Metric] | None = None

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: never collect at registration time

    def collect(self) -> Iterator[Metric]:
        s: Snapshot | None = self.holder.snapshot
        yield from self._self_metrics(s)
        if s is None:
            return
        yield from port_families(self.selected(s)[0])
        yield from self._after_ports(s)

    def selected(self, s: Snapshot):
        """(the ports given per-port series, how many are left out)."""
        return select_ports(s.ports, self.max_bindings)

    def parts(self) -> tuple[Snapshot | None, list[Metric], list, list[Metric]]:
        """What collect() yields, as (snapshot, the families before the per-port ones, the ports
        they are about, the families after them): serve.exposition renders the middle itself."""
        s: Snapshot | None = self.holder.snapshot
        before = list(self._self_metrics(s))
        if s is None:
            return s, before, [], []
        last = self._after
        if last is None or not same_after(last[0], s):
            last = self._after = (s, list(self._after_ports(s)))
        return s, before, self.selected(s)[0], last[1]

    def _after_ports(self, s: Snapshot) -> Iterator[Metric]:
        yield from self._port_counts(s)
        yield from self._aggregates(s)
        yield from self._facts(s)

    def _self_metrics(self, s: Snapshot | None) -> Iterator[Metric]:
        info = InfoMetricFamily(
            "docker_nat_exporter_build", "Version of the exporter and of Python running it."
        )
        info.add_metric([], {"version": __version__, "python_version": platform.python_version()})
        yield info
        errors = CounterMetricFamily(
            "docker_nat_refresh_errors", "Failed reads per source since start.", labels=["source"]
        )
        for src, n in sorted(self.holder.errors.items()):
            errors.add_metric([src], n)
        yield errors
        if s is None:
            return
        up = GaugeMetricFamily(
            "docker_nat_source_up", "1 when the last read of the source worked.", labels=["source"]
        )
        for src in s.sources:
            up.add_metric([src.name], 1 if src.up else 0)
        yield up
        yield GaugeMetricFamily(
            "docker_nat_last_refresh_timestamp_seconds",
            "When the snapshot served now was taken (refreshed on an interval and on events).",
            value=s.taken_at,
        )
        yield GaugeMetricFamily(
            "docker_nat_refresh_duration_seconds",
            "How long computing the snapshot served now took.",
            value=s.duration_seconds,
        )

    def _port_counts(self, s: Snapshot) -> Iterator[Metric]:
        omitted = self.selected(s)[1]
        yield GaugeMetricFamily(
            "docker_nat_bindings", "Published host-port bindings in the snapshot.", len(s.ports)
        )
        yield GaugeMetricFamily(
            "docker_nat_bindings_omitted",
            "Bindings left out of per-port series by --max-bindings.",
            value=omitted,
        )
        yield self._containers(s.containers)

    def _containers(self, containers) -> Metric:
        """docker_nat_container, made again only for another tuple of containers (the refresh
        keeps the Docker state while the API answers the same)."""
        kept = self._kept_containers
        if kept is not None and kept[0] is containers:
            return kept[1]
        cinfo = InfoMetricFamily(
            "docker_nat_container",
            "Containers with published ports.",
            labels=["container", "container_id", "image", "compose_project", "compose_service"],
        )
        for c in containers:
            cinfo.add_metric(
                [bound(v) for v in (c.name, c.id, c.image, c.compose_project, c.compose_service)],
                {},
            )
        self._kept_containers = (containers, cinfo)
        return cinfo

    def _aggregates(self, s: Snapshot) -> Iterator[Metric]:
        expected: dict[tuple[str, str], set] = {}
        missing: dict[tuple[str, str], set] = {}
        evidence = [e for p in s.ports for e in p.rules] + list(s.jumps) + list(s.bridge_rules)
        for e in evidence:
            key = (e.expected.family, e.expected.kind)
            expected.setdefault(key, set()).add(e.expected.key)
            if not e.present:
                missing.setdefault(key, set()).add(e.expected.key)
        fam_kind = ["family", "kind"]
        exp_f = GaugeMetricFamily(
            "docker_nat_rules_expected", "Rules Docker's layout expects.", labels=fam_kind
        )
        mis_f = GaugeMetricFamily(
            "docker_nat_rules_missing", "Expected rules not in the kernel.", labels=fam_kind
        )
        families = {f for f, _ in expected} or {"ipv4"}
        for fam in sorted(families):
            for kind in (*PORT_KINDS, "jump", "bridge_rule"):
                exp_f.add_metric([fam, kind], len(expected.get((fam, kind), ())))
                mis_f.add_metric([fam, kind], len(missing.get((fam, kind), ())))
        yield from (exp_f, mis_f)
        stale = GaugeMetricFamily(
            "docker_nat_stale_rules",
            "DNAT/ACCEPT rules in Docker's chains that belong to no live binding.",
            labels=["family", "table", "chain"],
        )
        for key, n in stale_counts(s).items():
            stale.add_metric(list(key), n)
        yield stale
        jumps = GaugeMetricFamily(
            "docker_nat_jump_present",
            "1 when a jump Docker's layout needs is in the kernel.",
            labels=["family", "table", "chain", "target", "bridge"],
        )
        for e in s.jumps:
            x = e.expected
            jumps.add_metric(
                [x.family, x.table, x.chain, x.target, x.bridge], 1 if e.present else 0
            )
        yield jumps

    def _facts(self, s: Snapshot) -> Iterator[Metric]:
        yield from fact_metrics(s, backends_mixed(s))
