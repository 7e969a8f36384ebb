"""A saved post-mortem as Readings: the files given to `check --docker-state/--iptables-save/
--ip6tables-save/--nft-ruleset/--ipset-save`, and the saved-state file `check
--save-docker-state` writes."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace

from exporter.config import ConfigError
from exporter.docker.raw import SavedStateError, dump_state, load_state
from exporter.netstate import from_doc, to_doc
from exporter.readings import Readings
from exporter.rules.family import FamilyRules
from exporter.rules.ipset import IpSet, parse_ipset_save
from exporter.rules.iptsave import INCOMPATIBLE, parse_save, save_backend
from exporter.rules.nftjson import NftJsonError
from exporter.sources.nft import from_ruleset_json, with_native


def read_saved(
    state: str | None,
    v4: str | None,
    v6: str | None,
    nft: str | None,
    ipsets: str | None = None,
) -> Readings:
    """Readings from a saved Docker state, saved rules and saved ipsets, as they were when
    saved. Raises ConfigError naming the file and what is wrong with it."""
    if state is None:
        raise ConfigError("--docker-state is required to analyse saved rules")
    text = _read(state, "--docker-state")
    try:
        raw, addrs = load_state(text)
    except SavedStateError as exc:
        raise ConfigError(
            f"--docker-state {state}: not a saved Docker state "
            f"(make one with `check --save-docker-state FILE`): {exc}"
        ) from None
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
    if ipsets is not None:
        sets, set_warnings = _ipsets_from_file(ipsets)
        rules = {f: replace(fr, ipsets=sets) for f, fr in rules.items()}
        warnings += set_warnings
    elif names := _foreign_sets(rules):
        warnings += (
            f"rules match ipsets ({', '.join(names)}) but no --ipset-save file was given "
            "(`ipset save > ipsets.txt` on the host): those matches are unknown",
        )
    net = from_doc(json.loads(text).get("net"))  # load_state parsed it: it is a JSON object
    return Readings(os.path.getmtime(state), raw, "", rules, addrs, warnings=warnings, net=net)


def save_state(path: str, r: Readings) -> None:
    """Write the Docker state of live Readings where `check --docker-state` can replay it."""
    if r.docker is None:
        raise ConfigError(f"--save-docker-state {path}: Docker could not be read: {r.docker_error}")
    try:
        with open(path, "w") as f:
            extra = {"net": to_doc(r.net)} if r.net is not None else None
            f.write(dump_state(r.docker, r.host_addrs, time.time(), extra))
    except OSError as exc:
        raise ConfigError(f"--save-docker-state {path}: {exc.strerror}") from None


def _read(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror}") from None


def _rules_from_file(path: str | None, family: str, what: str) -> FamilyRules:
    if path is None:
        return FamilyRules(family, (), f"no {what} file given")
    text = _read(path, f"--{what}")
    # Empty output (no tables) and a lone "is incompatible" line are real *-save outputs.
    if text.strip() and INCOMPATIBLE not in text and ("*" not in text or "COMMIT" not in text):
        raise ConfigError(f"--{what} {path}: does not look like {what} output")
    return FamilyRules(family, (parse_save(text, family, save_backend(text)),))


def _with_nft_file(rules: dict[str, FamilyRules], path: str) -> dict[str, FamilyRules]:
    read_by_iptables = frozenset(f for f, fr in rules.items() if fr.rulesets)
    try:
        native = from_ruleset_json(_read(path, "--nft-ruleset"), read_by_iptables)
    except NftJsonError as exc:
        raise ConfigError(
            f"--nft-ruleset {path}: not `nft -j list ruleset` output: {exc}"
        ) from None
    return {f: with_native(fr, native) for f, fr in rules.items()}


def _ipsets_from_file(path: str) -> tuple[tuple[IpSet, ...], tuple[str, ...]]:
    """The sets of an `ipset save` output, and warnings for the lines that could not be read.
    A file of which no line is understood is not `ipset save` output: an error."""
    text = _read(path, "--ipset-save")
    sets, errors = parse_ipset_save(text)
    if errors and not sets:
        what = "does not look like `ipset save` output"
        raise ConfigError(f"--ipset-save {path}: {what}: {errors[0]}")
    return sets, tuple(f"--ipset-save {path}: {e}" for e in errors[:5])


def _foreign_sets(rules: dict[str, FamilyRules]) -> tuple[str, ...]:
    """The ipsets the saved rules match, other than Docker 28.0's own (known from Docker's
    networks) and nftables named sets (in the --nft-ruleset file)."""
    names = {
        c.values[0]
        for fr in rules.values()
        for rs in fr.rulesets
        for table in rs.tables.values()
        for chain in table.chains.values()
        for rule in chain.rules
        for c in rule.conds
        if c.option == "--match-set" and c.values
    }
    return tuple(sorted(n for n in names if not n.startswith(("docker-", "nft:"))))
