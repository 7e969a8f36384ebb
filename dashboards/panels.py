"""Panels and panel pieces both dashboards use: colours, coloured cells, the port-state counts,
the snapshot's age and the link from a host's row to its host view."""

from __future__ import annotations

from .grafana import STATE_COLORS, STATE_MAP, override, stat, steps, target, timeseries, value_map
from .queries import m

ALERT_STEPS = steps(("green", None), ("red", 1))
WARN_STEPS = steps(("green", None), ("yellow", 1))
YES_NO_BAD = value_map({0: ("no", "green"), 1: ("YES", "red")})
HOST_LINK = [
    {
        "title": "Open the host view",
        "url": "/d/docker-nat-host/docker-dnat-host?${datasource:queryparam}&${job:queryparam}"
        "&var-instance=${__data.fields.instance}&${__url_time_range}",
    }
]


def colored(column: str, cell: str, **props) -> dict:
    """A table column whose cells are coloured (`cell`: "background" or "text")."""
    return override(column, custom__cellOptions={"type": f"color-{cell}"}, **props)


def state_column() -> dict:
    """The `state` column of a table of ports, each cell in its state's colour."""
    return colored("state", "background", mappings=STATE_MAP)


def host_column() -> dict:
    """The `instance` column, each cell a link to that host's view."""
    return override("instance", links=HOST_LINK)


def count_stat(title: str, state: str, description: str, colors) -> dict:
    return stat(
        title,
        f"sum({m('docker_nat_port_state', state)}) or vector(0)",
        description,
        thresholds=colors,
    )


def state_overrides() -> list[dict]:
    return [override(s, color={"mode": "fixed", "fixedColor": c}) for s, c in STATE_COLORS.items()]


def snapshot_age(legend: str, description: str) -> dict:
    """The age of the snapshot served over time, a red line at the stale alert's 120 s."""
    return timeseries(
        "Snapshot age",
        [target(f"time() - {m('docker_nat_last_refresh_timestamp_seconds')}", legend=legend)],
        description,
        unit="s",
        threshold_line=steps(("green", None), ("red", 120)),
    )
