"""`docker-nat-exporter check`: one snapshot, live or from saved files, printed."""

from __future__ import annotations

import sys

from exporter.cli.report import exit_code, render_table, to_json
from exporter.serve.refresh import RefreshOptions, read_host
from exporter.serve.snapshot import assess
from exporter.serve.state import RefreshState
from exporter.sources.saved import read_saved, save_state


def run_check(ns, opts: RefreshOptions) -> int:
    files = (ns.iptables_save, ns.ip6tables_save, ns.nft_ruleset)
    if ns.docker_state or any(files):
        readings = read_saved(ns.docker_state, *files)
    else:
        readings = read_host(opts, RefreshState())
        if ns.save_docker_state:
            save_state(ns.save_docker_state, readings)
    snap = assess(readings, dict(opts.clients) or None)
    sys.stdout.write(to_json(snap) if ns.json else render_table(snap))
    return exit_code(snap)
