"""The collector against fixture snapshots: values, disappearing series, golden text, promtool."""

from __future__ import annotations

import platform
import shutil
import subprocess
from dataclasses import replace

from prometheus_client import CollectorRegistry, generate_latest
from support.servicefix import FIX, StaticHolder, fixture_snapshot, incident_rules
from support.util import require_or_skip

from exporter.serve.collector import SnapshotCollector

WEB = {
    "container": "web",
    "network": "bridge",
    "family": "ipv4",
    "protocol": "tcp",
    "host_ip": "0.0.0.0",
    "host_port": "18080",
    "container_port": "80",
}


def registry_for(snapshot, max_bindings=5000, errors=None):
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(StaticHolder(snapshot, errors), max_bindings))
    return reg


def state_of(reg, labels) -> str:
    states = [
        s
        for s in ("ok", "proxied", "misrouted", "dropped", "unreachable", "unknown")
        if reg.get_sample_value("docker_nat_port_state", {**labels, "state": s}) == 1
    ]
    assert len(states) == 1, states
    return states[0]


def test_healthy_fixture_all_ok():
    reg = registry_for(fixture_snapshot())
    assert state_of(reg, WEB) == "ok"
    assert reg.get_sample_value("docker_nat_rule_present", {**WEB, "kind": "dnat"}) == 1
    assert reg.get_sample_value("docker_nat_source_up", {"source": "docker"}) == 1
    assert reg.get_sample_value("docker_nat_bindings") == 9
    labels = {"family": "ipv4", "kind": "dnat"}
    assert reg.get_sample_value("docker_nat_rules_missing", labels) == 0
    assert reg.get_sample_value("docker_nat_rules_expected", labels) == 5


def test_incident_is_misrouted_and_stale_counted():
    reg = registry_for(fixture_snapshot(incident_rules()))
    assert state_of(reg, WEB) == "misrouted"
    stale = {"family": "ipv4", "table": "nat", "chain": "DOCKER"}
    assert reg.get_sample_value("docker_nat_stale_rules", stale) == 1
    text = generate_latest(reg).decode()
    info = [
        ln
        for ln in text.splitlines()
        if ln.startswith("docker_nat_port_info{") and 'host_port="18080"' in ln and "ipv4" in ln
    ]
    assert len(info) == 1 and 'reason="shadowed_by_dnat"' in info[0]


def port_info_lines(snap) -> list[str]:
    text = generate_latest(registry_for(snap)).decode()
    return [ln for ln in text.splitlines() if ln.startswith("docker_nat_port_info{")]


def test_port_info_series_do_not_change_when_rules_move():
    """Issue 15 item 6: the reason label is a code, so a rule inserted ahead of the deciding one
    (its position moves from #1 to #2) changes the free text but not one series."""
    moved = incident_rules().replace(
        "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 18080",
        "-A DOCKER -p tcp -m tcp --dport 9 -j DNAT --to-destination 172.17.0.50:9\n"
        "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 18080",
        1,
    )
    before, after = fixture_snapshot(incident_rules()), fixture_snapshot(moved)
    reasons = [
        {p.verdict.reason for p in s.ports if p.binding.host_port == 18080} for s in (before, after)
    ]
    assert reasons[0] != reasons[1]  # the text names the rule's position
    assert port_info_lines(before) == port_info_lines(after)
    assert not any("#" in ln for ln in port_info_lines(after))


def test_docker_down_exports_no_port_series():
    reg = registry_for(fixture_snapshot(docker_up=False))
    assert reg.get_sample_value("docker_nat_source_up", {"source": "docker"}) == 0
    assert reg.get_sample_value("docker_nat_source_up", {"source": "iptables"}) == 1
    text = generate_latest(reg).decode()
    assert "docker_nat_port_state{" not in text
    assert "docker_nat_last_refresh_timestamp_seconds" in text


def test_container_gone_disappears():
    snap = fixture_snapshot()
    without_web = replace(snap, ports=tuple(p for p in snap.ports if p.binding.container != "web"))
    reg = registry_for(without_web)
    assert reg.get_sample_value("docker_nat_port_state", {**WEB, "state": "ok"}) is None


def test_max_bindings_keeps_broken_ports_and_counts_omitted():
    reg = registry_for(fixture_snapshot(incident_rules()), max_bindings=1)
    assert reg.get_sample_value("docker_nat_bindings_omitted") == 8
    assert state_of(reg, WEB) == "misrouted"


def test_no_snapshot_yet_only_self_metrics():
    text = generate_latest(registry_for(None)).decode()
    assert "docker_nat_exporter_build_info" in text
    assert "docker_nat_source_up" not in text


def golden_text() -> str:
    snap = replace(fixture_snapshot(incident_rules()), duration_seconds=0.25)
    text = generate_latest(registry_for(snap)).decode()
    return text.replace(f'python_version="{platform.python_version()}"', 'python_version="X"')


def test_golden_exposition():
    """tests/fixtures/metrics.golden.txt is the contract in full; regenerate deliberately with
    `python tests/unit/test_collector.py` and review the diff."""
    assert golden_text() == (FIX / "metrics.golden.txt").read_text()


def test_promtool_check_metrics_is_silent():
    promtool = shutil.which("promtool")
    require_or_skip(promtool is not None, "promtool (Debian package prometheus) not installed")
    p = subprocess.run(
        [promtool, "check", "metrics"], input=golden_text(), capture_output=True, text=True
    )
    assert p.returncode == 0 and p.stdout.strip() == "" and p.stderr.strip() == "", p


if __name__ == "__main__":
    (FIX / "metrics.golden.txt").write_text(golden_text())
