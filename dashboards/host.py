"""The per-host dashboard (uid docker-nat-host)."""

from __future__ import annotations

from .grafana import (
    PRESENT_MAP,
    STATE_COLORS,
    override,
    stat,
    state_timeline,
    steps,
    table,
    target,
    timeseries,
    value_map,
)
from .layout import Grid, dashboard
from .panels import (
    ALERT_STEPS,
    WARN_STEPS,
    YES_NO_BAD,
    colored,
    count_stat,
    snapshot_age,
    state_column,
)
from .queries import BROKEN, PORT, annotations, by_host, eq, m, rows


def host_now(g: Grid) -> None:
    g.row("Now")
    g.add(
        count_stat(
            "OK ports",
            'state="ok"',
            "Ports delivered to the container as Docker designed.",
            steps(("blue", None)),
        ),
        4,
        4,
    )
    g.add(
        count_stat("Proxied", 'state="proxied"', "Ports served only by docker-proxy.", WARN_STEPS),
        4,
        4,
    )
    g.add(
        count_stat("Broken", BROKEN, "Misrouted, dropped or unreachable ports.", ALERT_STEPS), 4, 4
    )
    g.add(
        count_stat("Unknown", 'state="unknown"', "Ports the exporter cannot judge.", WARN_STEPS),
        4,
        4,
    )
    g.add(
        stat(
            "Snapshot age",
            f"time() - {m('docker_nat_last_refresh_timestamp_seconds')}",
            "Age of the snapshot the exporter serves.",
            unit="s",
            thresholds=steps(("green", None), ("yellow", 60), ("red", 120)),
        ),
        4,
        4,
    )
    g.add(
        stat(
            "Refresh duration",
            m("docker_nat_refresh_duration_seconds"),
            "How long computing the snapshot took.",
            unit="s",
            thresholds=steps(("green", None), ("yellow", 5), ("red", 10)),
        ),
        4,
        4,
    )
    up = value_map({1: ("up", "green"), 0: ("DOWN", "red")})
    g.add(
        stat(
            "Sources",
            m("docker_nat_source_up"),
            "Whether each source could be read.",
            mappings=up,
            legend="{{source}}",
            text_mode="value_and_name",
        ),
        8,
        4,
    )
    g.add(
        stat(
            "iptables",
            m("docker_nat_iptables_info"),
            "The host's iptables build.",
            legend="{{version}} ({{package_version}}, {{backend}})",
            text_mode="name",
            color_mode="none",
        ),
        6,
        4,
    )
    g.add(
        stat(
            "Known-bad iptables",
            m("docker_nat_iptables_known_bad"),
            "1 when the build is listed as breaking Docker.",
            mappings=YES_NO_BAD,
        ),
        3,
        4,
    )
    g.add(
        stat(
            "-C self-test broken",
            m("docker_nat_iptables_check_command_broken"),
            "`iptables -C` ignores interface names (empty: self-test off).",
            mappings=YES_NO_BAD,
            defaults={"noValue": "off"},
        ),
        3,
        4,
    )
    g.add(
        stat(
            "Backends mixed",
            m("docker_nat_iptables_backends_mixed"),
            "Both nf_tables and legacy hold rules.",
            mappings=YES_NO_BAD,
        ),
        4,
        4,
    )


def host_ports(g: Grid) -> None:
    g.row("Published ports")
    kinds = {"C": "dnat", "D": "forward_accept", "E": "hairpin_masquerade", "F": "loopback_drop"}
    rules = [
        target(
            f"max without (kind) ({m('docker_nat_rule_present', eq('kind', k))})", ref, table=True
        )
        for ref, k in kinds.items()
    ]
    rule_cols = {f"Value #{ref}": f"{k} rule" for ref, k in kinds.items()}
    g.add(
        table(
            "Published ports",
            [
                target(rows(f"{m('docker_nat_port_state')} == 1"), "A", table=True),
                target(rows(m("docker_nat_port_info")), "B", table=True),
                target(rows(f"{m('docker_nat_port_exposure')} == 1"), "G", table=True),
                *rules,
            ],
            "One row per binding: its state, the reason code and whose rule decided it (owner), "
            "who can reach it (exposure, allowed_sources), and which of the rules Docker's "
            "layout expects are in the kernel (empty: not expected for this binding).",
            hide=("job", "instance", "Value #A", "Value #B", "Value #G"),
            rename=rule_cols,
            overrides=[
                state_column(),
                *(colored(c, "text", mappings=PRESENT_MAP) for c in rule_cols.values()),
            ],
            sort=("state", False),
        ),
        24,
        10,
    )
    code = " or ".join(
        f"{m('docker_nat_port_state', eq('state', s))} * {i}" for i, s in enumerate(STATE_COLORS, 1)
    )
    codes = value_map({i: (s, c) for i, (s, c) in enumerate(STATE_COLORS.items(), 1)})
    g.add(
        state_timeline(
            "Port states over time",
            [
                target(
                    f"max by ({', '.join(PORT)}) ({code})",
                    legend="{{container}} {{host_ip}}:{{host_port}}/{{protocol}}",
                )
            ],
            "Each binding's state over time.",
            codes,
        ),
        24,
        10,
    )


