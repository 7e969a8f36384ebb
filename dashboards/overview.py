"""The fleet overview dashboard (uid docker-nat-overview)."""

from __future__ import annotations

from .grafana import stat, table, target, timeseries
from .layout import Grid, dashboard
from .panels import (
    ALERT_STEPS,
    WARN_STEPS,
    YES_NO_BAD,
    colored,
    count_stat,
    host_column,
    snapshot_age,
    state_column,
    state_overrides,
)
from .queries import ADMIN, BROKEN, ON_PORT, PORT, SEL, annotations, by_host, eq, m, rows


def with_port_info(expr: str, on: str) -> list[dict]:
    """Table targets: the ports `expr` selects (A), and the same ports' docker_nat_port_info
    (B), joined on the labels `on`."""
    return [
        target(rows(expr), "A", table=True),
        target(rows(f"{m('docker_nat_port_info')} and on ({on}) ({expr})"), "B", table=True),
    ]


def overview_now(g: Grid) -> None:
    g.row("Fleet now")
    g.add(
        stat(
            "Hosts with broken ports",
            f"count({by_host('sum', 'docker_nat_port_state', BROKEN)} > 0) or vector(0)",
            "Hosts where at least one published port is misrouted, dropped or unreachable.",
            thresholds=ALERT_STEPS,
        ),
        4,
        4,
    )
    g.add(
        count_stat(
            "Broken ports", BROKEN, "Published ports that remote clients cannot reach.", ALERT_STEPS
        ),
        4,
        4,
    )
    g.add(
        count_stat(
            "Ports via docker-proxy only",
            'state="proxied"',
            "Ports without DNAT that work only through docker-proxy (client addresses are lost).",
            WARN_STEPS,
        ),
        4,
        4,
    )
    g.add(
        count_stat(
            "Ports in unknown state",
            'state="unknown"',
            "Ports the exporter cannot judge.",
            WARN_STEPS,
        ),
        4,
        4,
    )
    g.add(
        stat(
            "Hosts on a known-bad iptables",
            f"sum({m('docker_nat_iptables_known_bad')}) or vector(0)",
            "Hosts whose iptables build is listed as breaking Docker.",
            thresholds=ALERT_STEPS,
        ),
        4,
        4,
    )
    g.add(
        stat(
            "Exporters down",
            f"count(up{{{SEL}}} == 0) or vector(0)",
            "Exporter targets Prometheus cannot scrape.",
            thresholds=ALERT_STEPS,
        ),
        4,
        4,
    )
    g.add(
        table(
            "Hosts with broken ports now",
            [target(f"{by_host('sum', 'docker_nat_port_state', BROKEN)} > 0", table=True)],
            "Click a host for its host view.",
            hide=("job",),
            rename={"instance": "Host", "Value": "Broken ports"},
            overrides=[host_column()],
            sort=("Broken ports", True),
        ),
        8,
        8,
    )
    broken = f"{m('docker_nat_port_state', BROKEN)} == 1"
    on = ", ".join(("job", "instance", *PORT))
    g.add(
        table(
            "Broken ports now",
            with_port_info(broken, on),
            "Every broken port with the exporter's reason code (docs/verdicts.md#reason-codes).",
            hide=("job", "Value #A", "Value #B", "container_id", "container_ip", "bridge"),
            overrides=[state_column(), host_column()],
            sort=("instance", False),
        ),
        16,
        8,
    )


def overview_exposure(g: Grid) -> None:
    g.row("Exposure")
    public = f"{m('docker_nat_port_exposure', eq('exposure', 'public'))} == 1"
    g.add(
        stat(
            "Ports open to the internet",
            f"sum({m('docker_nat_port_exposure', eq('exposure', 'public'))}) or vector(0)",
            "Published ports every remote address can reach: no DOCKER-USER or host firewall "
            "rule restricts them (ufw's INPUT rules do not apply to published ports).",
            thresholds=WARN_STEPS,
        ),
        4,
        8,
    )
    g.add(
        stat(
            "Ports closed by an admin's firewall",
            f"count(({m('docker_nat_port_state', BROKEN)} == 1) and on ({ON_PORT}) "
            f"{m('docker_nat_port_info', ADMIN)}) or vector(0)",
            "Ports no remote client reaches because of a DOCKER-USER or host rule "
            "(DockerNatPublishedPortBlocked): policy, not Docker breakage.",
            thresholds=WARN_STEPS,
        ),
        4,
        8,
    )
    g.add(
        table(
            "Published ports open to the internet",
            with_port_info(public, ON_PORT),
            "Every port open to every remote address, by host (restricted ports, with their "
            "allowed sources, are in each host's view).",
            hide=(
                "job",
                "Value #A",
                "Value #B",
                "container_id",
                "container_ip",
                "bridge",
                "reason",
                "owner",
                "allowed_sources",
            ),
            overrides=[host_column()],
            sort=("instance", False),
        ),
        16,
        8,
    )


