"""`check` leads with what is broken (issue 15 item 4): the summary line, the ports that are not
ok first, reasons fitted to the terminal, the full text kept in --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest
from support.corefix import d2010_doc
from support.servicefix import fixture_snapshot, incident_rules

from exporter.cli.table import render_table
from exporter.serve.snapshot import SourceStatus
from exporter.summary import summary_line

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(REPO, "tests", "fixtures")


def port_rows(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("STATE "))
    end = next(i for i, ln in enumerate(lines) if ln.startswith("Jumps: "))
    return [ln for ln in lines[start + 1 : end] if ln]


def test_summary_first_and_broken_ports_first():
    snap = fixture_snapshot(incident_rules())
    assert snap.ports[0].verdict.state == "ok"  # the snapshot's own order
    text = render_table(snap)
    assert text.splitlines()[0] == "1 of 9 published ports not ok (1 misrouted); 1 stale rule"
    rows = port_rows(text)
    assert rows[0].startswith("misrouted  web ") and len(rows) == 9
    assert all(r.startswith("ok ") for r in rows[1:])


@pytest.mark.parametrize(
    ("change", "want"),
    [
        ("healthy", "All 9 published ports ok"),
        ("docker down", "Docker could not be read: no published port was checked"),
        ("no ports", "No published ports"),
        ("jump missing", "All 9 published ports ok; 1 of Docker's jumps missing"),
    ],
)
def test_summary_line(change, want):
    snap = fixture_snapshot()
    if change == "docker down":
        snap = fixture_snapshot(docker_up=False)
    elif change == "no ports":
        snap = replace(snap, ports=())
    elif change == "jump missing":
        snap = replace(snap, jumps=(replace(snap.jumps[0], present=False), *snap.jumps[1:]))
    assert summary_line(snap) == want


def test_two_states_are_counted_worst_first():
    snap = fixture_snapshot(incident_rules())
    ports = list(snap.ports)
    ports[1] = replace(ports[1], verdict=replace(ports[1].verdict, state="unknown"))
    line = summary_line(replace(snap, ports=tuple(ports)))
    assert line.startswith("2 of 9 published ports not ok (1 misrouted, 1 unknown)")


@pytest.mark.parametrize("width", [50, 80, 100, 120, 160])
def test_reasons_fit_the_width(width):
    snap = fixture_snapshot(incident_rules())
    [bad] = [p for p in snap.ports if p.verdict.state != "ok"]
    assert len(bad.verdict.reason) > 160  # the case the issue saw: 295 characters
    rows = port_rows(render_table(snap, width))
    # the columns themselves (69 characters here) are never cut; every reason line fits
    too_long = [r for r in rows if len(r) > width and (r.startswith(" ") or width >= 80)]
    assert not too_long
    # the broken port's reason is whole, only wrapped; an ok port keeps one line
    states = ("misrouted ", "ok ")
    first_ok = next(i for i, r in enumerate(rows) if r.startswith("ok "))
    wrapped = " ".join(r.strip() for r in rows[:first_ok])
    assert " ".join(bad.verdict.reason.split()) in " ".join(wrapped.split())
    ok_rows = [r for r in rows[first_ok:] if r.startswith(states)]
    assert len(ok_rows) == 8
    assert len(rows[first_ok:]) == (8 if width >= 110 else 16)  # beside, or one line under


def test_no_width_no_fitting():
    text = render_table(fixture_snapshot(incident_rules()), None)
    [row] = [r for r in port_rows(text) if r.startswith("misrouted")]
    assert row.endswith("instead of 172.17.0.2:80") and len(row) > 200


def _check(*args, columns=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DOCKER_NAT_EXPORTER_") and k != "COLUMNS"}  # fmt: skip
    if columns:
        env["COLUMNS"] = str(columns)
    return subprocess.run([sys.executable, "-m", "exporter", "check", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_check_fits_columns_and_json_keeps_the_full_text(tmp_path):
    rules, state = tmp_path / "v4.txt", tmp_path / "state.json"
    rules.write_text(incident_rules())
    state.write_text(json.dumps(d2010_doc()))
    args = ("--docker-state", str(state), "--iptables-save", str(rules),
            "--ip6tables-save", os.path.join(FIX, "d2010_ip6tables.txt"))  # fmt: skip
    r = _check(*args, columns=90)
    assert r.returncode == 1, r.stderr
    assert r.stdout.startswith("1 of 9 published ports not ok")
    assert all(len(ln) <= 90 for ln in port_rows(r.stdout))
    doc = json.loads(_check("--json", *args).stdout)
    [bad] = [p for p in doc["ports"] if p["state"] != "ok"]
    assert "`-A DOCKER ! -i docker0" in bad["reason"] and bad["reason"].endswith("172.17.0.2:80")


def test_docker_down_summary_leads_and_the_error_goes_to_stderr():
    snap = fixture_snapshot(docker_up=False)
    snap = replace(snap, sources=(SourceStatus("docker", False, "socket gone"), *snap.sources[1:]))
    assert render_table(snap).splitlines()[0].startswith("Docker could not be read")
    assert "socket gone" not in render_table(snap)
