"""`check` output: JSON for machines and the exit code.

The table is exporter.cli.table; the summary, fact and diagnostic lines are exporter.summary."""

from __future__ import annotations

import json
from dataclasses import asdict

from exporter.serve.snapshot import Snapshot
from exporter.summary import backends_mixed

EXIT_OK, EXIT_NOT_OK, EXIT_UNREADABLE = 0, 1, 2
MAX_PREFIXES = 256  # a class's exact prefixes in --json: at most these (the rest is counted)


def exit_code(s: Snapshot) -> int:
    if not s.readable:
        return EXIT_UNREADABLE
    broken = any(p.verdict.state != "ok" for p in s.ports) or any(not j.present for j in s.jumps)
    return EXIT_NOT_OK if broken else EXIT_OK


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
