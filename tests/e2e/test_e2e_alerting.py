"""End to end: the incident, seen by a real Prometheus, routed by a real Alertmanager.

The exporter runs in the lab's Docker host namespace against its real dockerd and listens on the
lab host address; Prometheus, Alertmanager and the test's webhook receiver run in the lab's
client namespace (tests/support/e2estack.py). Prometheus loads the shipped alerts/docker-nat.rules.yml
with one transformation made here, never in the shipped file: every `for:` of a minute or more
becomes 5s, so the alerts fire within seconds (expressions, labels and annotations are unchanged).
Alertmanager runs alerts/alertmanager.example.yml with its webhook URLs pointed at the receiver
(paths kept, so routing pager/chat is checked) and 1s/1s/1h group_wait/group_interval/repeat.

The incident: a stale DNAT for the published port, to an address no container has, inserted ahead
of Docker's own rule. The broken-port alert must reach the pager with the right labels and
text, the resolved notification must follow the repair, and every dashboard query must show data
for the incident.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from support.e2estack import (
    Alertmanager,
    LabExporter,
    Notification,
    Prometheus,
    Webhook,
    shorten_for,
    webhook_config,
)
from support.lab import Lab
from support.util import require_or_skip

from exporter.project import doc_url

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "alerts" / "docker-nat.rules.yml"
AM_EXAMPLE = ROOT / "alerts" / "alertmanager.example.yml"
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
RUNBOOK = doc_url("runbook.md")
JOB = "docker-nat"  # the job the shipped rules select (job="docker-nat")
WEB, PORT = "e2eweb", 18080
STALE_TARGET = "172.17.0.250:80"  # on docker0's subnet, held by no container
STALE_RULE = ("!", "-i", "docker0", "-p", "tcp", "-m", "tcp", "--dport", str(PORT),
              "-j", "DNAT", "--to-destination", STALE_TARGET)  # fmt: skip
BROKEN = "DockerNatPublishedPortBroken"
STALE = "DockerNatStaleRules"
# Alerts this scenario must raise; any other alert reaching the receiver is a false alarm.
EXPECTED_ALERTS = {BROKEN, STALE}
WAIT = 60  # seconds allowed for a notification (it normally takes well under 15 s)

# Grafana's variables, as a dashboard of this job and host would fill them in. $__rate_interval
# is Grafana's max(4 x scrape interval, $__interval + scrape interval), rounded up here.
GRAFANA_VALUES = {"job": JOB, "__rate_interval": "10s", "__interval": "5s", "__range": "1m",
                  "__range_s": "60", "__range_ms": "60000", "__interval_ms": "5000"}  # fmt: skip
_GRAFANA_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"label_values\((.+),\s*(\w+)\)")

# Dashboard queries allowed to return nothing during the incident, and why. Keep it minimal.
NO_DATA_EXPECTED = {
    # Every source is up in the lab, so `== 0` filters everything out (the panel shows "none").
    'count by (source) (docker_nat_source_up{job=~"$job", instance=~"$instance"} == 0)':
        "all sources are up",
    # The exporter exports it only where Docker's API reports a firewalld reload; no firewalld.
    'max by (instance) (docker_nat_firewalld_reload_timestamp_seconds{job=~"$job", '
    'instance=~"$instance"}) * 1000': "no firewalld in the lab",
    # Docker 20.10's layout has no loopback DROP rule (28+), so no binding expects one.
    'max without (kind) (docker_nat_rule_present{job=~"$job", instance=~"$instance", '
    'kind="loopback_drop"})': "Docker 20.10 has no loopback_drop rules",
}  # fmt: skip


@dataclass
class Stack:
    lab: Lab
    exporter: LabExporter
    webhook: Webhook
    alertmanager: Alertmanager
    prometheus: Prometheus
    shortened: list[str]


@pytest.fixture(scope="module")
def web(lab: Lab) -> str:
    lab.run_web(WEB, PORT)
    return WEB


def _prometheus_config(exporter: str, alertmanager: str):
    def config(rule_files: list[str]) -> dict:
        return {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": rule_files,
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [exporter]}]}],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        }

    return config


@pytest.fixture
def stack(scratch_lab: Lab, web: str) -> Iterator[Stack]:
    binaries = ("prometheus", "prometheus-alertmanager")
    for binary in binaries:
        require_or_skip(shutil.which(binary) is not None, f"{binary} not installed")
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert f'job="{JOB}"' in RULES.read_text(encoding="utf-8")
    # `absent(up)` is true until Prometheus's first scrape: with `for:` cut to 5 s it would fire
    # whenever start-up is slow, which its real 10m never does (promtool tests cover it)
    short_rules, shortened = shorten_for(rules, keep=("DockerNatExporterAbsent",))
    example = yaml.safe_load(AM_EXAMPLE.read_text(encoding="utf-8"))
    lab = scratch_lab
    with contextlib.ExitStack() as stop:
        hook = stop.enter_context(Webhook(lab.client_ns))
        exporter = LabExporter(lab.host_ns, lab.host_addr, "--docker.host", lab.docker_host,
                               "--refresh.interval", "5s", "--iptables.self-test", "true")  # fmt: skip
        stop.enter_context(exporter)
        am = stop.enter_context(Alertmanager(lab.client_ns, webhook_config(example, hook.base_url)))
        config = _prometheus_config(exporter.address, f"127.0.0.1:{am.port}")
        prom = stop.enter_context(
            Prometheus(lab.client_ns, config, {"docker-nat.rules.yml": short_rules})
        )
        yield Stack(lab, exporter, hook, am, prom, shortened)


def _port_alert(n: Notification, status: str) -> list[dict]:
    return [
        a
        for a in n.alerts(alertname=BROKEN, container=WEB, host_port=str(PORT), family="ipv4")
        if a.get("status") == status
    ]


def _wait_healthy(stack: Stack) -> None:
    prom, exporter = stack.prometheus, stack.exporter

    def target_up() -> bool:
        return any(
            t["labels"].get("job") == JOB
            and t["health"] == "up"
            and exporter.address in t["scrapeUrl"]
            for t in prom.targets()
        )

    prom.wait_until(target_up, 30, f"target {exporter.address} up in Prometheus")
    ok = (f'docker_nat_port_state{{job="{JOB}", container="{WEB}", host_port="{PORT}", '
          f'family="ipv4", state="ok"}} == 1')  # fmt: skip
    prom.wait_until(lambda: prom.query(ok), 30, "port state ok in Prometheus")


def _check_firing(stack: Stack, n: Notification) -> None:
    assert n.path == "/pager", f"a critical alert must go to the pager, not {n.path}"
    [alert] = _port_alert(n, "firing")
    labels, notes = alert["labels"], alert["annotations"]
    assert labels["severity"] == "critical" and labels["scope"] == "port", labels
    assert labels["job"] == JOB and labels["instance"] == stack.exporter.address, labels
    assert (labels["host_ip"], labels["protocol"]) == ("0.0.0.0", "tcp"), labels
    assert "state" not in labels, "the alert must not split by state"
    description = notes["description"]
    assert f"0.0.0.0:{PORT}/tcp of container {WEB} on {stack.exporter.address}" in description
    # both template lookups worked: the state and the reason code of the stale rule
    assert " is misrouted:" in description, description
    assert "Reason: shadowed_by_dnat (" in description, description
    assert notes["runbook_url"] == f"{RUNBOOK}#{BROKEN.lower()}"
    assert notes["summary"], notes


def _check_stale_rule_alert(n: Notification) -> None:
    assert n.path == "/chat", f"a warning must go to chat, not {n.path}"
    [alert] = n.alerts(alertname=STALE, table="nat", chain="DOCKER", family="ipv4")
    assert alert["labels"]["severity"] == "warning", alert
    assert "1 DNAT or ACCEPT rule(s) in the ipv4 nat chain DOCKER" in alert["annotations"][
        "description"]  # fmt: skip


# ---- dashboards --------------------------------------------------------------------------------


def _grafana_to_promql(expr: str, instance: str) -> str:
    values = {**GRAFANA_VALUES, "instance": instance}

    def value(m: re.Match) -> str:
        name = next(g for g in m.groups() if g)
        assert name in values, f"unknown Grafana variable ${name} in {expr!r}"
        return values[name]

    return _GRAFANA_VAR.sub(value, expr)


def _dashboard_queries() -> list[tuple[str, str, str | None]]:
    """(where, expr, label) for every `expr` in the dashboards' JSON, wherever it sits, and for
    the query variables' label_values(selector, label) (label: the one the result must carry)."""
    found: list[tuple[str, str, str | None]] = []

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            if "targets" in node:  # a panel
                where = f"{where} panel {node.get('title')!r}"
            if isinstance(node.get("expr"), str):
                name = node.get("name") or node.get("refId") or ""  # annotation or target
                found.append((f"{where} {name!r}", node["expr"], None))
            for key, child in node.items():
                if key not in ("templating", "targets"):
                    walk(child, where)
            for child in node.get("targets", []):
                walk(child, where)
        elif isinstance(node, list):
            for child in node:
                walk(child, where)

    for path in DASHBOARDS:
        doc = json.loads(path.read_text(encoding="utf-8"))
        walk(doc, path.name)
        for var in doc["templating"]["list"]:
            if var["type"] != "query":
                continue
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = _LABEL_VALUES.fullmatch(query)
            assert m, f"{path.name} variable {var['name']}: unexpected query {query!r}"
            found.append((f"{path.name} variable {var['name']}", m.group(1), m.group(2)))
    return found


