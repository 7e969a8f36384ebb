"""The benchmark's tables (text for the terminal, Markdown for docs/performance.md)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from statistics import median

from bench import fuzz

# docs/performance.md "Budget" (issue 14): seconds, ratios, MiB, percent of a core
BUDGET = {"cold": 0.5, "changed": 0.1, "cold_big": 1.0, "p99": 0.050, "rss": 100.0, "idle": 1.0,
          "detect": 1.0, "churn_cpu": 5.0, "churn_detect": 2.0}  # fmt: skip
BIG = (50000, 5000)  # the size whose cold own work has a budget of its own


def _cmd(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return "absent"
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr) else "?"


def machine() -> dict:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "iptables": _cmd(["iptables-nft", "--version"]), "python": platform.python_version(),
            "dockerd": _cmd(["dockerd", "--version"]), "load": os.getloadavg()[0]}  # fmt: skip


def figures(size: dict) -> dict:
    """The derived figures of one size: floor, our work cold/warm/changed, per step. A refresh
    told of changes by the change feed (worker "feed") reads no rules when nothing changed and
    one chain after a change: its own work is its time less what it read; every ratio is to
    the whole floor (`*-save` + Docker API), the issue's yardstick."""
    w, p = size["worker"], size.get("process", {})
    floor_save, floor_docker = sum(w["floor_save"].values()), w["floor_docker"]
    floor = floor_save + floor_docker
    st = w["stages"]
    render = (st["render"] or 0) + (st["gzip"] or 0)
    # a refresh whose ports show what the last one's did renders only the changed ports again
    again = (st.get("render_again") or st["render"] or 0) + (st["gzip"] or 0)
    if st.get("render_again_gz") is not None:  # the exposition gzips only the changed runs
        again = st["render_again_gz"]
    ch = w.get("changed") or {}
    fed = bool(ch.get("feed"))
    f = {"N": size["rules"], "M": w["bindings"], "docker": size["docker"],
         "floor_save": floor_save, "floor_docker": floor_docker, "floor": floor,
         "floor_chain": w.get("floor_chain"), "cold": w["cold"]["total"], "render": render,
         "fed": fed}  # fmt: skip
    f["ours_cold"] = w["cold"]["total"] - floor + render
    f["ours_warm"] = w["warm"]["total"] - (floor_docker if fed else floor) + again
    read_changed = (w.get("floor_chain") or 0) + floor_docker if fed else floor
    f["ours_changed"] = ch["total"] - read_changed + again if ch else None
    f["render_again"] = again
    f["cpu_cold"] = w["cold"]["timings"].get("cpu")
    f["cpu_changed"] = ch.get("timings", {}).get("cpu") if ch else None
    f["changed_ok"] = bool(ch) and ch["state_after_delete"] != "ok" and ch[
        "state_after_restore"] == "ok"  # fmt: skip
    for k in ("parse", "decode", "expect", "evaluate", "stale", "analyse", "rules_parsed"):
        f[k] = st.get(k)
    f["nft"] = w["cold"]["timings"].get("rules_nft")  # `nft -j list chains`: a read, but ours
    f["p99_16"] = p.get("scrape", {}).get("16", {}).get("p99")
    f["rss"] = p.get("peak_rss_mib")
    return f


def _ms(x) -> str:
    return "—" if x is None else f"{x * 1000:.0f}"


def _ratio(x, floor) -> str:
    return "—" if x is None else f"{x / floor:.2f}"


SIZE_COLS = ("N rules", "M bind", "docker", "floor save", "floor API", "floor chain",
             "ours cold", "÷floor", "ours warm", "÷floor", "ours 1 change", "÷floor",
             "CPU cold", "CPU 1 change", "nft list", "parse", "decode", "expect", "evaluate",
             "stale", "render+gz", "again+gz", "RSS MiB", "p99@16 ms")  # fmt: skip


def size_rows(results: dict) -> list[list[str]]:
    rows = []
    for size in results["sizes"]:
        f = figures(size)
        fl = f["floor"]
        rows.append([str(f["N"]), str(f["M"]), f["docker"], _ms(f["floor_save"]),
                     _ms(f["floor_docker"]), _ms(f["floor_chain"]), _ms(f["ours_cold"]),
                     _ratio(f["ours_cold"], fl), _ms(f["ours_warm"]), _ratio(f["ours_warm"], fl),
                     _ms(f["ours_changed"]), _ratio(f["ours_changed"], fl), _ms(f["cpu_cold"]),
                     _ms(f["cpu_changed"]), _ms(f["nft"]), _ms(f["parse"]), _ms(f["decode"]),
                     _ms(f["expect"]), _ms(f["evaluate"] if f["evaluate"] is not None
                                           else f["analyse"]), _ms(f["stale"]),
                     _ms(f["render"]), _ms(f["render_again"]),
                     f"{f['rss']:.0f}" if f["rss"] else "—",
                     _ms(f["p99_16"])])  # fmt: skip
    return rows


