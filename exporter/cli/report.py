"""`check` output: header lines and the summary for humans, JSON for machines, the exit code.

The table itself is exporter.cli.table."""

from __future__ import annotations

import json
import time
from dataclasses import asdict

from exporter.path.verdict import SEVERITY
from exporter.serve.snapshot import Snapshot, backends_mixed

EXIT_OK, EXIT_NOT_OK, EXIT_UNREADABLE = 0, 1, 2
MAX_PREFIXES = 256  # a class's exact prefixes in --json: at most these (the rest is counted)


def exit_code(s: Snapshot) -> int:
    if not s.readable:
        return EXIT_UNREADABLE
    broken = any(p.verdict.state != "ok" for p in s.ports) or any(not j.present for j in s.jumps)
    return EXIT_NOT_OK if broken else EXIT_OK


def header_lines(s: Snapshot) -> list[str]:
    """Facts and findings, then diagnostics: the status page shows them all."""
    return fact_lines(s) + diagnostic_lines(s)


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


def to_json(s: Snapshot) -> str:
    d = s.daemon
    doc = {
        "taken_at": s.taken_at,
        "exit_code": exit_code(s),
        "sources": {x.name: {"up": x.up, "error": x.error} for x in s.sources},
        "daemon": None
        if d is None
        else {
            "version": d.version,
            "api_version": d.api_version,
            "firewall_backend": d.firewall_backend,
            "layout": d.generation,
            "userland_proxy": d.userland_proxy,
            "userland_proxy_source": d.userland_proxy_source,
            "rootless": d.rootless,
        },
        "ports": [_port_json(p) for p in s.ports],
        "jumps": [_evidence_json(e) for e in s.jumps],
        "bridge_rules": [_evidence_json(e) for e in s.bridge_rules],
        "stale_rules": [
            {"family": r.family, "backend": r.backend, "rule": r.ref, "text": r.text}
            for r in s.stale
        ],
        "backend_rules": [{"backend": b, "family": f, "rules": n} for b, f, n in s.backend_rules],
        "backends_mixed": backends_mixed(s),
        "docker_chains": [{"family": f, "backend": b} for f, b in s.docker_backends],
        "host": asdict(s.host) if s.host is not None else None,
        "warnings": list(s.warnings),
    }
    return json.dumps(doc, indent=2, default=str) + "\n"


def _port_json(p) -> dict:
    b = p.binding
    return {
        "container": b.container,
        "container_id": b.container_id,
        "network": b.network,
        "bridge": b.bridge,
        "family": b.family,
        "protocol": b.protocol,
        "host_ip": b.host_ip,
        "host_port": b.host_port,
        "container_ip": b.container_ip,
        "container_port": b.container_port,
        "design": b.design,
        "state": p.verdict.state,
        "code": p.verdict.code,
        "reason": p.verdict.reason,
        "rule": p.verdict.rule,
        "owner": p.verdict.owner,
        "exposure": p.verdict.exposure,
        "allowed_sources": p.verdict.allowed,
        "classes": [_class_json(c) for c in p.verdict.classes],
        "rules": [_evidence_json(e) for e in p.rules],
    }


def _class_json(c) -> dict:
    """One class of remote sources: which addresses (`sources` as `check` shows it, `prefixes`
    exactly, their count), and what a new connection from them gets."""
    prefixes = c.sources.cidrs(MAX_PREFIXES + 1)
    return {
        "sources": c.shown,
        "prefixes": prefixes[:MAX_PREFIXES],
        "prefixes_complete": len(prefixes) <= MAX_PREFIXES,
        "addresses": c.sources.size(),
        "state": c.state,
        "code": c.code,
        "reason": c.reason,
        "rule": c.rule,
        "owner": c.owner,
    }


def _evidence_json(e) -> dict:
    x = e.expected
    return {"kind": x.kind, "family": x.family, "rule": x.line, "present": e.present}
