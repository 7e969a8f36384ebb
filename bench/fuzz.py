"""The fuzzing budget as a report: the examples each Hypothesis property of
tests/unit/test_fuzz.py ran, and how long it took.

    python -m bench.fuzz [--examples N] [--json]

`python -m bench` runs it as one of its sections (--fuzz-examples). The properties run here
exactly as pytest runs them (the test functions with their own @settings); --examples N
raises each budget to at least N, like DNE_FUZZ_EXAMPLES for pytest. With RELIABILITY_OUT set,
the counts also go to the table of docs/reliability.md (tools/reliability_table.py). Needs no
root.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from bench.proc import REPO

TRIED = "Hypothesis examples run (set DNE_FUZZ_EXAMPLES for more)"
OUTCOME = "no exception, no definite verdict from a garbled line"


def run_properties(examples: int) -> dict:
    """Run every property of test_fuzz in this process: {property: {seconds, examples}}."""
    if examples:
        os.environ["DNE_FUZZ_EXAMPLES"] = str(examples)  # read when test_fuzz is imported
    sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "unit")]
    import test_fuzz

    out = {}
    for name, fn in vars(test_fuzz).items():
        if not getattr(fn, "is_hypothesis_test", False):
            continue
        before = dict(test_fuzz.COUNTS)
        started = time.monotonic()
        fn()
        counts = {k: v - before.get(k, 0) for k, v in test_fuzz.COUNTS.items()}
        out[name] = {"seconds": round(time.monotonic() - started, 2),
                     "examples": {k: v for k, v in counts.items() if v}}  # fmt: skip
    return out


def record(properties: dict) -> None:
    """One row for docs/reliability.md in $RELIABILITY_OUT (as tests/support/faultkit.record)."""
    path = os.environ.get("RELIABILITY_OUT")
    if not path:
        return
    figures = {k: v for p in properties.values() for k, v in p["examples"].items()}
    row = {"section": "input", "tried": TRIED, "outcome": OUTCOME, "test": "",
           "reproduce": "python3 -m bench.fuzz", "figures": figures, "at": time.time()}  # fmt: skip
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")


def measure(examples: int = 0, timeout: float = 3600) -> dict:
    """Run this module in a fresh interpreter (the bench's own process stays clean)."""
    argv = [sys.executable, "-m", "bench.fuzz", "--json", "--examples", str(examples)]
    r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)  # fmt: skip
    if r.returncode != 0:
        raise RuntimeError(f"bench.fuzz failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return json.loads(r.stdout)


def rows(properties: dict) -> list[list[str]]:
    """Table rows: property, examples by kind, seconds."""
    return [[name.removeprefix("test_"),
             ", ".join(f"{k}={v}" for k, v in p["examples"].items()) or "—",
             f"{p['seconds']:.1f}"] for name, p in properties.items()]  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=0, help="at least this many per property")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    a = ap.parse_args(argv)
    properties = run_properties(a.examples)
    record(properties)
    if a.json:
        print(json.dumps(properties))
    else:
        for name, kinds, seconds in rows(properties):
            print(f"{name}: {kinds} ({seconds} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
