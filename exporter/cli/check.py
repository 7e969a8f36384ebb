"""`docker-nat-exporter check`: one snapshot, live or from saved files, printed."""

from __future__ import annotations

import json
import os
import sys
import time

from exporter.cli.report import exit_code, render_table, to_json
from exporter.config import ConfigError
from exporter.docker.decode import DaemonHints
from exporter.rules.family import FamilyRules
from exporter.rules.iptsave import INCOMPATIBLE, parse_save, save_backend
from exporter.serve.refresh import RefreshOptions, take_snapshot
from exporter.serve.snapshot import Snapshot, build
from exporter.sources.docker_api import DockerRaw


def run_check(ns, opts: RefreshOptions) -> int:
    if ns.docker_state or ns.iptables_save or ns.ip6tables_save or ns.nft_ruleset:
        files = (ns.iptables_save, ns.ip6tables_save, ns.nft_ruleset)
        snap = offline_snapshot(ns.docker_state, *files, opts)
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
            cmdline=tuple(map(str, h["cmdline"])) if h.get("cmdline") is not None else None,
            daemon_json=h.get("daemon_json"),
            proxy_argvs=tuple(tuple(map(str, a)) for a in h["proxy_argvs"])
            if h.get("proxy_argvs") is not None
            else None,
        )
        raw = DockerRaw(doc["containers"], doc["networks"], doc["info"], doc["version"], hints)
        addrs = doc.get("host_addresses")
        return raw, tuple(tuple(a) for a in addrs) if addrs is not None else None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, KeyError):
            exc = f"no {exc} field"
        raise ConfigError(
            f"--docker-state {path}: not a saved Docker state "
            f"(make one with `check --save-docker-state FILE`): {exc}"
        ) from None


def _rules_from_file(path: str | None, family: str, what: str) -> FamilyRules:
    if path is None:
        return FamilyRules(family, (), f"no {what} file given")
    text = _read(path, f"--{what}")
    # Empty output (no tables) and a lone "is incompatible" line are real *-save outputs.
    if text.strip() and INCOMPATIBLE not in text and ("*" not in text or "COMMIT" not in text):
        raise ConfigError(f"--{what} {path}: does not look like {what} output")
    return FamilyRules(family, (parse_save(text, family, save_backend(text)),))


def offline_snapshot(state, v4, v6, nft, opts) -> Snapshot:
    if state is None:
        raise ConfigError("--docker-state is required to analyse saved rules")
    raw, addrs = load_docker_state(state)
    rules = {
        "ipv4": _rules_from_file(v4, "ipv4", "iptables-save"),
        "ipv6": _rules_from_file(v6, "ipv6", "ip6tables-save"),
    }
    if nft is not None:  # a native-nftables host may have no iptables rules at all
        rules = {f: fr if fr.rulesets else FamilyRules(f, ()) for f, fr in rules.items()}
        rules = _with_nft_file(rules, nft)
    paths = {"ipv4": f"--iptables-save {v4}", "ipv6": f"--ip6tables-save {v6}"}
    warnings = tuple(
        f"{paths[f]}: {err}" for f, fr in rules.items() for rs in fr.rulesets for err in rs.errors
    )
    clients = dict(opts.clients) or None
    return build(os.path.getmtime(state), raw, "", rules, addrs, warnings=warnings, clients=clients)


def _with_nft_file(rules: dict, path: str) -> dict:
    from exporter.rules.nftjson import NftJsonError
    from exporter.sources.nft import from_ruleset_json, with_native

    read_by_iptables = frozenset(f for f, fr in rules.items() if fr.rulesets)
    try:
        native = from_ruleset_json(_read(path, "--nft-ruleset"), read_by_iptables)
    except NftJsonError as exc:
        raise ConfigError(
            f"--nft-ruleset {path}: not `nft -j list ruleset` output: {exc}"
        ) from None
    return {f: with_native(fr, native) for f, fr in rules.items()}


def _save_state(path: str, opts: RefreshOptions) -> None:
    from exporter.sources.docker_api import read_docker
    from exporter.sources.hostnet import host_addresses

    raw = read_docker(opts.docker_host, opts.docker_timeout, opts.host_root)
    doc = json.loads(raw.to_json())
    doc["host_addresses"] = host_addresses()
    doc["saved_at"] = time.time()
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
