"""Faults injected into the REAL exporter process (tests/support/exporterproc.py) and the real refresh.

Each test runs `python -m exporter` in a throwaway network namespace holding the Docker 20.10
fixture rules (loaded with the real iptables-nft-restore), against a fake Engine API on a unix
socket (tests/support/faultkit.py) or a real dockerd (lab tests), then breaks one source. Throughout:
/metrics answers 200, a port is never `ok` while the source its verdict needs is down
(loopback bindings are `ok` by design, without rules), and the exporter recovers by itself
once the fault is removed. Findings go to $RELIABILITY_OUT for docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.exporterproc import ExporterProc, Scrape, select, states
from support.faultkit import (
    FIX,
    FakeDocker,
    Overlay,
    dead_socket,
    docker_bridges,
    fake_bin,
    live_after,
    printing,
    record,
    run,
    save_tools,
    wrapped_exporter,
)
from support.netns import Netns, fresh_name, namespace
from support.util import require_or_skip

DEADLINE = 20.0
IPTABLES_V4 = (FIX / "d2010_iptables.txt").read_text()
IPTABLES_V6 = (FIX / "d2010_ip6tables.txt").read_text()
SAVE_NAMES = ("iptables-nft-save", "iptables-save", "ip6tables-nft-save", "ip6tables-save",
              "iptables-legacy-save", "ip6tables-legacy-save")  # fmt: skip


def require_root_tools(*tools: str) -> None:
    missing = [t for t in ("ip", "nsenter", "unshare", "curl", *tools) if not shutil.which(t)]
    require_or_skip(os.geteuid() == 0, "needs root (network and mount namespaces)")
    require_or_skip(not missing, f"missing: {', '.join(missing)}")


# ---------------------------------------------------------------- reading the exposition


def source_up(body: str, source: str) -> float | None:
    found = select(body, "docker_nat_source_up", source=source)
    return found[0].value if found else None


def loopback(host_ip: str) -> bool:
    return host_ip.startswith("127.") or host_ip == "::1"


def assert_honest(s: Scrape) -> None:
    """200, and no port says ok when a source its verdict needs is down."""
    assert s.status == 200, (s.status, s.error)
    ports = states(s.body)
    if source_up(s.body, "docker") == 0:
        assert ports == {}, f"Docker unreadable but ports exported: {ports}"
    for family, source in (("ipv4", "iptables"), ("ipv6", "ip6tables")):
        if source_up(s.body, source) == 0:
            lying = {k: v for k, v in ports.items()
                     if k[1] == family and v != "unknown" and not loopback(k[2])}  # fmt: skip
            assert lying == {}, f"{source} unreadable yet judged: {lying}"


def honest(check: Callable[[Scrape], bool]) -> Callable[[Scrape], bool]:
    """A wait_for predicate that also asserts the invariants on every scrape on the way."""

    def predicate(s: Scrape) -> bool:
        assert_honest(s)
        return check(s)

    return predicate


def healthy(s: Scrape) -> bool:
    return (source_up(s.body, "docker") == 1 and source_up(s.body, "iptables") == 1
            and states(s.body).get(("web", "ipv4", "0.0.0.0", "18080")) == "ok")  # fmt: skip


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def netns() -> Iterator[Netns]:
    """A namespace holding Docker 20.10's rules, as if dockerd had written them."""
    require_root_tools("iptables-nft-restore", "ip6tables-nft-restore")
    with namespace(fresh_name("dnerel")) as ns:
        ns.run(["iptables-nft-restore"], input=IPTABLES_V4)
        ns.run(["ip6tables-nft-restore"], input=IPTABLES_V6)
        ns.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])
        docker_bridges(ns)
        yield ns


