"""`check`'s table: the summary first, then the ports that are not ok, reasons fitted to a width.

Rows are sorted worst first. With a width (a terminal), the reason of a port that is not ok wraps
onto continuation lines, whole; an ok port's reason stays on one line: it first loses the quoted
rule texts (the position stays: `nat/DOCKER #6`), then is cut with "…". When the columns leave
less than MIN_REASON characters, reasons go on indented lines under their row. `check --json`
always keeps the full text.
"""

from __future__ import annotations

import re
import textwrap

from exporter.path.verdict import SEVERITY
from exporter.serve.snapshot import Snapshot
from exporter.summary import fact_lines, sources, summary_line

HEADER = ("STATE", "CONTAINER", "NETWORK", "PUBLISHED", "TARGET", "SOURCES", "REASON")
MIN_REASON = 40
MAX_SOURCES = 56  # in a terminal, a longer list of allowed sources is cut (--json has it all)
INDENT = "    "


def render_table(s: Snapshot, width: int | None = None) -> str:
    """The table; `width` None: no fitting (a pipe or a file)."""
    out = [summary_line(s), *fact_lines(s)]
    if s.daemon is None:
        return "\n".join(out) + "\n"
    out.append("")
    ports = sorted(s.ports, key=lambda p: SEVERITY[p.verdict.state])  # stable: ties keep order
    if not ports:
        out.append("No published ports.")
    else:
        out += _rows([_cells(p) for p in ports], width)
    missing = [j for j in s.jumps if not j.present]
    out.append("")
    out.append(f"Jumps: {len(s.jumps) - len(missing)}/{len(s.jumps)} present")
    out += [f"  MISSING {j.expected.family}: {j.expected.line}" for j in missing]
    out += [
        f"  missing {e.expected.family}: {e.expected.line}" for e in s.bridge_rules if not e.present
    ]
    out.append(f"Stale rules: {len(s.stale)}")
    out += [f"  {r.family} {r.backend} {r.ref}: {r.text}" for r in s.stale]
    return "\n".join(out) + "\n"


def _cells(p) -> tuple[str, ...]:
    b = p.binding
    cip = f"[{b.container_ip}]" if ":" in b.container_ip else b.container_ip or "-"
    published = f"{b.host_ip_display}:{b.host_port}/{b.protocol}"
    target = f"{cip}:{b.container_port}"
    v = p.verdict
    return (v.state, b.container, b.network, published, target, sources(v), v.reason)


def _rows(rows: list[tuple[str, ...]], width: int | None) -> list[str]:
    if width is not None:
        rows = [(*r[:5], fit(r[5], MAX_SOURCES), r[6]) for r in rows]
    rows = [HEADER, *rows]
    last = len(HEADER) - 1  # the reason: the rest of the line, or lines of its own
    widths = [max(len(r[i]) for r in rows) for i in range(last)]
    lead = [("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  ") for r in rows]
    if width is None:
        return [(ld + r[last]).rstrip() for ld, r in zip(lead, rows, strict=True)]
    beside = width - len(lead[0]) >= MIN_REASON
    out = [(lead[0] + HEADER[last]) if beside else lead[0].rstrip()]
    pad = " " * len(lead[0]) if beside else INDENT
    room = width - len(pad)
    for ld, r in zip(lead[1:], rows[1:], strict=True):
        if r[0] == "ok":
            text = [fit(r[last], room)]
        else:
            text = textwrap.wrap(r[last], room, break_on_hyphens=False) or [""]
        if beside:
            out += [ld + text[0], *(pad + t for t in text[1:])]
        else:
            out += [ld.rstrip(), *(pad + t for t in text)]
    return out


def fit(text: str, room: int | None) -> str:
    """`text` in at most `room` characters (None: no limit)."""
    if room is None or len(text) <= room:
        return text
    short = re.sub(r" `[^`]*`", "", text)  # the rule's text; its position stays
    if len(short) <= room:
        return short
    return short[: max(room - 1, 0)] + "…"
