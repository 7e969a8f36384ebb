"""The status page at `/`: what is broken first, each state in its colour and linked to its docs.

It reloads itself every `refresh` seconds. Everything from Docker or the rules is escaped.
"""

from __future__ import annotations

import html
import re
import time

from exporter import __version__
from exporter.path.verdict import SEVERITY
from exporter.project import doc_url
from exporter.summary import diagnostic_lines, fact_lines, sources, summary_line

# The same hues as the Grafana dashboards' state mapping (dashboards/grafana.py STATE_COLORS).
COLOURS = {
    "ok": "#1a7f37",
    "proxied": "#9a6700",
    "masqueraded": "#7d4e00",
    "misrouted": "#bc4c00",
    "dropped": "#cf222e",
    "unreachable": "#82071e",
    "unknown": "#8250df",
}
RUNBOOK = {  # the alert each state raises (docs/runbook.md)
    "proxied": "dockernatpublishedportproxied",
    "masqueraded": "dockernatpublishedportmasqueraded",
    "misrouted": "dockernatpublishedportbroken",
    "dropped": "dockernatpublishedportbroken",
    "unreachable": "dockernatpublishedportbroken",
    "unknown": "dockernatportstateunknown",
}
STYLE = (
    "body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left;"
    "vertical-align:top}code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:90%}"
    ".st{color:#fff;font-weight:bold;padding:1px 6px;border-radius:3px;text-decoration:none}"
    ".errors{border-left:4px solid #cf222e;padding-left:1em}"
    + "".join(f".st-{s}{{background:{c}}}.h-{s}{{color:{c}}}" for s, c in COLOURS.items())
)


def e(text: str) -> str:
    # lone surrogates (JSON allows them) cannot be sent as UTF-8: they become "?"
    return html.escape(text).encode("utf-8", "replace").decode("utf-8")


def rule_text(text: str) -> str:
    """Escaped, with the `quoted` rule texts of a reason in monospace."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", e(text))


def state_link(state: str) -> str:
    href = doc_url("verdicts.md", f"state-{state}")
    return f"<a class='st st-{state}' href='{e(href)}'>{e(state)}</a>"


def status_page(s, telemetry_path: str, refresh: int = 15) -> str:
    title = "docker-nat-exporter" + (f": {summary_line(s)}" if s is not None else "")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<meta http-equiv='refresh' content='{int(refresh)}'><title>{e(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>docker-nat-exporter {e(__version__)}</h1>",
        f"<p><a href='{e(telemetry_path)}'>Metrics</a> · <a href='/-/healthy'>healthy</a> · "
        f"<a href='/-/ready'>ready</a> · <a href='{e(doc_url('verdicts.md'))}'>the states</a> · "
        f"<a href='{e(doc_url('runbook.md'))}'>runbook</a></p>",
    ]
    if s is None:
        parts.append("<h2>No snapshot yet: the first refresh is running.</h2></body></html>")
        return "".join(parts)
    parts += _headline(s)
    parts += _ports(s)
    missing = [j for j in s.jumps if not j.present]
    if missing:
        parts.append("<h2>Missing jumps</h2><ul>")
        parts += [f"<li>{e(j.expected.family)}: <code>{e(j.expected.line)}</code></li>"
                  for j in missing]  # fmt: skip
        parts.append("</ul>")
    if s.stale:
        parts.append("<h2>Stale rules</h2><ul>")
        parts += [f"<li>{e(r.family)} {e(r.ref)}: <code>{e(r.text)}</code></li>" for r in s.stale]
        parts.append("</ul>")
    age = time.time() - s.taken_at
    parts.append(
        f"<p>Snapshot taken {age:.1f} s ago in {s.duration_seconds:.3f} s; this page reloads "
        f"every {int(refresh)} s.</p></body></html>"
    )
    return "".join(parts)


def _headline(s) -> list[str]:
    states = [p.verdict.state for p in s.ports]
    worst = min(states, key=SEVERITY.get) if states else "ok"
    if not s.source_up("docker") or s.daemon is None:
        worst = "dropped"  # the colour of trouble: Docker could not be read
    out = [f"<h2 class='h-{worst}'>{e(summary_line(s))}</h2>"]
    diagnostics = diagnostic_lines(s)
    errors = [d for d in diagnostics if d.startswith("ERROR")]
    if errors:
        out.append("<ul class='errors'>" + "".join(f"<li>{e(x)}</li>" for x in errors) + "</ul>")
    rest = fact_lines(s) + [d for d in diagnostics if not d.startswith("ERROR")]
    out.append("<ul>" + "".join(f"<li>{rule_text(x)}</li>" for x in rest) + "</ul>")
    return out


def _ports(s) -> list[str]:
    bad = sorted(
        (p for p in s.ports if p.verdict.state != "ok"), key=lambda p: SEVERITY[p.verdict.state]
    )
    ok = [p for p in s.ports if p.verdict.state == "ok"]
    out = []
    if bad:
        out.append(_table(bad, runbook=True))
    if ok:
        out.append(f"<details><summary>{len(ok)} ok port{'s' if len(ok) > 1 else ''}</summary>")
        out.append(_table(ok, runbook=False) + "</details>")
    return out


def _table(ports, runbook: bool) -> str:
    head = ["state", "code", "owner", "container", "published", "target", "sources", "reason"] + (
        ["runbook"] if runbook else []
    )
    rows = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for p in ports:
        b, v = p.binding, p.verdict
        cip = f"[{b.container_ip}]" if ":" in b.container_ip else b.container_ip or "-"
        cells = [
            state_link(v.state),
            f"<code>{e(v.code)}</code>",
            e(v.owner or "-"),  # whose rule decided: docker, docker-user, host
            e(b.container),
            e(f"{b.host_ip_display}:{b.host_port}/{b.protocol}"),
            e(f"{cip}:{b.container_port}"),
            e(sources(v)),  # public, restricted: the allowed prefixes, local, unknown
            rule_text(v.reason),
        ]
        if runbook:
            href = doc_url("runbook.md", RUNBOOK.get(v.state, ""))
            cells.append(f"<a href='{e(href)}'>what to do</a>")
        tds = "".join(f"<td>{c}</td>" for c in cells)
        rows.append(f"<tr class='port-{v.state}'>{tds}</tr>")
    return "".join(rows) + "</table>"


__all__ = ["COLOURS", "RUNBOOK", "status_page"]