@contextlib.contextmanager
def docker_v4_namespace(prefix: str) -> Iterator[Netns]:
    """A namespace `prefix`… holding Docker 20.10's IPv4 rules and its bridges (up, with their
    routes), IPv4 forwarding on, as dockerd leaves them."""
    require_root_tools("iptables-nft-restore")
    with namespace(fresh_name(prefix)) as ns:
        ns.run(["iptables-nft-restore"], input=IPTABLES_V4)
        docker_bridges(ns)
        ns.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        yield ns


@pytest.fixture
def docker() -> Iterator[FakeDocker]:
    with FakeDocker() as fake:
        yield fake


@pytest.fixture
def fakes() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix=f"dnerel-fakes{os.getpid()}-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def exporters() -> Iterator[list]:
    started: list = []
    yield started
    for p in started:
        p.stop()
        print(f"\n--- exporter exit {p.returncode}, stderr tail:\n{p.stderr()[-3000:]}")


def start(exporters: list, ns: Netns, docker_url: str, *flags: str, fakes: Path | None = None,
          prefix: list[str] | None = None, interval: str = "1s") -> ExporterProc:  # fmt: skip
    path = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    env = {"PATH": f"{fakes}:{path}" if fakes else path}
    args = ("--docker.host", docker_url, "--refresh.interval", interval,
            "--docker.timeout", "2s", "--iptables.timeout", "2s", "--log.level", "debug", *flags)  # fmt: skip
    if prefix:
        proc = wrapped_exporter(ns.name, prefix, *args, env=env)
    else:
        proc = ExporterProc(ns.name, *args, env=env)
    exporters.append(proc)
    proc.start().wait_for(lambda s: s.status == 200, 30, "/-/healthy", "listening")
    return proc


def timed_get(proc: ExporterProc) -> float:
    t = time.monotonic()
    s = proc.get()
    assert_honest(s)
    return time.monotonic() - t


# ---------------------------------------------------------------- Docker faults


@pytest.mark.parametrize("fault", ["missing", "refused", "closes", "stalls"])
def test_docker_fault_is_reported_and_recovers(netns, exporters, fault: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix=f"dnerel-sock{os.getpid()}-"))
    fake = FakeDocker(socket_path=folder / "docker.sock")
    try:
        with contextlib.ExitStack() as stack:
            if fault == "refused":
                stack.enter_context(dead_socket(folder / "docker.sock"))
            elif fault in ("closes", "stalls"):
                fake.set_mode("close" if fault == "closes" else "stall")
                fake.start()
            exp = start(exporters, netns, fake.url)
            _, down = exp.wait_for(honest(lambda s: source_up(s.body, "docker") == 0),
                                   DEADLINE, what="source_up docker 0")  # fmt: skip
            assert source_up(down.body, "iptables") == 1
            says = {"missing": "does not exist", "refused": "refused the connection",
                    "closes": "Docker at", "stalls": "timed out"}[fault]  # fmt: skip
            exp.wait_for(lambda s: says in exp.stderr(), DEADLINE, what=f"log says {says!r}")
            slowest = max(timed_get(exp) for _ in range(5))  # scrapes never wait for Docker
            line = next(ln for ln in exp.stderr().splitlines() if "source docker down" in ln)
        # the fault goes away: a working daemon appears on the same socket path
        fake.set_mode("serve")
        if not fake.started:
            fake.start()
        waited, _ = exp.wait_for(honest(healthy), DEADLINE, what="recovered")
        assert exp.alive and "Traceback" not in exp.stderr()
        record("fault", f"Docker socket {fault}", f"source_up docker 0, no port series, log: "
               f"{line.split('msg=', 1)[-1][:140]}; recovered by itself",
               slowest_scrape_s=round(slowest, 3), recovery_s=round(waited, 2))  # fmt: skip
    finally:
        fake.close()
        shutil.rmtree(folder, ignore_errors=True)


