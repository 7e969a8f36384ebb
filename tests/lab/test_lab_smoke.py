"""The test lab reproduces the incident table of docs/testing.md with real traffic, and cleans up."""

from __future__ import annotations

import ipaddress
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import netns
from support.lab import CLIENT_ADDR, ENGINE_CACHE, Lab, leftovers, sweep_stale
from support.util import require_lab

pytestmark = pytest.mark.lab

PORT = 18080
WEB = "web1"


@pytest.fixture(scope="module")
def web(lab: Lab) -> str:
    lab.run_web(WEB, PORT)
    return WEB


def dnat_rules(lab: Lab, port: int) -> list[str]:
    """The nat table's DNAT rules for a TCP port, in order."""
    lines = lab.iptables_save(table="nat").splitlines()
    return [ln for ln in lines if "-j DNAT" in ln and f"--dport {port} " in f"{ln} "]


def insert_stale_dnat(lab: Lab) -> str:
    """Put a DNAT for PORT to an address no container has ahead of Docker's; return it."""
    bridge = ipaddress.ip_interface(f"{lab.network_gateway()}/24").network
    stale = str(bridge.broadcast_address - 1)  # e.g. 172.17.0.254
    assert stale != lab.container_ip(WEB)
    lab.iptables("-t", "nat", "-I", "DOCKER", "1", "!", "-i", "docker0", "-p", "tcp",
                 "--dport", str(PORT), "-j", "DNAT", "--to-destination", f"{stale}:80")  # fmt: skip
    assert f"--to-destination {stale}:80" in dnat_rules(lab, PORT)[0]
    return stale


def _lab_processes(lab: Lab) -> dict[int, tuple[str, str]]:
    """pid -> (executable, command line) of the processes in the lab's Docker host namespace or
    naming its directory."""
    host_ns = os.stat(netns.NETNS_DIR / lab.host_ns)
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            ns = os.stat(f"/proc/{pid}/ns/net")
            exe = os.path.realpath(f"/proc/{pid}/exe")
        except OSError:
            continue
        if (ns.st_dev, ns.st_ino) == (host_ns.st_dev, host_ns.st_ino) or str(lab.dir) in cmdline:
            found[int(pid)] = (exe, cmdline)
    return found


@pytest.mark.parametrize("which", ["26", "28"])
def test_fetched_engine_runs_its_own_binaries(make_lab, which: str) -> None:
    """dockerd, its managed containerd and docker-proxy come from the fetched engine, not from
    a system docker.io that has the same names (tools/fetch-engines; docs/testing.md)."""
    lab = make_lab(engine=which)
    server = lab.docker("version", "-f", "{{.Server.Version}}").stdout.strip()
    assert server.startswith(f"{which}."), server
    lab.run_web(WEB, PORT)
    assert lab.client_get(PORT).answered_by == WEB
    procs = _lab_processes(lab)
    config = str(lab.exec_root / "containerd" / "containerd.toml")
    daemons = {
        "dockerd": [procs[lab.dockerd_pid][0]],
        "containerd": [exe for exe, cmd in procs.values() if config in cmd],
        "docker-proxy": [exe for exe, cmd in procs.values() if exe.endswith("/docker-proxy")],
    }
    cache = str(ENGINE_CACHE.resolve())
    for name, exes in daemons.items():
        assert exes and all(e.startswith(cache) for e in exes), (name, exes)


def test_healthy_rules_deliver_with_client_address(scratch_lab: Lab, web: str) -> None:
    got = scratch_lab.client_get(PORT)
    assert got.ok, got.error
    assert (got.answered_by, got.seen_client) == (web, CLIENT_ADDR)
    assert scratch_lab.local_get(PORT).ok


def test_missing_dnat_falls_back_to_docker_proxy(scratch_lab: Lab, web: str) -> None:
    [rule] = dnat_rules(scratch_lab, PORT)
    scratch_lab.iptables("-t", "nat", "-D", *shlex.split(rule)[1:])
    assert dnat_rules(scratch_lab, PORT) == []

    got = scratch_lab.client_get(PORT)
    assert got.ok, got.error
    assert (got.answered_by, got.seen_client) == (web, scratch_lab.network_gateway())


def test_stale_dnat_first_breaks_external_clients_only(scratch_lab: Lab, web: str) -> None:
    insert_stale_dnat(scratch_lab)

    got = scratch_lab.client_get(PORT)
    assert not got.ok
    assert "curl exit 28" in got.error  # a timeout: the SYN goes to nobody
    local = scratch_lab.local_get(PORT)
    assert local.ok, local.error
    assert local.answered_by == web


