"""Other readers on the same legacy rules, run inside the namespace by bench.run:

    python -m bench.peers [--repeat 3]

python-iptables (libiptc) reading every rule of the legacy nat and filter tables with its
matches and target, and this exporter's own `--iptables.reader iptc`, against
`iptables-legacy-save` alone. Prints JSON (seconds, min of --repeat).
"""

from __future__ import annotations

import argparse
import json
import sys

from bench.worker import best
from exporter.sources.run import run


def iptc_read() -> int:
    import iptc

    n = 0
    for name in ("nat", "filter"):
        table = iptc.Table(name)
        table.refresh()
        for chain in table.chains:
            for rule in chain.rules:
                _ = (rule.src, rule.dst, rule.protocol, rule.in_interface, rule.out_interface)
                for m in rule.matches:
                    m.get_all_parameters()
                if rule.target is not None:
                    rule.target.get_all_parameters()
                n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    out = {"floor_legacy_save": best(lambda: run(["iptables-legacy-save"], 120), a.repeat)[0]}
    out["iptc_read"], out["iptc_rules"] = best(iptc_read, a.repeat)
    from exporter.sources.iptc_reader import read_legacy_iptc

    out["exporter_iptc_reader"], _ = best(lambda: read_legacy_iptc("ipv4"), a.repeat)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
