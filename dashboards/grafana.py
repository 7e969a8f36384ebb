"""Small builders for Grafana's classic dashboard JSON model (schemaVersion 39).

Every panel, target, annotation and template query uses the `$datasource` variable: no
datasource uid is ever written into a dashboard.
"""

from __future__ import annotations

DS = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39

STATE_COLORS = {
    "ok": "green",
    "proxied": "yellow",
    "masqueraded": "light-yellow",
    "misrouted": "orange",
    "dropped": "red",
    "unreachable": "dark-red",
    "unknown": "purple",
}


def target(expr: str, ref: str = "A", legend: str = "", table: bool = False) -> dict:
    """A query; `table` makes it an instant query in table format (one row per series)."""
    return {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "format": "table" if table else "time_series",
        "instant": table,
        "range": not table,
        "legendFormat": legend or "__auto",
        "refId": ref,
    }


def steps(*pairs: tuple[str, float | None]) -> dict:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in pairs]}


def value_map(entries: dict, kind: str = "value") -> list[dict]:
    """{value: (text, color)} as one value mapping."""
    options = {
        str(k): {"text": text, "color": color, "index": i}
        for i, (k, (text, color)) in enumerate(entries.items())
    }
    return [{"type": kind, "options": options}]


STATE_MAP = value_map({s: (s, c) for s, c in STATE_COLORS.items()})
PRESENT_MAP = value_map({1: ("present", "green"), 0: ("MISSING", "red")})


def override(name: str, **props) -> dict:
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": k.replace("__", "."), "value": v} for k, v in props.items()],
    }


def _panel(kind: str, title: str, targets: list[dict], description: str, **extra) -> dict:
    panel = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
    }
    panel.update(extra)
    return panel


def stat(title, expr, description, unit="none", thresholds=None, mappings=None, **kw) -> dict:
    legend = kw.pop("legend", "")
    defaults = {
        "unit": unit,
        "color": {"mode": "thresholds"},
        "thresholds": thresholds or steps(("green", None)),
        "mappings": mappings or [],
    }
    defaults.update(kw.pop("defaults", {}))
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": kw.pop("color_mode", "background"),
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": kw.pop("text_mode", "auto"),
        "wideLayout": True,
        "showPercentChange": False,
    }
    return _panel(
        "stat",
        title,
        [target(expr, legend=legend)],
        description,
        fieldConfig={"defaults": defaults, "overrides": []},
        options=options,
        **kw,
    )


def timeseries(title, targets, description, unit="short", stack=False, overrides=(), **kw):
    custom = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 30 if stack else 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
    }
    if "threshold_line" in kw:
        custom["thresholdsStyle"] = {"mode": "line"}
    defaults = {
        "unit": unit,
        "min": 0,
        "color": {"mode": "palette-classic"},
        "custom": custom,
        "thresholds": kw.pop("threshold_line", steps(("green", None))),
    }
    options = {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return _panel(
        "timeseries",
        title,
        targets,
        description,
        fieldConfig={"defaults": defaults, "overrides": list(overrides)},
        options=options,
        **kw,
    )


def table(title, targets, description, hide=(), rename=None, overrides=(), sort=None, **kw):
    """Instant table queries merged on their common labels; `hide` drops columns."""
    excluded = {name: True for name in ("Time", "__name__", *hide)}
    transformations = [
        {"id": "merge", "options": {}},
        {
            "id": "organize",
            "options": {"excludeByName": excluded, "renameByName": rename or {}, "indexByName": {}},
        },
    ]
    defaults = {
        "custom": {"align": "auto", "cellOptions": {"type": "auto"}, "filterable": True},
        "color": {"mode": "thresholds"},
        "thresholds": steps(("green", None)),
        "mappings": [],
    }
    options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    if sort:
        options["sortBy"] = [{"displayName": sort[0], "desc": sort[1]}]
    return _panel(
        "table",
        title,
        targets,
        description,
        transformations=transformations,
        fieldConfig={"defaults": defaults, "overrides": list(overrides)},
        options=options,
        **kw,
    )


def state_timeline(title, targets, description, mappings) -> dict:
    defaults = {
        "custom": {"lineWidth": 0, "fillOpacity": 80},
        "color": {"mode": "thresholds"},
        "thresholds": steps(("green", None)),
        "mappings": mappings,
    }
    options = {
        "mergeValues": True,
        "showValue": "never",
        "alignValue": "left",
        "rowHeight": 0.9,
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
        "tooltip": {"mode": "single", "sort": "none"},
    }
    return _panel(
        "state-timeline",
        title,
        targets,
        description,
        fieldConfig={"defaults": defaults, "overrides": []},
        options=options,
    )
