"""`check` output: a table for humans, JSON for machines, and the exit code."""

from __future__ import annotations

import json
import time
from dataclasses import asdict

from exporter.serve.snapshot import Snapshot, backends_mixed

EXIT_OK, EXIT_NOT_OK, EXIT_UNREADABLE = 0, 1, 2


def exit_code(s: Snapshot) -> int:
    if not s.readable:
        return EXIT_UNREADABLE
    broken = any(p.verdict.state != "ok" for p in s.ports) or any(not j.present for j in s.jumps)
    return EXIT_NOT_OK if broken else EXIT_OK


def header_lines(s: Snapshot) -> list[str]:
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
    for src in s.sources:
        if not src.up:
            lines.append(f"ERROR: cannot read {src.name}: {src.error}")
    lines += [f"warning: {w}" for w in s.warnings]
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
    lines += [f"note: {e}" for e in (*ipt.errors, *h.errors)]
    return lines


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def render_table(s: Snapshot) -> str:
    out = header_lines(s)
    if s.daemon is None:
        return "\n".join(out) + "\n"
    rows = [("STATE", "CONTAINER", "NETWORK", "PUBLISHED", "TARGET", "REASON")]
    for p in s.ports:
        b = p.binding
        cip = f"[{b.container_ip}]" if ":" in b.container_ip else b.container_ip or "-"
        target = f"{cip}:{b.container_port}"
        published = f"{b.host_ip_display}:{b.host_port}/{b.protocol}"
        rows.append((p.verdict.state, b.container, b.network, published, target, p.verdict.reason))
    out.append("")
    if len(rows) == 1:
        out.append("No published ports.")
    else:
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[5]
                for r in rows]  # fmt: skip
    missing = [j for j in s.jumps if not j.present]
    out.append("")
    out.append(f"Jumps: {len(s.jumps) - len(missing)}/{len(s.jumps)} present")
    out += [f"  MISSING {j.expected.family}: {j.expected.line}" for j in missing]
    out += [
        f"  missing {e.expected.family}: {e.expected.line}" for e in s.bridge_rules if not e.present
    ]
    out.append(f"Stale rules: {len(s.stale)}")
    out += [f"  {r.family} {r.backend} {r.ref}: {r.text}" for r in s.stale]
    return "\n".join(out) + "\n"


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
        "rules": [_evidence_json(e) for e in p.rules],
    }


def _evidence_json(e) -> dict:
    x = e.expected
    return {"kind": x.kind, "family": x.family, "rule": x.line, "present": e.present}
