"""The benchmark harness (`python -m bench`, docs/performance.md) at a tiny size, so it cannot rot.

It asserts that one run produces every figure of the report, and that the cache it measures
never serves a changed rule: after one DNAT rule is deleted the port is no longer `ok`, and
after it is put back it is `ok` again. No timing is asserted (figures belong in benchmarks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.util import require_lab

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ARGS = ["--sizes", "300x10,2000x40", "--budget", "2000x40", "--real-max", "10",
        "--idle-bindings", "4", "--idle-seconds", "2", "--requests", "3", "--repeat", "1",
        "--detect-rounds", "1", "--churn-seconds", "2"]  # fmt: skip
STEPS = ("parse", "decode", "expect", "evaluate", "stale", "render", "gzip")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[dict, str]:
    require_lab("legacy")
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    p = subprocess.run(
        [sys.executable, "-m", "bench", *ARGS, "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"},
    )
    assert p.returncode == 0, p.stderr[-4000:]
    return json.loads(out.read_text()), p.stdout


def _worker_complete(w: dict) -> None:
    assert w["floor_save"] and all(v > 0 for v in w["floor_save"].values())
    assert w["floor_docker"] > 0
    for phase in ("cold", "warm"):
        assert w[phase]["total"] > 0 and "analyse" in w[phase]["timings"]
    for step in STEPS:
        assert w["stages"][step] is not None and w["stages"][step] > 0, step
    assert w["states"] == {"ok": w["bindings"]}
    ch = w["changed"]
    assert ch["state_after_delete"] not in (None, "ok")  # the cache did not hide the change
    assert ch["state_after_restore"] == "ok"


def test_every_size_has_every_figure(run):
    results, _ = run
    sizes = {(s["rules"], s["docker"]): s for s in results["sizes"]}
    assert set(sizes) == {(300, "real"), (2000, "fake")}
    for s in sizes.values():
        _worker_complete(s["worker"])
        assert s["process"]["peak_rss_mib"] > 0
        assert s["process"]["scrape"]["16"]["p99"] > 0
    budget = sizes[(2000, "fake")]
    assert budget["worker"]["bindings"] == 40
    assert set(budget["process"]["scrape"]) == {"1", "16"}
    assert budget["process"]["scrape_identity_16"]["statuses"] == {"200": 3 * 16}
    assert budget["process"]["detect"]["rounds"][0]["seconds"] > 0
    churn = budget["process"]["churn"]  # an INPUT rule added and deleted 10 times a second
    assert churn["churn"]["changes_per_second"] > 0 and churn["churn"]["cpu_seconds"] >= 0
    assert churn["detect"]["rounds"][0]["seconds"] > 0  # seen, not merely timed out


def test_idle_detection_legacy_and_peers(run):
    results, _ = run
    idle = results["real"]["idle"]
    assert idle["bindings"] == 4 and idle["seconds"] >= 2 and idle["cpu_seconds"] >= 0
    assert idle["detect"]["rounds"][0]["restore_seconds"] > 0
    leg = results["legacy"]
    _worker_complete(leg["worker"])
    assert "iptables-legacy-save" in leg["worker"]["floor_save"]
    assert leg["process"]["detect"]["rounds"][0]["seconds"] > 0
    assert leg["peers"]["iptc_rules"] > 2000 and leg["peers"]["iptc_read"] > 0
    assert leg["peers"]["exporter_iptc_reader"] > 0
    madron = leg["madron"]  # a figure, or exactly why there is none (PyPI unreachable, ...)
    assert madron.get("scrape", {}).get("p50", 0) > 0 or madron["error"]


def test_report_prints_every_table(run):
    results, text = run
    for heading in ("Per size", "Budget:", "Peers on the legacy backend", "machine:"):
        assert heading in text
    for item in ("our work / floor, cold refresh", "/metrics p50 / p99, 16 scraper(s)",
                 "CPU under churn", "detection under churn",
                 "peak RSS", "detection, nf_tables", "idle CPU", "detection, legacy",
                 "python-iptables"):  # fmt: skip
        assert item in text, item
    assert results["machine"]["nproc"] >= 1 and results["machine"]["kernel"]