def _detect(d: dict | None) -> str:
    if not d:
        return "—"
    seen = [r for r in d["rounds"] if r["seconds"] is not None]
    missed = len(d["rounds"]) - len(seen)
    if not seen:
        return f"not seen ({missed} rounds)"
    hi = [r["seconds"] for r in seen]
    lo = [r["seconds"] - r["command"] for r in seen]
    more = f", {missed} not seen" if missed else ""
    return f"{median(lo):.2f}–{median(hi):.2f} s (max {max(hi):.2f} s, {len(hi)} rounds{more})"


def _worst(d: dict | None) -> float:
    rounds = (d or {}).get("rounds") or [{"seconds": None}]
    return max(float("inf") if r["seconds"] is None else r["seconds"] for r in rounds)


def _restore(d: dict) -> str:
    back = [r["restore_seconds"] for r in d["rounds"] if r.get("restore_seconds") is not None]
    return f"{median(back):.2f} s (max {max(back):.2f} s)" if back else "not seen"


def _size(results: dict, n: int, m: int) -> dict | None:
    return next((s for s in results["sizes"] if (s["rules"], s["bindings"]) == (n, m)
                 or (s["rules"], s["worker"]["bindings"]) == (n, m)), None)  # fmt: skip


def budget_rows(results: dict) -> list[list[str]]:
    """(item, figure, budget, holds)."""
    budget = tuple(results["args"]["budget"])
    size = _size(results, *budget)
    rows = []
    if size:
        f, p = figures(size), size["process"]
        rows += _churn_rows(p.get("churn"))
        for label, key, limit in (("our work / floor, cold refresh", "ours_cold", "cold"),
                                  ("our work / floor, one rule changed", "ours_changed",
                                   "changed")):  # fmt: skip
            if f[key] is not None:
                r = f[key] / f["floor"]
                rows.append([label, f"{r:.2f}", f"≤ {BUDGET[limit]}", _yes(r <= BUDGET[limit])])
        rows.append(["our work / floor, nothing changed", f"{f['ours_warm'] / f['floor']:.2f}",
                     "(none)", "—"])  # fmt: skip
    big = _size(results, *BIG)
    if big:
        cold = figures(big)["ours_cold"]
        rows.append([f"our work, cold refresh, {BIG[0]} × {BIG[1]}", f"{cold:.2f} s",
                     f"≤ {BUDGET['cold_big']:.0f} s", _yes(cold <= BUDGET["cold_big"])])  # fmt: skip
    if size:
        rows += _process_rows(results, size, budget)
    rows += _idle_rows(results)
    return rows


def _churn_rows(c: dict | None) -> list[list[str]]:
    if not c:
        return []
    ch, q = c["churn"], c["quiet"]
    rows = [[f"CPU under churn ({ch['changes_per_second']:.1f} changes/s, "
             f"{ch['seconds']:.0f} s; process tree)", f"{ch['percent_of_core']:.2f} % of a core",
             f"≤ {BUDGET['churn_cpu']:.0f} %", _yes(ch["percent_of_core"] <= BUDGET["churn_cpu"])],
            ["CPU, same size, nothing changing", f"{q['percent_of_core']:.2f} % of a core",
             "(none)", "—"],
            ["detection under churn (DNAT deleted → /metrics)", _detect(c["detect"]),
             f"≤ {BUDGET['churn_detect']:.0f} s",
             _yes(_worst(c["detect"]) <= BUDGET["churn_detect"])],
            ["the DNAT put back under churn → ok again", _restore(c["detect"]), "(none)", "—"]]  # fmt: skip
    return rows


def _process_rows(results: dict, size: dict, budget) -> list[list[str]]:
    p, rows = size["process"], []
    for k, sc in sorted(p.get("scrape", {}).items(), key=lambda kv: int(kv[0])):
        rows.append([f"/metrics p50 / p99, {k} scraper(s), gzip",
                     f"{sc['p50'] * 1000:.1f} / {sc['p99'] * 1000:.1f} ms", "p99 < 50 ms",
                     _yes(sc["p99"] < BUDGET["p99"])])  # fmt: skip
    if p.get("scrape_identity_16"):
        sc = p["scrape_identity_16"]
        rows.append(["/metrics p50 / p99, 16 scrapers, uncompressed",
                     f"{sc['p50'] * 1000:.1f} / {sc['p99'] * 1000:.1f} ms", "p99 < 50 ms",
                     _yes(sc["p99"] < BUDGET["p99"])])  # fmt: skip
    rss = max(
        s["process"]["peak_rss_mib"] or 0
        for s in results["sizes"]
        if s["rules"] <= budget[0] and s["worker"]["bindings"] <= budget[1] * 1.05
    )
    rows.append(["peak RSS of the exporter (sizes up to the budget's)", f"{rss:.0f} MiB",
                 "< 100 MiB", _yes(rss < BUDGET["rss"])])  # fmt: skip
    d = p.get("detect")
    if d:
        rows.append(["detection, nf_tables, quiet (rule deleted → /metrics)", _detect(d),
                     "≤ 1 s", _yes(_worst(d) <= BUDGET["detect"])])  # fmt: skip
    return rows