def test_docker_events_stream_dropped_is_reestablished(netns, docker, exporters) -> None:
    exp = start(exporters, netns, docker.url, interval="120s")
    exp.wait_for(honest(healthy), DEADLINE, what="healthy")
    assert docker.stream_opened.wait(DEADLINE)
    mark = len(exp.stderr())
    docker.emit("start")
    exp.wait_for(lambda s: "refresh requested: docker container start" in exp.stderr()[mark:],
                 DEADLINE, what="event seen")  # fmt: skip

    dropped = docker.drop_events()
    t = time.monotonic()
    assert dropped >= 1
    exp.wait_for(lambda s: "docker events stream re-established" in exp.stderr()[mark:],
                 DEADLINE, what="stream re-established")  # fmt: skip
    reconnect = time.monotonic() - t
    assert docker.stream_opened.wait(DEADLINE)
    mark = len(exp.stderr())
    docker.emit("die")
    exp.wait_for(lambda s: "refresh requested: docker container die" in exp.stderr()[mark:],
                 DEADLINE, what="event on the new stream")  # fmt: skip
    assert_honest(exp.get())
    record("fault", "Docker events connection cut by the daemon side",
           "re-established with backoff; events on the new stream trigger refreshes",
           reconnect_s=round(reconnect, 2))  # fmt: skip


# ---------------------------------------------------------------- iptables faults


def test_save_failing_with_permission_denied(netns, docker, fakes, exporters) -> None:
    denied = ("iptables-nft-save v1.8.9 (nf_tables): Could not fetch rule set generation id: "
              "Permission denied (you must be root)")  # fmt: skip
    save_tools(fakes, printing("", denied, 1))
    exp = start(exporters, netns, docker.url, fakes=fakes)
    _, s = exp.wait_for(honest(lambda s: source_up(s.body, "iptables") == 0
                               and source_up(s.body, "docker") == 1), DEADLINE, what="iptables 0")  # fmt: skip
    assert states(s.body)[("web", "ipv4", "0.0.0.0", "18080")] == "unknown"
    exp.wait_for(lambda s: "needs CAP_NET_ADMIN" in exp.stderr(), DEADLINE, what="hint logged")
    for name in SAVE_NAMES:
        (fakes / name).unlink(missing_ok=True)
    waited, _ = exp.wait_for(honest(healthy), DEADLINE, what="recovered")
    record("fault", "iptables-nft-save exits 1: Permission denied",
           "source_up iptables/ip6tables 0, ports unknown, log names CAP_NET_ADMIN; recovered",
           recovery_s=round(waited, 2))  # fmt: skip


def test_save_hanging_times_out_and_leaks_nothing(netns, docker, fakes, exporters) -> None:
    marker = f"{300 + os.getpid() % 1000}.{os.getpid()}"
    # a wrapper script whose child does the work (and holds the output pipe), as some distros'
    # iptables wrappers are: killing only the script would leave the child running
    save_tools(fakes, f"sleep {marker} &\nwait\n")
    exp = start(exporters, netns, docker.url, "--iptables.timeout", "1s", fakes=fakes)
    _, s = exp.wait_for(honest(lambda s: source_up(s.body, "iptables") == 0), DEADLINE,
                        what="iptables 0")  # fmt: skip
    exp.wait_for(lambda s: "did not finish within 1s" in exp.stderr(), DEADLINE, what="timeout log")
    first = s.body
    exp.wait_for(lambda s: s.body != first and source_up(s.body, "iptables") == 0, DEADLINE,
                 what="a later refresh")  # fmt: skip
    slowest = max(timed_get(exp) for _ in range(5))
    save_tools(fakes, printing(IPTABLES_V4))  # the next refresh works
    waited, _ = exp.wait_for(honest(lambda s: source_up(s.body, "iptables") == 1), DEADLINE,
                             what="recovered")  # fmt: skip
    leaked = live_after(5, "sleep", marker)  # no refresh starts one any more
    assert leaked == [], f"timed-out *-save children left running: {leaked}"
    record("fault", "iptables-nft-save hangs (sleeps)",
           "killed after --iptables.timeout 1s with its children, source_up 0, next refresh "
           "works", slowest_scrape_s=round(slowest, 3), recovery_s=round(waited, 2))  # fmt: skip


