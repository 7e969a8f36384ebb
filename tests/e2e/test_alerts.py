"""Alert rules, their promtool unit tests, the Alertmanager example and the runbook.

Runs the real promtool, amtool and Alertmanager (Debian packages prometheus and
prometheus-alertmanager); without them the tests skip, or fail when CI=true.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from support.util import require_or_skip

from exporter import alerts
from exporter.project import doc_url

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "alerts"
RULES = ALERTS / "docker-nat.rules.yml"
UNIT_TESTS = sorted((ALERTS / "tests").glob("*.yaml"))
AM_CONFIG = ALERTS / "alertmanager.example.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
METRICS_DOC = ROOT / "docs" / "metrics.md"
RUNBOOK_URL = doc_url("runbook.md")
PROMETHEUS_METRICS = {"up"}  # written by Prometheus itself, not by the exporter
TIMEOUT = 60

# ---- PromQL metric names (shared with test_dashboards.py) ---------------------------------------

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
_KEYWORDS |= {"and", "or", "unless", "atan2", "inf", "nan"}
_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_GRAFANA_VARS = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]")
_CLAUSES = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.I)
_TOKENS = re.compile(r"[0-9][\w.]*|[A-Za-z_:][\w:]*")


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: identifiers that are not strings, label names
    (inside `{}` or grouping clauses), durations, numbers, keywords or calls (followed by `(`)."""
    s = _STRINGS.sub('""', expr)
    s = _GRAFANA_VARS.sub(" ", s)
    s = re.sub(r"\{[^{}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = _CLAUSES.sub(" ", s)
    names = set()
    for m in _TOKENS.finditer(s):
        token = m.group()
        if token[0].isdigit() or token.lower() in _KEYWORDS:
            continue
        if s[m.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        names.add(token)
    return names


def _metric_tables() -> dict[str, set[str]]:
    """{metric: documented labels} from docs/metrics.md's tables whose first column is `metric`."""
    text = METRICS_DOC.read_text(encoding="utf-8")
    port_labels: set[str] = set()
    metrics: dict[str, set[str]] = {}
    header = ""
    for line in text.splitlines():
        cells = (
            [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        )
        if not cells:
            header = ""
            continue
        if not header:
            header = cells[0]
            continue
        name = re.fullmatch(r"`([a-zA-Z_:][\w:]*)`", cells[0])
        if not name:
            continue  # the |---| line
        if header == "label":
            port_labels.add(name.group(1))
        elif header == "metric":
            labels = set(re.findall(r"`(\w+)`", cells[1]))
            if "port labels" in cells[1]:
                labels |= port_labels
            metrics[name.group(1)] = labels
    return metrics


def documented_metrics() -> set[str]:
    """Metric names in docs/metrics.md's metric tables."""
    return set(_metric_tables())


def documented_labels(metric: str) -> set[str]:
    """Labels a metric may carry: those docs/metrics.md lists, plus the target labels."""
    return _metric_tables().get(metric, set()) | {"job", "instance"}


def selector_labels(expr: str) -> list[tuple[str, set[str]]]:
    """(metric, label names matched) for every `metric{…}` selector in `expr`."""
    found = []
    for m in re.finditer(r"\b([a-zA-Z_:][\w:]*)\{([^{}]*)\}", _STRINGS.sub(_keep_strings, expr)):
        found.append((m.group(1), set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", m.group(2)))))
    return found


def _keep_strings(m: re.Match) -> str:
    """Blank a string's content (but keep the quotes) so braces inside it cannot confuse."""
    return m.group()[0] * 2


def documented_states() -> set[str]:
    line = next(x for x in METRICS_DOC.read_text(encoding="utf-8").splitlines() if "States: " in x)
    return set(re.findall(r"`(\w+)`", line.split("States: ", 1)[1].split(".")[0]))


def github_anchors(markdown: str) -> list[str]:
    """Heading anchors the way GitHub renders them (lower case, punctuation dropped)."""
    anchors = []
    for line in markdown.splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            anchors.append(text.replace(" ", "-"))
    return anchors


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, **kw)


def need(binary: str) -> str:
    path = shutil.which(binary)
    require_or_skip(path is not None, f"{binary} not installed (Debian prometheus packages)")
    return path


def load_build():
    """alerts/build.py, the source checkout's way to regenerate the committed rule file."""
    spec = importlib.util.spec_from_file_location("docker_nat_alerts_build", ALERTS / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def all_rules(doc: dict | None = None) -> list[dict]:
    doc = doc or yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [r for g in doc["groups"] for r in g["rules"]]


def alert_rules() -> list[dict]:
    return [r for r in all_rules() if "alert" in r]


def unit_test_cases() -> list[dict]:
    return [
        case
        for path in UNIT_TESTS
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]
        for case in group["alert_rule_test"]
    ]


# ---- the parser itself --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('max without (state) (a_b{job="x", state=~"y|z"}) == 1', {"a_b"}),
        ('time() - c_seconds{job="j"} > 120', {"c_seconds"}),
        ("changes(d[15m]) > 0 unless on (job, instance) e{rootless='true'}", {"d", "e"}),
        (
            "sum by (job) (rate(f_total[$__rate_interval])) * on(job) group_left(version) g",
            {"f_total", "g"},
        ),
        ('absent(up{job="docker-nat"})', {"up"}),
        ("h offset 5m and bool 1e3 or Inf", {"h"}),
        ('label_x{a="sum(fake)"} / ignoring(b) k:recorded', {"label_x", "k:recorded"}),
        ('x{instance=~"$instance"} or vector(0)', {"x"}),
    ],
)
def test_metric_name_parser(expr, names):
    assert metric_names(expr) == names


def test_metrics_doc_parses():
    documented = documented_metrics()
    assert len(documented) >= 25, documented
    assert all(name.startswith("docker_nat_") for name in documented), documented
    assert documented_labels("docker_nat_port_info") >= {"reason", "host_port", "instance"}
    assert documented_labels("docker_nat_stale_rules") == {
        "family",
        "table",
        "chain",
        "job",
        "instance",
    }
    assert selector_labels('a{x="{y}", z=~"1"} + b{w!="q"}') == [("a", {"x", "z"}), ("b", {"w"})]
    assert documented_states() == {
        "ok",
        "proxied",
        "masqueraded",
        "misrouted",
        "dropped",
        "unreachable",
        "unknown",
    }


# ---- the rule file ------------------------------------------------------------------------------


def test_rule_file_is_generated_from_the_package(tmp_path):
    text = RULES.read_text(encoding="utf-8")
    assert text == alerts.render(), (
        "alerts/docker-nat.rules.yml is stale: run python alerts/build.py"
    )
    assert yaml.safe_load(text) == alerts.rules(), "the YAML emitter changed a string"
    out = tmp_path / "rules.yml"
    assert load_build().main(["--output", str(out)]) == 0  # the checkout's script, same text
    assert out.read_text(encoding="utf-8") == text


def test_rules_render_from_the_installed_command(tmp_path):
    """`docker-nat-exporter alerts` (here `python -m exporter alerts`, run outside the checkout)
    prints the rules with another base URL for every runbook_url."""
    base = "https://git.example.org/ops/docker-nat-exporter"
    p = run([sys.executable, "-m", "exporter", "alerts", "--base-url", base], cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert p.returncode == 0, p.stderr
    rules = all_rules(yaml.safe_load(p.stdout))
    assert len(rules) == len(all_rules())
    for rule in rules:
        want = f"{base}/blob/main/docs/runbook.md#{rule['alert'].lower()}"
        assert rule["annotations"]["runbook_url"] == want
    out = tmp_path / "rules.yml"
    out.write_text(p.stdout, encoding="utf-8")
    result = run([need("promtool"), "check", "rules", str(out)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_job_selector_is_configurable_in_one_place(tmp_path):
    out = tmp_path / "custom.rules.yml"
    assert alerts.main(["--job-selector", 'job="dnat-prod"', "--output", str(out)]) == 0
    custom = out.read_text(encoding="utf-8")
    assert 'job="docker-nat"' not in custom and 'docker-nat"' not in custom
    for rule in all_rules(yaml.safe_load(custom)):
        selectors = re.findall(r"\b[a-z_:]+\{([^}]*)\}", rule["expr"])
        assert selectors, rule["alert"]
        assert all('job="dnat-prod"' in s for s in selectors), rule["expr"]
    result = run([need("promtool"), "check", "rules", str(out)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules():
    result = run([need("promtool"), "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"SUCCESS: (\d+) rules found", result.stdout)
    assert found and int(found.group(1)) == len(all_rules()) == 18


def test_alert_conventions():
    names = [r["alert"] for r in alert_rules()]
    assert len(names) == len(set(names))
    for rule in alert_rules():
        name, labels, notes = rule["alert"], rule["labels"], rule["annotations"]
        assert re.fullmatch(r"DockerNat(?:[A-Z][a-z0-9]*)+", name), name
        assert labels["severity"] in {"critical", "warning", "info"}, name
        assert labels["scope"] in {"port", "host", "exporter"}, name
        assert set(notes) == {"summary", "description", "runbook_url"}, name
        assert "{{" not in notes["summary"], f"{name}: summary must be static"
        if name != "DockerNatExporterAbsent":  # absent() has only the selector's labels
            assert "{{" in notes["description"], f"{name}: description must be templated"
        assert notes["runbook_url"] == f"{RUNBOOK_URL}#{name.lower()}"
        if labels["severity"] != "info":
            assert "for" in rule, f"{name} can flap and needs a `for:`"
        if labels["scope"] == "port":
            for part in ("$labels.instance", "$labels.container", "$labels.host_ip"):
                assert part in notes["description"], f"{name} lacks {part}"
            assert "{{ $labels.host_port }}/{{ $labels.protocol }}" in notes["description"]
        elif name != "DockerNatExporterAbsent":  # absent() has no instance to name
            assert "{{ $labels.instance }}" in notes["description"], name


def test_state_alerts_cover_every_bad_state():
    """Every state but ok is alerted on by exactly one rule, except that a port no remote client
    reaches is split by whose rule decided: Docker's pages (Broken), an admin's tickets
    (Blocked), and their two expressions exclude each other on docker_nat_port_info's owner."""
    covered: dict[str, list[str]] = {}
    for rule in alert_rules():
        for m in re.finditer(r'docker_nat_port_state\{[^}]*state=~?"([^"]+)"', rule["expr"]):
            for state in m.group(1).split("|"):
                covered.setdefault(state, []).append(rule["alert"])
    assert sorted(covered) == sorted(documented_states() - {"ok"})
    split = {"DockerNatPublishedPortBroken", "DockerNatPublishedPortBlocked"}
    for state, rules in covered.items():
        assert len(rules) == 1 or set(rules) == split, (state, rules)
    exprs = {r["alert"]: r["expr"] for r in alert_rules() if r["alert"] in split}
    admin = 'docker_nat_port_info{job="docker-nat", owner=~"docker-user|host"}'
    assert (
        "unless on (" in exprs["DockerNatPublishedPortBroken"]
        and admin in exprs["DockerNatPublishedPortBroken"]
    )
    assert (
        "group_left (owner)" in exprs["DockerNatPublishedPortBlocked"]
        and admin in exprs["DockerNatPublishedPortBlocked"]
    )


def test_rules_use_only_documented_metrics():
    allowed = documented_metrics() | PROMETHEUS_METRICS
    for rule in alert_rules():
        names = metric_names(rule["expr"])
        assert names, rule["expr"]
        for fmt in re.findall(r'printf "((?:\\.|[^"\\])*)"', rule["annotations"]["description"]):
            names |= metric_names(fmt.replace("%q", '"x"'))
        assert names <= allowed, f"{rule['alert']}: undocumented {names - allowed}"
        for metric, labels in selector_labels(rule["expr"]):
            if metric not in PROMETHEUS_METRICS:
                assert labels <= documented_labels(metric), f"{rule['alert']}: {metric} {labels}"


# ---- promtool unit tests ------------------------------------------------------------------------


def test_every_alert_has_firing_and_pending_cases():
    cases = unit_test_cases()
    for rule in alert_rules():
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        firing = [c for c in mine if c.get("exp_alerts")]
        quiet = [c for c in mine if not c.get("exp_alerts")]
        assert firing and quiet, f"{rule['alert']} needs a firing and a not-firing case"
        for case in firing:
            for exp in case["exp_alerts"]:
                assert exp["exp_labels"]["severity"] == rule["labels"]["severity"]
                assert exp["exp_labels"]["scope"] == rule["labels"]["scope"]
                assert set(exp["exp_annotations"]) == {"summary", "description", "runbook_url"}
    broken = [c for c in cases if c["alertname"] == "DockerNatPublishedPortBroken"]
    last_firing = max(c["eval_time"] for c in broken if c["exp_alerts"])
    resolved = [c for c in broken if not c["exp_alerts"] and c["eval_time"] > last_firing]
    assert resolved, "the broken-port alert needs a case showing it resolves after the repair"


def test_promtool_test_rules():
    result = run([need("promtool"), "test", "rules", *map(str, UNIT_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(UNIT_TESTS) == 3


def test_promtool_evaluates_every_case(tmp_path):
    """promtool prints nothing per passing case, so count them another way: expect a canary
    label in every case and check that promtool reports each case as failed."""
    for path in UNIT_TESTS:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        doc["rule_files"] = [str((path.parent / f).resolve()) for f in doc["rule_files"]]
        for group in doc["tests"]:
            for case in group["alert_rule_test"]:
                case["exp_alerts"] = [{"exp_labels": {"canary": "never"}}]
        (tmp_path / path.name).write_text(yaml.safe_dump(doc), encoding="utf-8")
    result = run([need("promtool"), "test", "rules", *sorted(map(str, tmp_path.glob("*.yaml")))])
    assert result.returncode != 0
    output = result.stdout + result.stderr  # failures go to stderr
    failed = re.findall(r"^\s+alertname: (\w+), time: (\S+),", output, re.M)
    cases = unit_test_cases()
    assert len(failed) == len(cases) >= 2 * len(alert_rules())
    assert {name for name, _ in failed} == {r["alert"] for r in alert_rules()}


# ---- runbook ------------------------------------------------------------------------------------


def test_runbook_has_a_section_per_alert():
    text = RUNBOOK.read_text(encoding="utf-8")
    anchors = github_anchors(text)
    for rule in alert_rules():
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchors.count(anchor) == 1, f"runbook lacks a section #{anchor}"
    for link in re.findall(r"\]\(#([^)]+)\)", text):
        assert link in anchors, f"runbook links to a missing #{link}"
    assert "iptables -t nat -F" in text and "iptables -t nat -D DOCKER" in text


# ---- Alertmanager -------------------------------------------------------------------------------


def test_amtool_check_config():
    result = run([need("amtool"), "check-config", str(AM_CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert " - 2 inhibit rules" in result.stdout and " - 3 receivers" in result.stdout


@pytest.mark.parametrize(
    ("severity", "receiver"), [("critical", "pager"), ("warning", "chat"), ("info", "null")]
)
def test_alertmanager_routes_by_severity(severity, receiver):
    cmd = [need("amtool"), "config", "routes", "test", f"--config.file={AM_CONFIG}"]
    result = run([*cmd, f"severity={severity}", "alertname=DockerNatX", "instance=h:1"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == receiver


def test_inhibition_sources_and_targets_exist():
    config = yaml.safe_load(AM_CONFIG.read_text(encoding="utf-8"))
    alerts = {r["alert"]: r["labels"] for r in alert_rules()}
    for rule in config["inhibit_rules"]:
        assert rule["equal"] == ["instance"]
        assert rule["target_matchers"] == ['scope="port"']
        for matcher in rule["source_matchers"]:
            names = re.fullmatch(r'alertname=~?"([^"]+)"', matcher).group(1).split("|")
            assert set(names) <= set(alerts), names
    assert {n for n, labels in alerts.items() if labels["scope"] == "port"} == {
        "DockerNatPublishedPortBroken",
        "DockerNatPublishedPortBlocked",
        "DockerNatPublishedPortPublic",
        "DockerNatPublishedPortProxied",
        "DockerNatPublishedPortMasqueraded",
        "DockerNatPortStateUnknown",
        "DockerNatPortRuleMissing",
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, path: str, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        base + path, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read() or b"null")


@pytest.fixture
def alertmanager(tmp_path):
    binary = need("prometheus-alertmanager")
    port = _free_port()
    cmd = [
        binary,
        f"--config.file={AM_CONFIG}",
        f"--storage.path={tmp_path}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                _api(base, "/api/v2/status")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"alertmanager did not start: {proc.communicate()[1][-2000:]}")
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _alert(name: str, instance: str, **labels) -> dict:
    rule = next(r for r in alert_rules() if r["alert"] == name)
    return {"labels": {"alertname": name, "instance": instance, **rule["labels"], **labels}}


def test_alertmanager_inhibits_port_alerts_of_the_same_host(alertmanager):
    port = {"container": "web", "host_port": "8080", "protocol": "tcp"}
    alerts = [
        _alert("DockerNatSourceDown", "host-a:9700", source="iptables"),
        _alert("DockerNatPublishedPortBroken", "host-a:9700", **port),
        _alert("DockerNatPublishedPortBroken", "host-b:9700", **port),
        _alert("DockerNatJumpMissing", "host-c:9700", table="nat", chain="PREROUTING"),
        _alert("DockerNatPublishedPortProxied", "host-c:9700", **port),
        _alert("DockerNatIptablesKnownBad", "host-a:9700"),
    ]
    _api(alertmanager, "/api/v2/alerts", alerts)
    want = {
        ("DockerNatPublishedPortBroken", "host-a:9700"),
        ("DockerNatPublishedPortProxied", "host-c:9700"),
    }
    # Alertmanager marks inhibitions asynchronously after the POST: under load the first
    # read can come before the marks, so read until they settle (bounded).
    deadline = time.monotonic() + 15
    while True:
        got = {
            (a["labels"]["alertname"], a["labels"]["instance"]): a["status"]["inhibitedBy"]
            for a in _api(alertmanager, "/api/v2/alerts")
        }
        inhibited = {key for key, by in got.items() if by}
        if (len(got) == len(alerts) and inhibited == want) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(got) == len(alerts)
    assert inhibited == want