def _idle_rows(results: dict) -> list[list[str]]:
    rows = []
    idle = results.get("real", {}).get("idle")
    if idle:
        rows.append([f"idle CPU, {idle['bindings']} bindings, 15 s interval, real dockerd",
                     f"{idle['percent_of_core']:.2f} % of a core over {idle['seconds']:.0f} s",
                     "< 1 %", _yes(idle["percent_of_core"] < BUDGET["idle"])])  # fmt: skip
        d = idle.get("detect")
        if d:
            rows.append([f"detection, nf_tables, real dockerd, {idle['bindings']} bindings",
                         _detect(d), "≤ 1 s", _yes(_worst(d) <= BUDGET["detect"])])  # fmt: skip
    leg = results.get("legacy")
    if leg and leg["process"].get("detect"):
        rows.append(["detection, legacy (no notification: next 15 s refresh)",
                     _detect(leg["process"]["detect"]), "(none)", "—"])  # fmt: skip
    return rows


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def peer_rows(results: dict) -> list[list[str]]:
    leg = results.get("legacy")
    if not leg:
        return []
    w = leg["worker"]
    floor = w["floor_save"].get("iptables-legacy-save") or sum(w["floor_save"].values())
    f = figures({**leg, "docker": "fake"})
    rows = [["iptables-legacy-save alone (floor)", _ms(floor), "1.00"],
            ["docker-nat-exporter: refresh, cold (save + API + ours)", _ms(f["cold"]),
             _ratio(f["cold"], floor)]]  # fmt: skip
    pe = leg.get("peers")
    if pe:
        rows.append(
            [
                f"python-iptables: read every rule of nat+filter ({pe['iptc_rules']})",
                _ms(pe["iptc_read"]),
                _ratio(pe["iptc_read"], floor),
            ]
        )
        rows.append(
            [
                "docker-nat-exporter --iptables.reader iptc (read + parse)",
                _ms(pe["exporter_iptc_reader"]),
                _ratio(pe["exporter_iptc_reader"], floor),
            ]
        )
    md = leg.get("madron")
    if md and "scrape" in md:
        p50 = md["scrape"]["p50"]
        rows.append([f"madron iptables-exporter {md['version']}: one scrape (reads nat+filter)",
                     _ms(p50), _ratio(p50, floor)])  # fmt: skip
    elif md:
        rows.append(["madron iptables-exporter: not measured", md.get("error", "?"), ""])
    return rows


def _table(head, rows, md: bool) -> str:
    if md:
        out = ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*r) for r in [list(head), *rows])


def render(results: dict, md: bool) -> str:
    m = results["machine"]
    load = f", load average {m['load']:.1f} at the start" if "load" in m else ""
    parts = [f"machine: {m['nproc']} CPUs ({m['cpu']}), kernel {m['kernel']}, {m['iptables']}, "
             f"Python {m['python']}, {m['dockerd']}{load}; run took {results['seconds']:.0f} s",
             "", "Per size (ms; floor = `*-save` commands + Docker API calls, each alone; floor "
             "chain = `iptables-nft -S DOCKER`; ours = refresh − what it read + render + gzip, "
             "÷ the whole floor; CPU = the refresh's CPU time, its commands' included):", _table(SIZE_COLS, size_rows(results), md),
             "", "Budget:", _table(("item", "figure", "budget", "holds"),
                                   budget_rows(results), md)]  # fmt: skip
    peers = peer_rows(results)
    if peers:
        parts += ["", "Peers on the legacy backend, same rules (ms, ratio to the floor):",
                  _table(("reader", "ms", "÷ floor"), peers, md)]  # fmt: skip
    if results.get("fuzz"):
        parts += ["", "Fuzzing budget (tests/unit/test_fuzz.py properties, bench.fuzz):",
                  _table(("property", "examples", "s"), fuzz.rows(results["fuzz"]), md)]  # fmt: skip
    return "\n".join(parts) + "\n"


def main() -> None:
    """python -m bench.report RESULTS.json [--markdown]: the tables of a saved run again."""
    import json
    import sys

    with open(sys.argv[1]) as f:
        results = json.load(f)
    print(render(results, md="--markdown" in sys.argv[2:]), end="")


def text(results: dict) -> str:
    return render(results, md=False)


def markdown(results: dict) -> str:
    return render(results, md=True)


if __name__ == "__main__":
    main()