@pytest.mark.parametrize("case", ["truncated", "incompatible"])
def test_save_partial_output_is_unknown_not_ok(netns, docker, fakes, exporters, case) -> None:
    lines = IPTABLES_V4.splitlines()
    if case == "truncated":  # cut inside the nat table, before its COMMIT
        text = "\n".join(lines[: lines.index("*nat") + 6]) + "\n"
        why = "truncated"
    else:
        start_nat = lines.index("*nat")
        end_nat = lines.index("COMMIT", start_nat)
        text = "\n".join([*lines[:start_nat], "# Table `nat' is incompatible, use 'nft' tool.",
                          *lines[end_nat + 1 :]]) + "\n"  # fmt: skip
        why = "incompatible"
    save_tools(fakes, printing(text), families=(4,))
    exp = start(exporters, netns, docker.url, fakes=fakes)
    _, s = exp.wait_for(honest(lambda s: source_up(s.body, "docker") == 1
                               and bool(states(s.body))), DEADLINE, what="ports")  # fmt: skip
    v4 = {k: v for k, v in states(s.body).items() if k[1] == "ipv4" and not loopback(k[2])}
    assert v4 and set(v4.values()) == {"unknown"}, v4
    reasons = {r.labels["reason"] for r in select(s.body, "docker_nat_port_info", family="ipv4")
               if not loopback(r.labels["host_ip"])}  # fmt: skip
    assert reasons == {"rules_unreadable"}, reasons  # the label is the stable reason code
    page = exp.get("/").body
    assert why in page, page[-2000:]  # the status page names the cause
    record(
        "fault",
        f"iptables-save output {case} ({why} nat table)",
        f"every IPv4 port unknown (reason rules_unreadable), the status page says {why}",
    )


def test_save_tools_missing_then_installed(netns, docker, exporters) -> None:
    with Overlay(remove=SAVE_NAMES) as overlay:
        exp = start(exporters, netns, docker.url, prefix=overlay.prefix)
        _, _s = exp.wait_for(honest(lambda s: source_up(s.body, "iptables") == 0
                                   and source_up(s.body, "docker") == 1), DEADLINE, what="0")  # fmt: skip
        exp.wait_for(lambda s: "no iptables-nft-save on PATH" in exp.stderr(), DEADLINE, what="log")
        # "install" it: put the link back in the exporter's own /usr/sbin
        mnt = f"--mount=/proc/{exp.proc.pid}/ns/mnt"
        run(["nsenter", mnt, "ln", "-s", f"{overlay.dir}/real/iptables-nft-save",
             "/usr/sbin/iptables-nft-save"])  # fmt: skip
        waited, _ = exp.wait_for(honest(lambda s: source_up(s.body, "iptables") == 1), DEADLINE,
                                 what="recovered")  # fmt: skip
    record("fault", "iptables-*-save not installed (hidden from the exporter only)",
           "source_up 0, log 'no iptables-nft-save on PATH'; installed later: recovered",
           recovery_s=round(waited, 2))  # fmt: skip


