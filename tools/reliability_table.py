"""Regenerate the results table of docs/reliability.md from a reliability test run.

    RELIABILITY_OUT=/tmp/rel.jsonl python3 -m pytest tests/unit/test_fuzz.py \
        tests/kernel/test_faults.py tests/kernel/test_load.py tests/lab/test_readonly.py
    RELIABILITY_OUT=/tmp/rel.jsonl python3 -m bench.fuzz
    python3 tools/reliability_table.py /tmp/rel.jsonl docs/reliability.md

The tests append one JSON object per finding (tests/support/faultkit.record): section, what was
tried, what happened, the test's node id (or a `reproduce` command), and figures. The table
replaces everything between the `<!-- results:begin -->` and `<!-- results:end -->` markers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
SECTIONS = (
    ("input", "Hostile input"),
    ("fault", "Faults injected"),
    ("load", "Load"),
    ("privilege", "Least privilege and read-only"),
    ("cardinality", "Cardinality"),
)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _figures(figures: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in figures.items())


def table(rows: list[dict]) -> str:
    """Markdown: one table per section, rows in the order the tests ran, duplicates merged."""
    seen, out = set(), []
    for key, title in SECTIONS:
        mine = [r for r in rows if r["section"] == key]
        if not mine:
            continue
        out += [f"### {title}", "", "| tried | what happened | figures | reproduce |",
                "|---|---|---|---|"]  # fmt: skip
        for r in mine:
            ident = (r["section"], r["tried"], r["test"])
            if ident in seen:
                continue
            seen.add(ident)
            repro = f"`python3 -m pytest '{r['test']}'`" if r["test"] else ""
            if r.get("reproduce"):
                repro = f"`{r['reproduce']}`"
            out.append(f"| {_cell(r['tried'])} | {_cell(r['outcome'])} | "
                       f"{_cell(_figures(r.get('figures') or {}))} | {repro} |")  # fmt: skip
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def splice(document: str, generated: str) -> str:
    if BEGIN not in document or END not in document:
        raise SystemExit(f"the document has no {BEGIN} ... {END} markers")
    head, rest = document.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{generated}{END}{tail}"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    results, doc = Path(argv[0]), Path(argv[1])
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    if not rows:
        print(f"{results}: no results (was RELIABILITY_OUT set for the run?)", file=sys.stderr)
        return 1
    doc.write_text(splice(doc.read_text(), table(rows)))
    print(f"{doc}: {len(rows)} results")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
