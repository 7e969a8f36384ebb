"""Host facts against a real dockerd: start time follows restarts; mixed backends are detected."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from support.lab import Lab

pytestmark = pytest.mark.lab

LEGACY_RULES = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 2222 -j ACCEPT
COMMIT
"""


def check_json(lab: Lab) -> dict:
    p = lab.nsexec(
        [sys.executable, "-m", "exporter", "check", "--json", "--docker.host", lab.docker_host],
        check=False,
        timeout=120,
    )
    assert p.returncode in (0, 1, 2), p.stderr
    return json.loads(p.stdout)


def test_daemon_restart_moves_start_time_by_the_right_amount(lab: Lab) -> None:
    before = check_json(lab)["host"]
    assert before["daemon_start_source"] == "proc", before
    first = before["daemon_start_time_seconds"]
    assert first is not None and first <= time.time()
    time.sleep(1.5)  # start times have clock-tick resolution: make the move unmistakable
    restarted_after = time.time()
    lab.restart_daemon()
    restarted_before = time.time()
    after = check_json(lab)["host"]["daemon_start_time_seconds"]
    # dockerd started again between our two clock readings (1 s for /proc's tick rounding)
    assert restarted_after - 1 <= after <= restarted_before + 1, (first, after)
    assert after - first >= 1.5


def test_rules_in_both_backends_are_reported_mixed(lab: Lab) -> None:
    doc = check_json(lab)
    assert doc["backends_mixed"] is False
    lab.iptables_restore(LEGACY_RULES, family=4, backend="legacy")
    try:
        doc = check_json(lab)
        assert doc["backends_mixed"] is True
        counts = {(b["backend"], b["family"]): b["rules"] for b in doc["backend_rules"]}
        assert counts[("legacy", "ipv4")] == 1 and counts[("nf_tables", "ipv4")] > 0
        table = lab.nsexec(
            [sys.executable, "-m", "exporter", "check", "--docker.host", lab.docker_host],
            check=False,
        ).stdout
        assert "WARNING: both the nf_tables and the legacy backend hold rules" in table
    finally:
        subprocess.run(
            ["nsenter", f"--net=/run/netns/{lab.host_ns}", "iptables-legacy", "-F", "INPUT"],
            check=False,
        )
