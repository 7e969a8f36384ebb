"""Host and daemon facts as metric families: iptables build, backends, Docker info, times."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric

from exporter.serve.labels import bound
from exporter.serve.snapshot import Snapshot


def _flag(value: bool | None) -> str:
    return {True: "true", False: "false", None: "unknown"}[value]


def fact_metrics(s: Snapshot, mixed: bool) -> Iterator[Metric]:
    rules = GaugeMetricFamily(
        "docker_nat_iptables_backend_rules",
        "Rules (-A lines) each iptables backend holds, from iptables-*-save.",
        labels=["backend", "family"],
    )
    for backend, family, n in s.backend_rules:
        rules.add_metric([backend, family], n)
    yield rules
    errors = GaugeMetricFamily(
        "docker_nat_rule_parse_errors",
        "Lines of the rule listings the exporter could not read; paths through them are unknown.",
        labels=["backend", "family"],
    )
    for backend, family, n in s.parse_errors:
        errors.add_metric([backend, family], n)
    yield errors
    yield GaugeMetricFamily(
        "docker_nat_iptables_backends_mixed",
        "1 when both the nf_tables and the legacy backend hold rules.",
        value=1 if mixed else 0,
    )
    d = s.daemon
    if d is not None:
        info = InfoMetricFamily(
            "docker_nat_docker", "The Docker daemon, from /version, /info and its command line."
        )
        info.add_metric(
            [],
            {
                "version": bound(d.version),
                "api_version": bound(d.api_version),
                "firewall_backend": bound(d.firewall_backend),
                "userland_proxy": _flag(d.userland_proxy),
                "rootless": _flag(d.rootless),
            },
        )
        yield info
        if d.firewalld_reloaded_at is not None:
            yield GaugeMetricFamily(
                "docker_nat_firewalld_reload_timestamp_seconds",
                "The last firewalld reload Docker reacted to (FirewallBackend.Info ReloadedAt).",
                value=d.firewalld_reloaded_at,
            )
    yield from _host(s.host)


def _host(h) -> Iterator[Metric]:
    if h is None:
        return
    ipt = h.iptables
    info = InfoMetricFamily(
        "docker_nat_iptables", "The host's iptables build: binary version, backend, package."
    )
    info.add_metric(
        [],
        {
            "version": ipt.version,
            "package_version": ipt.package_version,
            "backend": ipt.backend,
            "package_manager": ipt.package_manager,
        },
    )
    yield info
    yield GaugeMetricFamily(
        "docker_nat_iptables_known_bad",
        "1 when the host's iptables build is listed as breaking Docker (known_bad.toml).",
        value=1 if ipt.known_bad else 0,
    )
    if ipt.known_bad:
        bad = InfoMetricFamily(
            "docker_nat_iptables_known_bad_reason", "Which known-bad entry matched, and why."
        )
        kb = ipt.known_bad
        url = kb.urls[0] if kb.urls else ""
        bad.add_metric([], {"id": kb.id, "reason": kb.reason[:200], "url": url})
        yield bad
    if ipt.check_command_broken is not None:
        yield GaugeMetricFamily(
            "docker_nat_iptables_check_command_broken",
            "1 when `iptables -C` ignores interface names (self-test in a throwaway namespace).",
            value=1 if ipt.check_command_broken else 0,
        )
    for name, value, help_ in (
        ("docker_nat_docker_daemon_start_time_seconds", h.daemon_start_time_seconds,
         "When dockerd last started (Unix seconds), from /proc or systemd."),
        ("docker_nat_host_boot_time_seconds", h.boot_time_seconds,
         "Host boot time (Unix seconds), from /proc/stat btime."),
    ):  # fmt: skip
        if value is not None:
            yield GaugeMetricFamily(name, help_, value=value)
