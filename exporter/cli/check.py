"""`docker-nat-exporter check`: one snapshot, live or from saved files, printed."""

from __future__ import annotations

import os
import shutil
import sys

from exporter.cli.report import exit_code, to_json
from exporter.cli.table import render_table
from exporter.serve.gcpause import gc_paused
from exporter.serve.refresh import RefreshOptions, read_host
from exporter.serve.snapshot import assess
from exporter.serve.state import RefreshState
from exporter.sources.saved import read_saved, save_state
from exporter.summary import diagnostic_lines


def run_check(ns, opts: RefreshOptions) -> int:
    files = (ns.iptables_save, ns.ip6tables_save, ns.nft_ruleset)
    if ns.docker_state or any(files) or ns.ipset_save:
        readings = read_saved(ns.docker_state, *files, ipsets=ns.ipset_save)
    else:
        readings = read_host(opts, RefreshState())
        if ns.save_docker_state:
            save_state(ns.save_docker_state, readings)
    with gc_paused():
        snap = assess(readings, dict(opts.clients) or None)
    if ns.json:  # errors and notes are in the document
        sys.stdout.write(to_json(snap))
        return exit_code(snap)
    for line in diagnostic_lines(snap):
        print(line, file=sys.stderr)
    sys.stdout.write(render_table(snap, table_width()))
    return exit_code(snap)


def table_width() -> int | None:
    """The terminal's width when stdout is one (or COLUMNS says); None for pipes and files."""
    if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit():
        return shutil.get_terminal_size().columns
    return None
