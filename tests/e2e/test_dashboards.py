"""Grafana dashboards (dashboards/*.json) and their provisioning files, checked statically.

The PromQL in every panel, annotation and variable is parsed by the real promtool, evaluated by
it on sample series for the panels whose arithmetic matters, and checked against
docs/metrics.md.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_alerts import (
    PROMETHEUS_METRICS,
    documented_labels,
    documented_metrics,
    documented_states,
    metric_names,
    need,
    selector_labels,
)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "dashboards"
PROVISIONING = DASHBOARD_DIR / "provisioning"
DS_REF = {"type": "prometheus", "uid": "${datasource}"}
JOB_AND_HOST = ('job=~"$job"', 'instance=~"$instance"')

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from dashboards.build import DASHBOARDS, render  # noqa: E402
from dashboards.grafana import STATE_COLORS  # noqa: E402


def load() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in DASHBOARD_DIR.glob("*.json")}


def panels(dashboard: dict) -> list[dict]:
    """Every panel, including those nested in collapsed rows."""
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def exprs(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) for every target, annotation and template query."""
    found = [
        (f"panel {p['title']!r}", t["expr"])
        for p in panels(dashboard)
        for t in p.get("targets", [])
    ]
    found += [(f"annotation {a['name']!r}", a["expr"]) for a in dashboard["annotations"]["list"]]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"]["query"])
            assert m, f"variable {var['name']}: unexpected query {var['query']}"
            found.append((f"variable {var['name']!r}", m.group(1)))
    return found


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana's variables by values promtool accepts."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
    return expr.replace("$job", "docker-nat").replace("$instance", "host-a:9700")


def walk(node, path="$"):
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")


def test_committed_json_is_generated():
    assert set(load()) == set(DASHBOARDS)
    for name in DASHBOARDS:
        committed = (DASHBOARD_DIR / name).read_text(encoding="utf-8")
        assert committed == render(name), f"{name} is stale: run python -m dashboards.build"


def test_dashboard_model():
    dashboards = load()
    uids = [d["uid"] for d in dashboards.values()]
    assert len(uids) == len(set(uids)) == 2
    for name, d in dashboards.items():
        assert re.fullmatch(r"docker-nat-[a-z]+", d["uid"]), name
        assert d["title"].startswith("Docker DNAT / "), name
        assert "docker-nat" in d["tags"], name
        assert d["schemaVersion"] >= 39, name
        assert "id" not in d, f"{name}: a dashboard id breaks import into another Grafana"


def test_panel_ids_unique_and_grid_sane():
    for name, d in load().items():
        ids = [p["id"] for p in panels(d)]
        assert len(ids) == len(set(ids)), name
        cells = set()
        for p in panels(d):
            g = p["gridPos"]
            assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, (name, p["title"])
            mine = {
                (x, y)
                for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])
            }
            assert not cells & mine, f"{name}: panel {p['title']!r} overlaps another"
            cells |= mine


def test_datasource_variable_is_used_everywhere():
    for name, d in load().items():
        variables = {v["name"]: v for v in d["templating"]["list"]}
        ds = variables["datasource"]
        assert (ds["type"], ds["query"]) == ("datasource", "prometheus"), name
        assert not ds.get("current"), f"{name}: the datasource variable must not preset a uid"
        for p in panels(d):
            if p["type"] == "row":
                continue
            assert p["datasource"] == DS_REF, (name, p["title"])
            assert p["targets"], (name, p["title"])
            for t in p["targets"]:
                assert t["datasource"] == DS_REF, (name, p["title"], t["refId"])
        for a in d["annotations"]["list"]:
            assert a["datasource"] == DS_REF, (name, a["name"])
        for v in variables.values():
            if v["type"] == "query":
                assert v["datasource"] == DS_REF, (name, v["name"])


def test_no_hard_coded_datasource():
    for name, d in load().items():
        for path, node in walk(d):
            if "datasource" in node:
                assert node["datasource"] == DS_REF, f"{name} {path}: {node['datasource']!r}"
            if "uid" in node and path != "$":
                assert node["uid"] == "${datasource}", f"{name} {path}: uid {node['uid']!r}"


def test_job_and_instance_variables():
    for name, d in load().items():
        variables = {v["name"]: v for v in d["templating"]["list"]}
        assert list(variables) == ["datasource", "job", "instance"], name
        job, instance = variables["job"]["query"]["query"], variables["instance"]["query"]["query"]
        assert job == "label_values(docker_nat_exporter_build_info, job)"
        assert instance == 'label_values(docker_nat_exporter_build_info{job=~"$job"}, instance)'
        assert variables["instance"]["refresh"] == 2  # on time range change


def test_every_selector_filters_job_and_instance():
    for name, d in load().items():
        for where, expr in exprs(d):
            if where.startswith("variable"):
                continue
            selectors = re.findall(r"\b([a-zA-Z_:][\w:]*)\{([^{}]*)\}", expr)
            assert len(selectors) >= len(metric_names(expr)) > 0, (name, where, expr)
            for metric, matchers in selectors:
                assert all(m in matchers for m in JOB_AND_HOST), (name, where, metric)


