"""Least privilege and read-only, proven on a real Docker host (tests/support/lab.py).

For the EXPORTER ONLY (a private mount namespace, tests/faultkit.Overlay), every iptables,
ip6tables, nft, xtables, arptables and ebtables tool, `*-restore` included, is a wrapper that
logs each call and refuses anything that could change rules. The real scenarios then run: a
healthy `check`, the incident, the long-running service with Docker events and nf_tables changes
reacting to changes, and the `iptables -C` self-test. The test asserts that the wrappers were
used (the log is not empty), that nothing was refused, and that the only rule-changing calls
(the self-test's -N/-A/-C) ran in a network namespace other than the Docker host's.
"""

from __future__ import annotations

import json
import os
import sys

import pytest
from support.exporterproc import select, states
from support.faultkit import ReadOnlyGuard, guard_decision, record, wrapped_exporter
from support.lab import Lab

CHECK = [sys.executable, "-m", "exporter", "check", "--json"]


@pytest.fixture
def guard(lab: Lab):
    g = ReadOnlyGuard(os.stat(f"/run/netns/{lab.host_ns}").st_ino)
    yield g
    g.close()


def guarded_check(lab: Lab, guard: ReadOnlyGuard, *extra: str) -> dict:
    p = lab.nsexec([*guard.prefix, *CHECK, "--docker.host", lab.docker_host, *extra],
                   check=False, timeout=90)  # fmt: skip
    assert p.returncode in (0, 1, 2), p.stderr
    assert "Traceback" not in p.stderr and "read-only guard: refused" not in p.stderr, p.stderr
    return json.loads(p.stdout)


def port_state(doc: dict, container: str) -> str:
    [p] = [p for p in doc["ports"] if p["container"] == container and p["family"] == "ipv4"]
    return p["state"]


@pytest.mark.parametrize(
    ("name", "args", "refused"),
    [
        ("iptables-nft-save", [], False),
        ("iptables-legacy-save", [], False),
        ("iptables-legacy-save", ["-t", "nat"], True),
        ("iptables", ["--version"], False),
        ("iptables", ["-t", "nat", "-A", "DOCKER", "-j", "RETURN"], True),
        ("iptables", ["-tnat", "-nL"], False),
        ("iptables", ["-nF"], True),
        ("ip6tables", ["--app", "X"], True),
        ("iptables", ["-C", "t", "-j", "ACCEPT"], True),
        ("iptables-nft-restore", ["--noflush"], True),
        ("xtables-nft-multi", ["iptables-restore"], True),
        ("nft", ["-j", "list", "chains"], False),
        ("nft", ["monitor", "ruleset"], False),
        ("iptables-nft", ["-t", "nat", "-S", "DOCKER"], False),
        ("nft", ["--version"], False),
        ("nft", ["flush", "ruleset"], True),
        ("nft", ["-f", "/tmp/x"], True),
        ("nft", ["add", "table", "ip", "x"], True),
        ("nft", ["-a", "delete", "rule", "ip", "filter", "INPUT", "handle", "3"], True),
    ],
)
def test_guard_tells_reads_from_writes(name: str, args: list[str], refused: bool) -> None:
    assert bool(guard_decision(args, name)) == refused


@pytest.mark.lab
def test_exporter_never_changes_rules(scratch_lab: Lab, guard: ReadOnlyGuard) -> None:
    lab = scratch_lab
    lab.run_web("ro", 18301)
    try:
        # 1. a healthy check
        assert port_state(guarded_check(lab, guard), "ro") == "ok"
        # 2. the incident: a stale DNAT ahead of Docker's (inserted by the test, not the exporter)
        lab.iptables("-t", "nat", "-I", "DOCKER", "1", "!", "-i", "docker0", "-p", "tcp",
                     "--dport", "18301", "-j", "DNAT", "--to-destination", "172.17.255.254:80")  # fmt: skip
        assert port_state(guarded_check(lab, guard), "ro") == "misrouted"
        lab.iptables("-t", "nat", "-D", "DOCKER", "1")
        # 3. the self-test, whose iptables -N/-A/-C must run in a throwaway namespace
        doc = guarded_check(lab, guard, "--iptables.self-test", "true")
        assert port_state(doc, "ro") == "ok"
        # 4. the service: Docker events and nf_tables change notifications drive refreshes; the
        # chain a change hit is read alone (iptables-nft -S), all through the wrappers
        exp = wrapped_exporter(lab.host_ns, guard.prefix, "--docker.host", lab.docker_host,
                               "--refresh.interval", "30s", "--iptables.self-test", "true",
                               "--log.level", "debug")  # fmt: skip
        with exp:
            exp.wait_for(lambda s: states(s.body).get(("ro", "ipv4", "0.0.0.0", "18301")) == "ok",
                         30, what="ro ok")  # fmt: skip
            lab.run_web("ro2", 18302, wait=False)  # a Docker event
            exp.wait_for(lambda s: states(s.body).get(("ro2", "ipv4", "0.0.0.0", "18302")) == "ok",
                         30, what="ro2 ok")  # fmt: skip
            number = lab.iptables("-t", "nat", "-S", "DOCKER").stdout.splitlines()
            dnat = [ln for ln in number if "--dport 18302" in ln]
            lab.iptables("-t", "nat", "-D", *dnat[0].split()[1:])  # an nft ruleset change
            _, s = exp.wait_for(
                lambda s: states(s.body).get(("ro2", "ipv4", "0.0.0.0", "18302")) == "proxied",
                30, what="ro2 proxied")  # fmt: skip
            assert select(s.body, "docker_nat_iptables_check_command_broken")
            log = exp.stderr()
        assert "refresh requested: docker container start" in log
        assert "refresh requested: nftables rule changed: ip nat DOCKER" in log
    finally:
        lab.docker("rm", "-f", "ro", "ro2", check=False)

    calls = guard.calls()
    host = [c for c in calls if c["decision"] != "allowed-elsewhere"]
    elsewhere = [c for c in calls if c["decision"] == "allowed-elsewhere"]
    refused = [c for c in calls if c["decision"] == "refused"]
    assert refused == [], refused
    assert calls, "the wrappers were never called: the guard proves nothing"
    names = {c["name"] for c in host}
    # nft runs only where a native table exists (tables are listed over netlink); the lab has none
    assert {"iptables-nft-save", "ip6tables-nft-save", "iptables-nft"} <= names, names
    assert any(c["name"] == "iptables-nft" and c["args"][-2:] == ["-S", "DOCKER"] for c in host)
    assert {tuple(c["args"][:1]) for c in elsewhere} >= {("-N",), ("-A",), ("-C",)}, elsewhere
    summary = {}
    for c in calls:
        key = f"{c['name']} {' '.join(c['args'][:2])}".strip()
        summary[key] = summary.get(key, 0) + 1
    record("privilege", "every rule tool replaced, for the exporter only, by a logging wrapper "
           "refusing writes; scenarios: healthy check, incident, self-test, service with events "
           "and nf_tables change notifications (real dockerd)",
           f"{len(calls)} calls, 0 refused; rule-changing calls only in the self-test's own "
           f"namespace ({len(elsewhere)}): {sorted({c['args'][0] for c in elsewhere})}",
           calls=len(calls), **{k.replace(" ", "_"): v for k, v in sorted(summary.items())})  # fmt: skip