def test_xtables_lock_held_does_not_block_reading(netns, docker, exporters) -> None:
    require_root_tools("iptables-legacy", "iptables-legacy-save")
    # a legacy table too, so iptables-legacy-save runs (it is the backend that knows the lock)
    netns.run(["iptables-legacy", "-t", "filter", "-N", "DNE-LEGACY"])
    lock_dir = Path(tempfile.mkdtemp(prefix=f"dnerel-lock{os.getpid()}-"))
    lock = lock_dir / "xtables.lock"
    lock.touch()
    Path("/run/xtables.lock").touch(exist_ok=True)  # the bind mount needs a target
    holder = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # held for the whole test, as a stuck iptables -w would
        with Overlay(lock=str(lock)) as overlay:
            exp = start(exporters, netns, docker.url, "--iptables.timeout", "5s",
                        prefix=overlay.prefix)  # fmt: skip
            waited, s = exp.wait_for(honest(healthy), DEADLINE, what="healthy under the lock")
            assert "legacy" in {x.labels["backend"] for x in
                                select(s.body, "docker_nat_iptables_backend_rules")}  # fmt: skip
            # control: the lock really is held, for whoever sees /run/xtables.lock like the exporter
            ns = ["nsenter", f"--mount=/proc/{exp.proc.pid}/ns/mnt", f"--net={netns.path}"]
            t = time.monotonic()
            blocked = run([*ns, "iptables-legacy", "-w", "1", "-t", "filter", "-N", "DNE-W"],
                          check=False)  # fmt: skip
            assert blocked.returncode != 0 and "lock" in blocked.stderr, blocked.stderr
            saved = run([*ns, "iptables-legacy-save"], timeout=10)
            took = time.monotonic() - t
            assert "DNE-LEGACY" in saved.stdout
            exp.wait_for(honest(healthy), DEADLINE, what="still healthy")
    finally:
        os.close(holder)
        shutil.rmtree(lock_dir, ignore_errors=True)
    record("fault", "xtables lock held (flock on /run/xtables.lock, as `iptables -w` holds it)",
           "iptables-nft-save and iptables-legacy-save read at once; `iptables-legacy -w 1 -N` "
           "was refused, proving the lock held", first_snapshot_s=round(waited, 2),
           control_s=round(took, 2))  # fmt: skip


def test_without_capabilities_says_why_and_never_ok(netns, docker, exporters) -> None:
    require_root_tools("setpriv")
    prefix = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--"]
    exp = start(exporters, netns, docker.url, prefix=prefix)
    _, s = exp.wait_for(honest(lambda s: source_up(s.body, "iptables") == 0
                               and source_up(s.body, "docker") == 1), DEADLINE, what="iptables 0")  # fmt: skip
    caps = Path(f"/proc/{exp.proc.pid}/status").read_text()
    assert "CapEff:\t0000000000000000" in caps, caps
    v4 = {k: v for k, v in states(s.body).items() if k[1] == "ipv4" and not loopback(k[2])}
    assert v4 and set(v4.values()) == {"unknown"}
    exp.wait_for(lambda s: "CAP_NET_ADMIN" in exp.stderr(), DEADLINE, what="CAP_NET_ADMIN logged")
    line = next(ln for ln in exp.stderr().splitlines() if "CAP_NET_ADMIN" in ln)
    record(
        "privilege",
        "exporter run with every capability dropped (setpriv --bounding-set=-all)",
        f"source_up iptables 0, ports unknown; log: {line.split('msg=', 1)[-1][:160]}",
    )


# ---------------------------------------------------------------- the real scheduler


async def test_refresh_that_raises_does_not_stop_refreshing() -> None:
    from support.servicefix import fixture_snapshot

    from exporter.serve.refresh import RefreshOptions
    from exporter.serve.scheduler import Holder, Scheduler

    calls = []

    def snapshot_fn(opts):
        calls.append(opts)
        if len(calls) == 1:
            raise ValueError("'nope' does not appear to be an IPv4 or IPv6 network")
        return fixture_snapshot()

    holder = Holder()
    sched = Scheduler(RefreshOptions(), 0.05, 0.0, 300.0, holder, snapshot_fn=snapshot_fn)
    first = await sched.refresh_once()
    assert not first.source_up("docker") and not first.source_up("iptables")
    assert all("refresh failed" in s.error and "nope" in s.error for s in first.sources)
    assert first.ports == () and holder.snapshot is first
    second = await sched.refresh_once()
    assert second.source_up("docker") and second.ports
    record(
        "fault",
        "a refresh raising an unexpected exception (analysis bug)",
        "served as every source down with the error; the refresh loop goes on",
    )


