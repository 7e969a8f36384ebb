"""A snapshot in words, for `check` and the status page alike: the headline, the facts about
Docker and the host, the diagnostics, and who can reach a port.

Neither in cli nor in web: serve's service runs the web app, so web may import nothing that
imports serve (cli does). Snapshot is named for type checking only.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from exporter.path.verdict import SEVERITY

if TYPE_CHECKING:
    from exporter.serve.snapshot import Snapshot


def summary_line(s: Snapshot) -> str:
    """What is broken, in one line: the first line of `check` and the status page's headline."""
    if not s.source_up("docker") or s.daemon is None:
        return "Docker could not be read: no published port was checked"
    n, bad = len(s.ports), [p.verdict.state for p in s.ports if p.verdict.state != "ok"]
    if n == 0:
        text = "No published ports"
    elif not bad:
        text = f"All {n} published ports ok" if n > 1 else "The published port is ok"
    else:
        by = ", ".join(f"{bad.count(st)} {st}" for st in sorted(set(bad), key=SEVERITY.get))
        text = f"{len(bad)} of {n} published ports not ok ({by})"
    missing = sum(not j.present for j in s.jumps)
    if missing:
        text += f"; {missing} of Docker's jumps missing"
    if s.stale:
        text += f"; {len(s.stale)} stale rule{'s' if len(s.stale) > 1 else ''}"
    return text


def backends_mixed(s: Snapshot) -> bool:
    with_rules = {b for b, _, n in s.backend_rules if n > 0}
    return {"nf_tables", "legacy"} <= with_rules


def fact_lines(s: Snapshot) -> list[str]:
    """What Docker and the host are, and WARNING findings about them (stdout of `check`)."""
    lines = []
    d = s.daemon
    if d:
        proxy = {True: "on", False: "off", None: "unknown"}[d.userland_proxy]
        lines.append(
            f"Docker {d.version} (API {d.api_version}), firewall backend {d.firewall_backend}, "
            f"layout {d.generation}, userland proxy {proxy} ({d.userland_proxy_source})"
            + (", rootless" if d.rootless else "")
        )
    lines += _host_lines(s)
    for fam, backend in s.docker_backends:
        lines.append(f"Docker's {fam} chains are in the {backend} backend")
    counts = ", ".join(f"{b}/{f}: {n} rules" for b, f, n in s.backend_rules)
    if counts:
        lines.append(f"Rules read: {counts}")
    if backends_mixed(s):
        lines.append("WARNING: both the nf_tables and the legacy backend hold rules")
    return lines


def diagnostic_lines(s: Snapshot) -> list[str]:
    """Sources that failed, parse warnings and notes on host facts (stderr of `check`)."""
    lines = [f"ERROR: cannot read {x.name}: {x.error}" for x in s.sources if not x.up]
    lines += [f"warning: {w}" for w in s.warnings]
    ipt = getattr(s.host, "iptables", None)
    if ipt is not None:
        lines += [f"note: {e}" for e in (*ipt.errors, *s.host.errors)]
    return lines


def _host_lines(s: Snapshot) -> list[str]:
    h = s.host
    ipt = getattr(h, "iptables", None)
    if ipt is None:
        return []
    pkg = f", package {ipt.package_name} {ipt.package_version} ({ipt.package_manager})"
    lines = [
        f"iptables {ipt.version or '?'} ({ipt.backend or '?'})"
        + (pkg if ipt.package_version else "")
    ]
    if ipt.known_bad:
        lines.append(f"WARNING: known-bad iptables build: {ipt.known_bad.reason}")
    if ipt.check_command_broken:
        lines.append("WARNING: `iptables -C` ignores interface names on this host (1.8.11 bug)")
    times = [
        (label, value)
        for label, value in (("host booted", h.boot_time_seconds),
                             ("dockerd started", h.daemon_start_time_seconds))
        if value is not None
    ]  # fmt: skip
    if times:
        lines.append(", ".join(f"{label} {_when(value)}" for label, value in times))
    return lines


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def sources(v) -> str:
    """Who can reach the port: `public`, `restricted: 192.0.2.0/24`, `local`, `unknown`."""
    if v.exposure == "restricted":
        return f"restricted: {v.allowed}"
    return v.exposure or "-"
