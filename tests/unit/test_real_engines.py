"""Fixtures recorded from real daemons (tests/fixtures/SOURCES.md): Debian's docker.io 26.1.5 and
28.5.2 running d2010's scenario (d26_*, d28_*), and 28.5.2 replaying the g28 layout's scenario
(d28g28_*). They confirm the documented layouts where they agree, and they win where not."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest
from support.corefix import FIXTURES, REAL_NAMES, analyse_doc, decode, layout

from exporter.docker.model import DESIGN_DNAT, DESIGN_NONE, DESIGN_PROXY

REPO = Path(__file__).resolve().parents[2]
ENGINES = {"d26": "26.1.5+dfsg1", "d28": "28.5.2+dfsg4", "d28g28": "28.5.2+dfsg4"}


def check_json(name: str) -> dict:
    """`check --json` on a recorded daemon, as a subprocess; exit status and document agree."""
    args = [sys.executable, "-m", "exporter", "check", "--json"]
    args += ["--docker-state", str(FIXTURES / f"{name}_state.json")]
    args += ["--iptables-save", str(FIXTURES / f"{name}_iptables.txt")]
    args += ["--ip6tables-save", str(FIXTURES / f"{name}_ip6tables.txt")]
    r = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" not in r.stderr, r.stderr
    doc = json.loads(r.stdout)
    assert doc["exit_code"] == r.returncode
    return doc


@pytest.mark.parametrize(
    ("name", "layout_name", "jumps", "ports"),
    [("d26", "g27", 6, 9), ("d28", "g28", 18, 11), ("d28g28", "g28", 17, 15)],
)
def test_offline_check_of_a_real_daemon_is_all_ok(name, layout_name, jumps, ports):
    doc = check_json(name)
    assert doc["exit_code"] == 0
    assert (doc["daemon"]["version"], doc["daemon"]["layout"]) == (ENGINES[name], layout_name)
    assert doc["daemon"]["firewall_backend"] == "iptables" and doc["daemon"]["userland_proxy"]
    assert [j["present"] for j in doc["jumps"]] == [True] * jumps
    assert doc["stale_rules"] == []
    assert [p["state"] for p in doc["ports"]] == ["ok"] * ports, doc["ports"]


def test_multi_network_container_is_judged_on_its_dual_stack_network():
    """Real 28.5.2: `multi` is on bridge (GwPriority 1, IPv4 only) and appnet (dual-stack,
    GwPriority 0); Docker gives both families' port rules to appnet. The exporter once
    reported this working setup as misrouted with 4 stale rules."""
    doc, v4, v6 = layout("d28g28")
    eps = next(c for c in doc["containers"] if c["Names"] == ["/multi"])
    assert eps["NetworkSettings"]["Networks"]["bridge"]["GwPriority"] == 1
    assert "--to-destination 172.18.0.4:90" in v4 and "--to-destination [fd00:18::4]:90" in v6
    snap = analyse_doc(doc, v4, v6)
    multi = {p.binding.family: p for p in snap.ports if p.binding.container == "multi"}
    assert {f: (p.binding.network, p.binding.container_ip) for f, p in multi.items()} == {
        "ipv4": ("appnet", "172.18.0.4"),
        "ipv6": ("appnet", "fd00:18::4"),
    }
    assert {p.verdict.state for p in multi.values()} == {"ok"}
    assert snap.stale == ()


def test_real_api_shapes_decode():
    """What the real 26 and 28 answer differently from 20.10 and the layouts: NetworkMode
    "bridge" for the default bridge, IPAM.Config null for none/host, a default bridge with a
    Gateway, FirewallBackend without Info (28) or absent (26), DNSNames and GwPriority on
    endpoints, EnableIPv4 on networks, and a [::] binding next to every 0.0.0.0 one."""
    for name in ("d26", "d28"):
        doc, _, _ = layout(name)
        web = next(c for c in doc["containers"] if c["Names"] == ["/web"])
        assert web["HostConfig"]["NetworkMode"] == "bridge"
        assert next(n for n in doc["networks"] if n["Name"] == "host")["IPAM"]["Config"] is None
        assert "DNSNames" in web["NetworkSettings"]["Networks"]["bridge"]
        state = decode(doc)
        assert state.daemon.version == ENGINES[name]
        assert state.daemon.firewall_backend == "iptables"
        assert state.daemon.userland_proxy is True
        nets = {n.name: n for n in state.networks}
        assert (nets["none"].subnets4, nets["host"].subnets4) == ((), ())
        assert (nets["bridge"].bridge, nets["bridge"].subnets4) == ("docker0", ("172.17.0.0/16",))
        got = {(b.container, b.host_ip, b.host_port): b for b in state.bindings}
        v4, v6 = got[("web", "0.0.0.0", 18080)], got[("web", "::", 18080)]
        assert (v4.network, v4.bridge, v4.container_ip, v4.design) == (
            "bridge", "docker0", "172.17.0.2", DESIGN_DNAT
        )  # fmt: skip
        assert (v6.family, v6.container_ip, v6.design) == ("ipv6", "", DESIGN_PROXY)
        loop = got[("api", "127.0.0.1", 18081)]
        assert loop.design == DESIGN_NONE and ("api", "::", 18081) not in got
    d28 = decode(layout("d28")[0])
    assert d28.daemon.ip6tables is True  # the default from 27 on
    v6net = next(n for n in d28.networks if n.name == "v6net")
    assert v6net.enable_ipv6 and v6net.subnets6 == ("fd00:dead:beef::/64",)
    v6 = next(b for b in d28.bindings if b.container == "v6" and b.family == "ipv6")
    assert (v6.container_ip, v6.design) == ("fd00:dead:beef::2", DESIGN_DNAT)
    assert decode(layout("d26")[0]).daemon.ip6tables is False  # 26: off unless enabled


def shape(doc: dict, text: str, skip: str = "") -> list[str]:
    """Rule lines with each bridge name replaced by its network's name, counters and comments
    dropped, sorted (Docker's order within a chain partly follows Go map order)."""
    bridges = {n.bridge: f"<{n.name}>" for n in decode(doc).networks if n.bridge}
    out = []
    for line in text.splitlines():
        if not line.startswith(("*", ":", "-A")) or (skip and skip in line):
            continue
        line = re.sub(r"\s*\[\d+:\d+\]", "", line)
        out.append(re.sub(r"\b(br-[0-9a-f]{12}|docker0)\b", lambda m: bridges[m.group(1)], line))
    return sorted(out)


def test_real_26_writes_20_10s_layout():
    """g27 confirmed: 26.1.5's rules for d2010's scenario are 20.10.24's, line for line."""
    for i in (1, 2):
        (real, *r_rules), (old, *o_rules) = layout("d26"), layout("d2010")
        assert shape(real, r_rules[i - 1]) == shape(old, o_rules[i - 1])


def test_real_28_writes_the_g28_layout():
    """g28 confirmed for every rule except SCTP (this kernel has no SCTP sockets, so the real
    daemon could not publish the layout's sctp port)."""
    real, *real_rules = layout("d28g28")
    doc, *doc_rules = layout("g28")
    for family in (0, 1):
        assert shape(real, real_rules[family]) == shape(doc, doc_rules[family], skip="sctp")


def test_every_fixture_file_is_listed_with_its_origin():
    """tests/fixtures/SOURCES.md names every fixture file (or a glob covering it) in backticks."""
    listed = re.findall(r"`([^`\s]+)`", (FIXTURES / "SOURCES.md").read_text())
    files = [p.relative_to(FIXTURES).as_posix() for p in FIXTURES.rglob("*") if p.is_file()]
    unlisted = [f for f in files if f != "SOURCES.md" and not any(fnmatch(f, g) for g in listed)]
    assert unlisted == []
    for name in REAL_NAMES:
        assert all(f"{name}_{f}" in listed for f in ("state.json", "iptables.txt", "ip6tables.txt"))