@pytest.mark.lab
def test_dockerd_restarting_mid_refresh(make_lab, exporters) -> None:
    lab = make_lab()
    lab.run_web("mid", 18201, extra=["--restart", "always"], wait=False)
    exp = ExporterProc(lab.host_ns, "--docker.host", lab.docker_host, "--refresh.interval",
                       "500ms", "--docker.timeout", "3s", "--log.level", "debug")  # fmt: skip
    exporters.append(exp.start())
    exp.wait_for(lambda s: s.status == 200, 30, "/-/healthy", "listening")

    def mid_ok(s: Scrape) -> bool:
        return states(s.body).get(("mid", "ipv4", "0.0.0.0", "18201")) == "ok"

    exp.wait_for(honest(mid_ok), 30, what="mid ok")
    scrapes, downs = 0, 0
    for _ in range(2):  # stop and start while refreshes run every 500 ms
        lab.stop_daemon()
        _, _s = exp.wait_for(honest(lambda s: source_up(s.body, "docker") == 0), 30, what="down")
        downs += 1
        lab.start_daemon()
        exp.wait_for(honest(mid_ok), 60, what="mid ok again")
        for _ in range(10):
            assert_honest(exp.get())
            scrapes += 1
    assert exp.alive and "Traceback" not in exp.stderr()
    record("fault", "dockerd stopped and started twice under a 500 ms refresh (real daemon)",
           "source_up docker 0 while down (no port series), ports ok again after each start; "
           "no restart of the exporter", restarts=downs)  # fmt: skip


def test_fake_binaries_are_really_used(fakes) -> None:
    # guards the fault tests above: a fake first on PATH is what run.which() picks
    from exporter.sources.run import which

    fake_bin(fakes, "iptables-nft-save", "exit 0\n")
    old = os.environ["PATH"]
    os.environ["PATH"] = f"{fakes}:{old}"
    try:
        assert which("iptables-nft-save") == str(fakes / "iptables-nft-save")
    finally:
        os.environ["PATH"] = old
    assert subprocess.run([str(fakes / "iptables-nft-save")], check=False).returncode == 0


@pytest.mark.parametrize(
    ("caps", "works"),
    [("", set()), ("+net_admin", {"iptables-nft-save", "nft"}),
     ("+net_admin,+net_raw", {"iptables-nft-save", "nft", "iptables-legacy-save"})],
    ids=["none", "net_admin", "net_admin+net_raw"],
)  # fmt: skip
def test_minimal_capability_set(caps: str, works: set[str]) -> None:
    require_root_tools("setpriv", "iptables-legacy", "iptables-legacy-save", "nft")
    drop = f"-all,{caps}" if caps else "-all"
    prefix = ["setpriv", f"--inh-caps={drop}", f"--ambient-caps={drop}", f"--bounding-set={drop}"]
    with namespace(fresh_name("dnerel")) as ns:
        ns.run(["iptables-legacy", "-N", "DNE-L"])
        ns.run(["iptables-nft", "-N", "DNE-N"])
        tools = {"iptables-nft-save": ["iptables-nft-save"], "nft": ["nft", "-j", "list", "chains"],
                 "iptables-legacy-save": ["iptables-legacy-save"]}  # fmt: skip
        ran = {name: ns.run([*prefix, "--", *argv], check=False) for name, argv in tools.items()}
    assert {n for n, p in ran.items() if p.returncode == 0} == works, {
        n: p.stderr.strip()[-120:] for n, p in ran.items()
    }
    record("privilege", f"the readers run with only {caps or 'no capability'}",
           f"work: {', '.join(sorted(works)) or 'none'}; "
           + "; ".join(f"{n}: {p.stderr.strip().splitlines()[-1][:90]}" for n, p in ran.items()
                       if p.returncode))  # fmt: skip
