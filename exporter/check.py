"""`docker-nat-exporter check`: one snapshot, live or from saved files, printed."""

from __future__ import annotations

import json
import os
import sys
import time

from .analysis import FamilyRules
from .config import ConfigError
from .docker_decode import DaemonHints
from .iptsave import parse_save
from .refresh import RefreshOptions, take_snapshot
from .report import exit_code, render_table, to_json
from .snapshot import Snapshot, build
from .sources.docker_api import DockerRaw


def run_check(ns, opts: RefreshOptions) -> int:
    if ns.docker_state or ns.iptables_save or ns.ip6tables_save:
        snap = offline_snapshot(ns.docker_state, ns.iptables_save, ns.ip6tables_save, opts)
    else:
        snap = take_snapshot(opts)
        if ns.save_docker_state:
            _save_state(ns.save_docker_state, opts)
    sys.stdout.write(to_json(snap) if ns.json else render_table(snap))
    return exit_code(snap)


def _read(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror}") from None


def load_docker_state(path: str) -> tuple[DockerRaw, tuple | None]:
    try:
        doc = json.loads(_read(path, "--docker-state"))
        h = doc.get("hints") or {}
        hints = DaemonHints(
            pid=h.get("pid"),
            cmdline=tuple(h["cmdline"]) if h.get("cmdline") is not None else None,
            daemon_json=h.get("daemon_json"),
            proxy_argvs=tuple(tuple(a) for a in h["proxy_argvs"])
            if h.get("proxy_argvs") is not None
            else None,
        )
        raw = DockerRaw(doc["containers"], doc["networks"], doc["info"], doc["version"], hints)
        addrs = doc.get("host_addresses")
        return raw, tuple(tuple(a) for a in addrs) if addrs is not None else None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"--docker-state {path}: not a saved Docker state "
            f"(make one with `check --save-docker-state FILE`): {exc}"
        ) from None


def _rules_from_file(path: str | None, family: str, what: str) -> FamilyRules:
    if path is None:
        return FamilyRules(family, (), f"no {what} file given")
    text = _read(path, f"--{what}")
    if "*" not in text or "COMMIT" not in text:
        raise ConfigError(f"--{what} {path}: does not look like {what} output")
    backend = "legacy" if "(legacy)" in text[:300] else "nf_tables"
    return FamilyRules(family, (parse_save(text, family, backend),))


def offline_snapshot(state: str | None, v4: str | None, v6: str | None, opts) -> Snapshot:
    if state is None:
        raise ConfigError("--docker-state is required to analyse saved rules")
    raw, addrs = load_docker_state(state)
    rules = {
        "ipv4": _rules_from_file(v4, "ipv4", "iptables-save"),
        "ipv6": _rules_from_file(v6, "ipv6", "ip6tables-save"),
    }
    return build(os.path.getmtime(state), raw, "", rules, addrs, clients=dict(opts.clients) or None)


def _save_state(path: str, opts: RefreshOptions) -> None:
    from .sources.docker_api import read_docker
    from .sources.hostnet import host_addresses

    raw = read_docker(opts.docker_host, opts.docker_timeout, opts.host_root)
    doc = json.loads(raw.to_json())
    doc["host_addresses"] = host_addresses()
    doc["saved_at"] = time.time()
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