def test_flushing_docker_chain_works_again_through_proxy(scratch_lab: Lab, web: str) -> None:
    insert_stale_dnat(scratch_lab)
    assert not scratch_lab.client_get(PORT).ok

    scratch_lab.iptables("-t", "nat", "-F", "DOCKER")
    got = scratch_lab.client_get(PORT)
    assert got.ok, got.error
    assert (got.answered_by, got.seen_client) == (web, scratch_lab.network_gateway())


def test_restore_rules_brings_back_direct_delivery(lab: Lab, web: str) -> None:
    snapshot = lab.snapshot_rules()
    lab.iptables("-t", "nat", "-F", "DOCKER")
    lab.iptables("-t", "raw", "-A", "PREROUTING", "-p", "udp", "-j", "DROP")
    assert lab.client_get(PORT).seen_client != CLIENT_ADDR

    lab.restore_rules(snapshot)
    assert "-p udp -j DROP" not in lab.iptables_save()
    assert lab.client_get(PORT).seen_client == CLIENT_ADDR


def test_legacy_backend_rules_live_in_legacy_tables(make_lab) -> None:
    legacy = make_lab(backend="legacy")
    legacy.run_web("legacyweb", 18081)

    assert len(dnat_rules(legacy, 18081)) == 1
    assert "18081" in legacy.iptables_save(backend="legacy", table="nat")
    assert "18081" not in legacy.iptables_save(backend="nft")
    got = legacy.client_get(18081)
    assert got.ok, got.error
    assert (got.answered_by, got.seen_client) == ("legacyweb", CLIENT_ADDR)


def _system_traces(ident: str) -> list[str]:
    """What ip/mount/ps show of a lab, checked independently of lab.leftovers()."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    mounts = Path("/proc/self/mounts").read_text()
    procs = subprocess.run(["ps", "-eo", "stat=,args="], capture_output=True, text=True, timeout=10)
    live = [ln for ln in procs.stdout.splitlines() if not ln.startswith("Z")]
    return (
        [ln for ln in netns.stdout.splitlines() if ident in ln]
        + [ln for ln in mounts.splitlines() if f"/tmp/{ident}/" in ln]
        + [ln for ln in live if f"/tmp/{ident}/" in ln]
        + ([f"/tmp/{ident}"] if Path(f"/tmp/{ident}").exists() else [])
    )


def _pids_naming(text: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", text], capture_output=True, text=True, timeout=10)
    return [int(p) for p in found.stdout.split()]


def test_lab_cleans_up_when_the_test_body_raises() -> None:
    require_lab()
    with pytest.raises(RuntimeError, match="test failed mid-way"), Lab() as doomed:
        ident = doomed.ident
        doomed.run_web("doomed", 18082)
        assert _system_traces(ident)  # namespaces, mounts, dockerd: there is work to do
        raise RuntimeError("test failed mid-way")
    assert leftovers(ident) == []
    assert _system_traces(ident) == []


def test_sweep_spares_live_runs_and_reaps_dead_ones() -> None:
    require_lab()
    owner = subprocess.Popen(["sleep", "60"])  # stands in for another live test run
    ident = f"dne{owner.pid}x1"
    try:
        netns.create(f"{ident}h")
        Path(f"/tmp/{ident}").mkdir()
        assert ident not in sweep_stale()
        assert leftovers(ident) == [f"netns {ident}h", f"directory /tmp/{ident}"]

        owner.kill()
        owner.wait(timeout=10)
        assert ident in sweep_stale()
        assert leftovers(ident) == []
    finally:
        owner.kill()
        owner.wait(timeout=10)
        sweep_stale()


_CRASHING_RUN = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from support.lab import Lab
lab = Lab()
lab.run_web("orphan", 18083)
open(sys.argv[2] + ".tmp", "w").write(lab.ident)
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
time.sleep(300)
"""


def test_sweep_reaps_a_crashed_run(tmp_path: Path) -> None:
    require_lab()
    ready = tmp_path / "ident"
    tests_dir = str(Path(__file__).resolve().parents[1])
    child = subprocess.Popen([sys.executable, "-c", _CRASHING_RUN, tests_dir, str(ready)])
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ready.exists(), "the crashing run never got its lab up"
        ident = ready.read_text()
        # A hard crash: the run and its daemons die at once, nobody unmounts or deletes anything.
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        for pid in _pids_naming(f"/tmp/{ident}/"):  # dockerd, containerd, shim
            os.kill(pid, signal.SIGKILL)
        traces = _system_traces(ident)
        assert any(f"/tmp/{ident}/data/overlay2/" in t for t in traces)  # container rootfs mount
        assert f"{ident}h" in "\n".join(traces)

        assert ident in sweep_stale()
        assert leftovers(ident) == []
        assert _system_traces(ident) == []
    finally:
        child.kill()
        child.wait(timeout=10)
        sweep_stale()