def host_rules(g: Grid) -> None:
    g.row("Rules")
    g.add(
        table(
            "Jumps Docker needs",
            [target(m("docker_nat_jump_present"), table=True)],
            "Each jump of Docker's layout and whether it is in the kernel.",
            hide=("job", "instance"),
            rename={"Value": "jump"},
            overrides=[colored("jump", "background", mappings=PRESENT_MAP)],
            sort=("jump", False),
        ),
        12,
        8,
    )
    g.add(
        table(
            "Rules expected and missing",
            [
                target(rows(m("docker_nat_rules_expected")), "A", table=True),
                target(rows(m("docker_nat_rules_missing")), "B", table=True),
            ],
            "Rules of each kind Docker's layout expects, and how many are not in the kernel.",
            hide=("job", "instance"),
            rename={"Value #A": "expected", "Value #B": "missing"},
            overrides=[colored("missing", "text", thresholds=ALERT_STEPS)],
            sort=("missing", True),
        ),
        12,
        8,
    )
    g.add(
        timeseries(
            "Missing rules",
            [target(m("docker_nat_rules_missing"), legend="{{family}} {{kind}}")],
            "Expected rules not in the kernel, by family and kind.",
        ),
        12,
        8,
    )
    g.add(
        timeseries(
            "Stale rules",
            [target(m("docker_nat_stale_rules"), legend="{{family}} {{table}}/{{chain}}")],
            "DNAT or ACCEPT rules in Docker's chains that belong to no live binding.",
        ),
        12,
        8,
    )


def host_facts(g: Grid) -> None:
    g.row("Host, Docker and exporter")
    daemon = (
        "max by (job, instance, version, api_version, firewall_backend, userland_proxy, rootless)"
    )
    g.add(
        table(
            "Docker daemon",
            [
                target(f"{daemon} ({m('docker_nat_docker_info')})", "A", table=True),
                target(
                    f"{by_host('max', 'docker_nat_docker_daemon_start_time_seconds')} * 1000",
                    "B",
                    table=True,
                ),
                target(
                    f"{by_host('max', 'docker_nat_host_boot_time_seconds')} * 1000", "C", table=True
                ),
            ],
            "Docker's version and firewall settings; when dockerd and the host started.",
            hide=("job", "instance", "Value #A"),
            rename={"Value #B": "dockerd started", "Value #C": "host booted"},
            overrides=[
                override(c, unit="dateTimeFromNow") for c in ("dockerd started", "host booted")
            ],
        ),
        12,
        5,
    )
    g.add(
        timeseries(
            "Rules per iptables backend",
            [target(m("docker_nat_iptables_backend_rules"), legend="{{backend}} {{family}}")],
            "Rules (-A lines) each backend holds; both non-zero means mixed backends.",
        ),
        12,
        5,
    )
    g.add(
        timeseries(
            "Refresh duration",
            [target(m("docker_nat_refresh_duration_seconds"), legend="refresh")],
            "How long computing each snapshot took.",
            unit="s",
        ),
        8,
        7,
    )
    g.add(snapshot_age("age", "Age of the snapshot the exporter serves."), 8, 7)
    g.add(
        timeseries(
            "Refresh errors",
            [
                target(
                    f"sum by (source) (increase({m('docker_nat_refresh_errors_total')}"
                    "[$__rate_interval]))",
                    legend="{{source}}",
                )
            ],
            "Failed reads per source.",
        ),
        8,
        7,
    )
    g.add(
        table(
            "Containers with published ports",
            [target(m("docker_nat_container_info"), table=True)],
            "Running containers that publish at least one port.",
            hide=("job", "instance", "Value"),
            sort=("container", False),
        ),
        18,
        8,
    )
    g.add(
        stat(
            "Bindings left out",
            m("docker_nat_bindings_omitted"),
            "Bindings without per-port series because of --max-bindings: the port table is "
            "incomplete while this is above 0.",
            thresholds=WARN_STEPS,
        ),
        3,
        4,
    )
    g.add(
        stat(
            "Published bindings",
            m("docker_nat_bindings"),
            "Published host-port bindings in the last snapshot.",
            thresholds=steps(("blue", None)),
        ),
        3,
        4,
    )


def host() -> dict:
    g = Grid()
    for part in (host_now, host_ports, host_rules, host_facts):
        part(g)
    return dashboard(
        "docker-nat-host",
        "Docker DNAT / Host",
        "One Docker host: every published port with its state, reason and rule "
        "evidence, Docker's jumps, stale rules, and the exporter's refreshes.",
        g,
        annotations(host=True),
        instance_multi=False,
    )