def _check_dashboards(stack: Stack, at: float) -> list[str]:
    """Run every dashboard query at Unix time `at`; return the failures."""
    queries = _dashboard_queries()
    assert len(queries) >= 40, f"only {len(queries)} dashboard queries found"
    failures, allowed_empty = [], set()
    for where, expr, label in queries:
        promql = _grafana_to_promql(expr, stack.exporter.address)
        result = stack.prometheus.query(promql, at)
        if label is not None:
            values = {r["metric"].get(label) for r in result}
            expected = {JOB if label == "job" else stack.exporter.address}
            if values != expected:
                failures.append(f"{where}: label_values gives {values}, not {expected}")
        elif not result and expr in NO_DATA_EXPECTED:
            allowed_empty.add(expr)
        elif not result:
            failures.append(f"{where}: no data for {promql}")
        elif expr in NO_DATA_EXPECTED:
            failures.append(f"{where}: has data now, drop it from NO_DATA_EXPECTED: {expr}")
    unused = set(NO_DATA_EXPECTED) - {expr for _, expr, _ in queries}
    failures += [f"NO_DATA_EXPECTED names no dashboard query: {e}" for e in unused]
    print(f"\ndashboard queries: {len(queries)} run, {len(allowed_empty)} empty as expected")
    return failures


