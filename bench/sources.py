"""The cost of source classes: the evaluate step with source prefixes in DOCKER-USER (issue 13).

    python -m bench.sources [--rules 10000] [--bindings 1000] [--prefixes 50] [--repeat 5]
                            [--product DIR]

In-process, no root. bench.gen's Docker 20.10 host with `--bindings` bindings and `--rules` nat
rules, then DOCKER-USER holding `--prefixes` distinct source prefixes, three ways:

  none        DOCKER-USER as Docker leaves it (the reference)
  allow       -i eth0 -s P -j RETURN per prefix, then -i eth0 -j DROP (an allow-list)
  allow+acc   -i eth0 -s P -j ACCEPT per prefix, then -i eth0 -j DROP
  block       -s P -j DROP per prefix (a blocklist)

Each row: analyse()'s "evaluate" timing (every binding's walk) in CPU seconds of this process
(other work on a shared machine does not count), min of --repeat runs on the same lazily
parsed rules (chain indexes kept, as in a refresh where the rules did not change), and the
states found. `--product DIR` measures the exporter package of another tree (an older
commit: "today's" figure) with this tree's bench.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from unittest import mock

from bench import gen

ADDRS = (("lo", "127.0.0.1"), ("eth0", gen.HOST_ADDR))
ANCHOR = "-A DOCKER-USER -j RETURN"


def user_rules(kind: str, prefixes: int) -> list[str]:
    nets = [f"198.{51 + i // 256}.{i % 256}.0/24" for i in range(prefixes)]
    if kind == "allow":
        return [f"-A DOCKER-USER -i eth0 -s {n} -j RETURN" for n in nets] + [
            "-A DOCKER-USER -i eth0 -j DROP"
        ]
    if kind == "allow+acc":
        return [f"-A DOCKER-USER -i eth0 -s {n} -j ACCEPT" for n in nets] + [
            "-A DOCKER-USER -i eth0 -j DROP"
        ]
    if kind == "block":
        return [f"-A DOCKER-USER -s {n} -j DROP" for n in nets]
    return []


def scenario(text: str, kind: str, prefixes: int) -> str:
    extra = user_rules(kind, prefixes)
    return text.replace(ANCHOR, "\n".join([*extra, ANCHOR]), 1) if extra else text


def measure(state, rs, repeat: int) -> tuple[float, dict]:
    from exporter.path.analysis import analyse
    from exporter.rules.family import FamilyRules

    rules = {"ipv4": FamilyRules("ipv4", (rs,)), "ipv6": FamilyRules("ipv6", ())}
    best, states = None, {}
    for _ in range(repeat):
        timings: dict[str, float] = {}
        with mock.patch("time.perf_counter", time.process_time):  # CPU time, not wall
            a = analyse(state, rules, ADDRS, None, timings)
        took = timings["evaluate"]
        best = took if best is None or took < best else best
        states = {}
        for p in a.ports:
            states[p.verdict.state] = states.get(p.verdict.state, 0) + 1
    return best, states


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.sources", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--rules", type=int, default=10_000)
    ap.add_argument("--bindings", type=int, default=1000)
    ap.add_argument("--prefixes", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--product", help="import the exporter package from this tree")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    a = ap.parse_args(argv)
    if a.product:
        sys.path.insert(0, a.product)
    from exporter.docker.decode import DaemonHints, decode_state
    from exporter.rules.lazysave import parse_save_lazy

    doc = gen.docker_json(a.bindings)
    text = gen.ruleset_text(doc, a.rules)
    state = decode_state(doc["containers"], doc["networks"], doc["info"], doc["version"],
                         DaemonHints(cmdline=("/usr/sbin/dockerd",)))  # fmt: skip
    rows = []
    for kind in ("none", "allow", "allow+acc", "block"):
        rs = parse_save_lazy(scenario(text, kind, a.prefixes), "ipv4", "nf_tables")
        t = time.perf_counter()
        took, states = measure(state, rs, a.repeat)
        rows.append({"scenario": kind, "evaluate_ms": round(took * 1000, 1), "states": states,
                     "wall_s": round(time.perf_counter() - t, 1)})  # fmt: skip
    if a.json:
        print(json.dumps({"args": vars(a), "rows": rows}, indent=1))
        return 0
    print(f"{a.bindings} bindings, {a.rules} nat rules, {a.prefixes} prefixes in DOCKER-USER")
    for r in rows:
        print(f"  {r['scenario']:<10} evaluate {r['evaluate_ms']:8.1f} ms   states {r['states']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
