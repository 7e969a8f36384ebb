"""Each optimisation of the refresh's own work alone, in-process (no root, no namespace):

    python -m bench.ablation [--rules 50000] [--bindings 1000] [--repeat 3]

On bench.gen's text and Docker JSON, min of --repeat runs (ms):
  parse, old tokenizer   iptsave.parse_save with the regex/shlex tokenizer only (as before)
  parse, eager           iptsave.parse_save (every rule of every chain)
  parse, lazy            lazysave: structure checks + the chains one analysis reads
  analyse, cold          nothing cached: expected rules built, chains indexed and keyed
  analyse, warm          expected rules cached, chain indexes/keys kept (an unchanged chain)
  refresh, 1 rule gone   lazy parse reusing the unchanged chains + analysis
  refresh, unchanged     same text and state: Ruleset and Analysis served from the cache
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

from bench import gen
from exporter.docker.decode import DaemonHints, decode_state
from exporter.expect import model as expected
from exporter.path.analysis import analyse
from exporter.rules import iptsave, ruleline
from exporter.rules.family import FamilyRules
from exporter.rules.lazysave import parse_save_lazy
from exporter.serve.state import RefreshState

ADDRS = (("lo", "127.0.0.1"), ("eth0", gen.HOST_ADDR))


def best(fn, repeat: int, setup=lambda: None) -> tuple[float, object]:
    out = None
    for _ in range(repeat):
        setup()
        t = time.perf_counter()
        r = fn()
        took = time.perf_counter() - t
        out = (took, r) if out is None or took < out[0] else out
    return out


def cold() -> None:
    """Forget what a refresh remembers across refreshes (expected rules, rule lines read)."""
    expected.make.cache_clear()
    ruleline.forget()


def rules(rs) -> dict:
    return {"ipv4": FamilyRules("ipv4", (rs,)), "ipv6": FamilyRules("ipv6", ())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", type=int, default=50_000)
    ap.add_argument("--bindings", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    doc = gen.docker_json(a.bindings)
    text = gen.ruleset_text(doc, a.rules)
    state = decode_state(doc["containers"], doc["networks"], doc["info"], doc["version"],
                         DaemonHints(cmdline=("/usr/sbin/dockerd",)))  # fmt: skip
    rows = []
    with mock.patch.object(ruleline, "_quoted_words", lambda line: None):
        rows.append(("parse, old tokenizer", best(
            lambda: iptsave.parse_save(text, "ipv4", "nf_tables"), a.repeat)[0]))  # fmt: skip
    rows.append(("parse, eager", best(lambda: iptsave.parse_save(text, "ipv4", "nf_tables"),
                                      a.repeat)[0]))  # fmt: skip
    probe = parse_save_lazy(text, "ipv4", "nf_tables")
    analyse(state, rules(probe), ADDRS)
    read = {t: list(tb.chains.parsed) for t, tb in probe.tables.items()}

    def lazy():
        rs = parse_save_lazy(text, "ipv4", "nf_tables")
        for t, names in read.items():
            for n in names:
                rs.tables[t].chains[n]
        return rs

    took, _ = best(lazy, a.repeat, ruleline.forget)
    rows.append(("parse, lazy", took))
    fresh = rules(lazy())
    rows.append(("analyse, cold", best(lambda: analyse(state, rules(lazy()), ADDRS), a.repeat,
                                       cold)[0] - took))  # fmt: skip
    rows.append(("analyse, warm", best(lambda: analyse(state, fresh, ADDRS), a.repeat)[0]))
    dnat = next(ln for ln in text.splitlines() if ln.startswith("-A DOCKER ") and "DNAT" in ln)
    changed = text.replace(dnat + "\n", "")

    def one_gone():
        new = parse_save_lazy(changed, "ipv4", "nf_tables", fresh["ipv4"].rulesets[0])
        return analyse(state, rules(new), ADDRS)

    rows.append(("refresh, 1 rule gone", best(one_gone, a.repeat)[0]))
    cache = RefreshState()
    cache.analyse(state, fresh, ADDRS, None)
    rows.append(("refresh, unchanged", best(lambda: cache.analyse(state, fresh, ADDRS, None),
                                            a.repeat)[0]))  # fmt: skip
    print(f"{a.rules} rules, {a.bindings} bindings (ms, min of {a.repeat}):")
    for label, sec in rows:
        print(f"  {label:<22} {sec * 1000:8.1f}")


if __name__ == "__main__":
    main()
