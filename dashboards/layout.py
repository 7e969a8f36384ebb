"""Dashboard-level parts: grid layout, variables, annotations and the dashboard itself."""

from __future__ import annotations

from .grafana import DS, SCHEMA_VERSION


class Grid:
    """Lays panels out left to right in a 24-column grid and numbers them."""

    def __init__(self) -> None:
        self.panels: list[dict] = []
        self.x = self.y = self.row_h = 0

    def row(self, title: str) -> None:
        self._newline()
        self._place({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)
        self._newline()

    def add(self, panel: dict, w: int, h: int) -> None:
        if self.x + w > 24:
            self._newline()
        self._place(panel, w, h)

    def _place(self, panel: dict, w: int, h: int) -> None:
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)

    def _newline(self) -> None:
        if self.x:
            self.y += self.row_h
        self.x = self.row_h = 0


def query_var(name: str, label: str, query: str, multi: bool, include_all: bool) -> dict:
    var = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": f"PrometheusVariableQueryEditor-{name}"},
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": include_all,
        "current": {},
        "options": [],
        "hide": 0,
        "regex": "",
    }
    if include_all:
        var["allValue"] = ".+"  # a plain regex, not every value spelled out
    return var


def templating(instance_multi: bool) -> dict:
    info = "docker_nat_exporter_build_info"
    datasource = {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "options": [],
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "includeAll": False,
        "multi": False,
    }
    return {
        "list": [
            datasource,
            query_var("job", "Job", f"label_values({info}, job)", True, True),
            query_var(
                "instance",
                "Host",
                f'label_values({info}{{job=~"$job"}}, instance)',
                instance_multi,
                instance_multi,
            ),
        ]
    }


def time_annotation(name: str, expr: str, color: str, title: str) -> dict:
    """An event at the time a series' value (Unix seconds) names, once per distinct value."""
    return {
        "name": name,
        "datasource": DS,
        "enable": True,
        "hide": False,
        "iconColor": color,
        "expr": f"{expr} * 1000",
        "step": "1m",
        "useValueForTime": True,
        "titleFormat": title,
        "textFormat": "{{instance}}",
        "tagKeys": "instance",
    }


def dashboard(uid: str, title: str, description: str, grid: Grid, annotations, instance_multi):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["docker-nat", "docker", "iptables"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "links": [
            {
                "title": "Docker DNAT dashboards",
                "type": "dashboards",
                "tags": ["docker-nat"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "annotations": {"list": annotations},
        "templating": templating(instance_multi),
        "panels": grid.panels,
    }