# ---- the test ----------------------------------------------------------------------------------


def test_incident_pages_and_resolves_end_to_end(stack: Stack) -> None:
    lab, hook, prom = stack.lab, stack.webhook, stack.prometheus
    assert {BROKEN, STALE} <= set(stack.shortened), f"`for:` shortened on {stack.shortened}"
    _wait_healthy(stack)
    assert lab.client_get(PORT).ok, "the port must work before the incident"
    assert not [n for n in hook.notifications if _port_alert(n, "firing")]

    broken_at = time.monotonic()
    lab.iptables("-t", "nat", "-I", "DOCKER", "1", *STALE_RULE)
    cut = lab.client_get(PORT)
    assert not cut.ok, f"the stale DNAT must cut off external clients, got {cut}"
    firing = hook.wait_for(lambda n: bool(_port_alert(n, "firing")), WAIT, f"{BROKEN} firing")
    incident_time = time.time()
    _check_firing(stack, firing)
    stale = hook.wait_for(
        lambda n: any(a["status"] == "firing" for a in n.alerts(alertname=STALE)),
        WAIT,
        f"{STALE} firing",
    )
    _check_stale_rule_alert(stale)

    repaired_at = time.monotonic()
    lab.iptables("-t", "nat", "-D", "DOCKER", *STALE_RULE)
    resolved = hook.wait_for(lambda n: bool(_port_alert(n, "resolved")), WAIT, f"{BROKEN} resolved")
    assert resolved.path == "/pager", resolved.path
    assert lab.client_get(PORT).ok, "the port must work again after the repair"

    print(f"\nrule inserted -> firing notification: {firing.received - broken_at:.1f}s")
    print(f"repair -> resolved notification: {resolved.received - repaired_at:.1f}s")

    names = {a["labels"].get("alertname") for n in hook.notifications for a in n.alerts()}
    assert names == EXPECTED_ALERTS, f"unexpected alerts: {hook.summary()}"
    failures = _check_dashboards(stack, incident_time)
    assert not failures, "\n".join(failures)
    assert prom.proc is not None and prom.proc.poll() is None