def overview_trends(g: Grid) -> None:
    g.row("Over time")
    g.add(
        timeseries(
            "Ports by state",
            [target(f"sum by (state) ({m('docker_nat_port_state')})", legend="{{state}}")],
            "Published ports of the selected hosts, stacked by state.",
            stack=True,
            overrides=state_overrides(),
        ),
        12,
        8,
    )
    g.add(
        timeseries(
            "Broken ports by host",
            [
                target(
                    f"{by_host('sum', 'docker_nat_port_state', BROKEN)} > 0", legend="{{instance}}"
                )
            ],
            "Hosts appear only while they have broken ports.",
        ),
        12,
        8,
    )


def overview_hosts(g: Grid) -> None:
    g.row("iptables and Docker")
    info = "max by (job, instance, version, package_version, backend, package_manager)"
    g.add(
        table(
            "iptables builds by host",
            [
                target(f"{info} ({m('docker_nat_iptables_info')})", "A", table=True),
                target(by_host("max", "docker_nat_iptables_known_bad"), "B", table=True),
                target(by_host("max", "docker_nat_iptables_check_command_broken"), "C", table=True),
                target(by_host("max", "docker_nat_iptables_backends_mixed"), "D", table=True),
            ],
            "Known-bad builds and failed `iptables -C` self-tests in red (empty: self-test off).",
            hide=("job", "Value #A"),
            rename={
                "Value #B": "Known bad",
                "Value #C": "-C self-test broken",
                "Value #D": "Backends mixed",
            },
            overrides=[
                colored(c, "background", mappings=YES_NO_BAD)
                for c in ("Known bad", "-C self-test broken", "Backends mixed")
            ]
            + [host_column()],
            sort=("Known bad", True),
        ),
        14,
        8,
    )
    docker = "max by (job, instance, version, firewall_backend, userland_proxy, rootless)"
    g.add(
        table(
            "Docker daemons",
            [target(f"{docker} ({m('docker_nat_docker_info')})", table=True)],
            "Docker version, firewall backend and userland-proxy setting per host.",
            hide=("job", "Value"),
            overrides=[host_column()],
        ),
        10,
        8,
    )


def overview_health(g: Grid) -> None:
    g.row("Exporter health")
    g.add(
        timeseries(
            "Exporter targets",
            [
                target(f"sum(up{{{SEL}}})", "A", legend="up"),
                target(f"count(up{{{SEL}}})", "B", legend="targets"),
            ],
            "Targets up against targets known to Prometheus.",
        ),
        8,
        7,
    )
    g.add(
        timeseries(
            "Sources down",
            [target(f"count by (source) ({m('docker_nat_source_up')} == 0)", legend="{{source}}")],
            "How many exporters could not read each source on their last refresh.",
            unit="none",
        ),
        8,
        7,
    )
    g.add(
        snapshot_age(
            "{{instance}}",
            "Age of the snapshot each exporter serves; DockerNatSnapshotStale fires above 120 s.",
        ),
        8,
        7,
    )


def overview() -> dict:
    g = Grid()
    for part in (overview_now, overview_exposure, overview_trends, overview_hosts, overview_health):
        part(g)
    return dashboard(
        "docker-nat-overview",
        "Docker DNAT / Overview",
        "Published Docker ports across the fleet: which hosts have broken ports, which ports "
        "are open to the internet, states over time, iptables builds and exporter health.",
        g,
        annotations(host=False),
        instance_multi=True,
    )