def test_every_metric_and_label_is_documented():
    allowed = documented_metrics() | PROMETHEUS_METRICS
    for name, d in load().items():
        for where, expr in exprs(d):
            names = metric_names(expr)
            assert names and names <= allowed, f"{name} {where}: undocumented {names - allowed}"
            for metric, labels in selector_labels(expr):
                if metric not in PROMETHEUS_METRICS:
                    assert labels <= documented_labels(metric), (name, where, metric, labels)


def test_state_colours_cover_the_documented_states():
    assert set(STATE_COLORS) == documented_states()


def test_links_point_at_existing_dashboards():
    uids = {d["uid"] for d in load().values()}
    for name, d in load().items():
        for path, node in walk(d):
            url = node.get("url") if isinstance(node.get("url"), str) else ""
            for uid in re.findall(r"/d/([\w-]+)", url):
                assert uid in uids, f"{name} {path}: link to unknown dashboard {uid}"


def test_promql_parses(tmp_path):
    """Every expression, variables replaced, as a recording rule for `promtool check rules`."""
    rules = [
        {"record": f"dashboard_expr_{i}", "expr": grafana_to_promql(expr)}
        for i, (_, expr) in enumerate(e for d in load().values() for e in exprs(d))
    ]
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": rules}]}), encoding="utf-8")
    result = subprocess.run(
        [need("promtool"), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def panel_expr(dashboard: str, title: str, ref: str = "A") -> str:
    p = next(p for p in panels(load()[dashboard]) if p["title"] == title)
    return grafana_to_promql(next(t["expr"] for t in p["targets"] if t["refId"] == ref))


PORT = (
    'job="docker-nat",instance="host-a:9700",container="{c}",host_ip="0.0.0.0",'
    'host_port="{p}",protocol="tcp"'
)


def port_state_series(container: str, port: str, state: str) -> list[dict]:
    labels = PORT.format(c=container, p=port)
    return [
        {
            "series": f'docker_nat_port_state{{{labels},state="{s}"}}',
            "values": "1" if s == state else "0",
        }
        for s in documented_states()
    ]


def test_panels_compute_what_they_claim(tmp_path):
    """promtool evaluates a few panels' queries on sample series (a web port dropped, a db port
    proxied, an api port ok on host-a)."""
    series = [
        *port_state_series("web", "8080", "dropped"),
        *port_state_series("db", "5432", "proxied"),
        *port_state_series("api", "9000", "ok"),
    ]
    code = {s: i for i, s in enumerate(STATE_COLORS, 1)}
    mappings = load()["docker-nat-host.json"]
    timeline = next(p for p in panels(mappings) if p["title"] == "Port states over time")
    texts = timeline["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {int(k): v["text"] for k, v in texts.items()} == {i: s for s, i in code.items()}
    port = 'container="{}", host_ip="0.0.0.0", host_port="{}", protocol="tcp"'
    tests = [
        (panel_expr("docker-nat-overview.json", "Hosts with broken ports"), [("{}", 1)]),
        (panel_expr("docker-nat-overview.json", "Broken ports"), [("{}", 1)]),
        (panel_expr("docker-nat-host.json", "OK ports"), [("{}", 1)]),
        (
            panel_expr("docker-nat-host.json", "Port states over time"),
            [
                ("{" + port.format("web", "8080") + "}", code["dropped"]),
                ("{" + port.format("db", "5432") + "}", code["proxied"]),
                ("{" + port.format("api", "9000") + "}", code["ok"]),
            ],
        ),
    ]
    doc = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": expr,
                        "eval_time": "0m",
                        "exp_samples": [{"labels": lab, "value": v} for lab, v in exp],
                    }
                    for expr, exp in tests
                ],
            }
        ],
    }
    path = tmp_path / "panels.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    result = subprocess.run(
        [need("promtool"), "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning():
    ds = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert ds["apiVersion"] == 1
    assert (source["type"], source["uid"], source["url"]) == (
        "prometheus",
        "prometheus",
        "http://prometheus:9090",
    )
    prov = yaml.safe_load((PROVISIONING / "dashboards" / "docker-nat.yml").read_text())
    (provider,) = prov["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_tables_merge_on_labels_only(name):
    """Grafana's merge joins rows only when every shared column agrees; a query that keeps its
    metric name (__name__) never merges with another metric's rows."""
    for p in panels(load()[name]):
        if p["type"] != "table" or len(p["targets"]) < 2:
            continue
        for t in p["targets"]:
            expr = t["expr"].strip()
            assert t["format"] == "table" and t["instant"], (name, p["title"])
            assert re.match(r"(sum|max|min|count)\b", expr), f"{name} {p['title']}: {expr}"
