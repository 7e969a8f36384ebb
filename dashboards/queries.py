"""PromQL selectors and annotations shared by both dashboards.

Every selector carries the $job and $instance variables, so no job name is written into them.
"""

from __future__ import annotations

from .layout import time_annotation

SEL = 'job=~"$job", instance=~"$instance"'
BROKEN = 'state=~"misrouted|dropped|unreachable"'
PORT = ("container", "host_ip", "host_port", "protocol")
# every label of a port's series besides job and instance: joins between them are one to one
ON_PORT = "job, instance, container, network, family, protocol, host_ip, host_port, container_port"
ADMIN = 'owner=~"docker-user|host"'  # an admin's rule decided (docs/verdicts.md)


def m(metric: str, extra: str = "") -> str:
    return f"{metric}{{{SEL}{', ' + extra if extra else ''}}}"


def rows(expr: str) -> str:
    """`expr` without its metric name, so Grafana's merge can join it with other queries' rows
    on the labels alone (rows whose __name__ differs never merge)."""
    return f"sum without () ({expr})"


def eq(label: str, value: str) -> str:
    return f'{label}="{value}"'


def by_host(agg: str, metric: str, extra: str = "") -> str:
    return f"{agg} by (job, instance) ({m(metric, extra)})"


def annotations(host: bool) -> list[dict]:
    marks = [
        time_annotation(
            "Docker daemon starts",
            f"max by (instance) ({m('docker_nat_docker_daemon_start_time_seconds')})",
            "orange",
            "dockerd started",
        ),
        time_annotation(
            "Host boots",
            f"max by (instance) ({m('docker_nat_host_boot_time_seconds')})",
            "blue",
            "host booted",
        ),
    ]
    if host:
        marks.append(
            time_annotation(
                "firewalld reloads",
                f"max by (instance) ({m('docker_nat_firewalld_reload_timestamp_seconds')})",
                "purple",
                "firewalld reloaded",
            )
        )
    return marks
