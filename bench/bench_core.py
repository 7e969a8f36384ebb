"""Benchmark of the core: parse + analyse 50,000 nat rules and 1,000 bindings (not a test).

Builds Docker 20.10's rules for 1,000 published ports on 10 user networks, plus unrelated
kube-proxy-like chains up to --rules nat rules, loads them into a throwaway network namespace
with iptables-nft-restore, and times (min of --repeat runs each):

  floor    `iptables-nft-save` in that namespace (what every refresh must pay anyway)
  parse    exporter.iptsave.parse_save over its output
  analyse  exporter.snapshot.build: decode the Docker JSON, expected rules, verdicts, stale rules

Run as root:  python bench/bench_core.py [--rules 50000] [--bindings 1000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import os
import pstats
import resource
import subprocess
import sys
import time
from collections import Counter

from exporter.analysis import FamilyRules
from exporter.docker_decode import DaemonHints
from exporter.iptsave import parse_save
from exporter.snapshot import build
from exporter.sources.docker_api import DockerRaw

NETWORKS = 10
HOST = "192.0.2.1"


def hexid(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def docker_json(bindings: int) -> DockerRaw:
    """`bindings` published ports: two per container, containers spread over NETWORKS bridges."""
    nets = [
        {
            "Name": "bridge",
            "Id": hexid("bridge"),
            "Driver": "bridge",
            "IPAM": {"Config": [{"Subnet": "172.17.0.0/16"}]},
            "Options": {
                "com.docker.network.bridge.default_bridge": "true",
                "com.docker.network.bridge.name": "docker0",
            },
        },
    ]
    for n in range(NETWORKS):
        nets.append(
            {
                "Name": f"net{n}",
                "Id": hexid(f"net{n}"),
                "Driver": "bridge",
                "IPAM": {"Config": [{"Subnet": f"10.{100 + n}.0.0/16"}]},
                "Options": {},
            }
        )
    containers = []
    for c in range(bindings // 2):
        n = c % NETWORKS
        ip = f"10.{100 + n}.{c // 250}.{c % 250 + 2}"
        ports = [
            {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 20000 + 2 * c, "Type": "tcp"},
            {"IP": "0.0.0.0", "PrivatePort": 53, "PublicPort": 20001 + 2 * c, "Type": "udp"},
        ]
        eps = {f"net{n}": {"NetworkID": hexid(f"net{n}"), "IPAddress": ip}}
        containers.append(
            {
                "Id": hexid(f"c{c}"),
                "Names": [f"/c{c}"],
                "Image": "busybox",
                "Labels": {},
                "Ports": ports,
                "HostConfig": {"NetworkMode": f"net{n}"},
                "NetworkSettings": {"Networks": eps},
            }
        )
    info = {"ServerVersion": "20.10.24+dfsg1", "SecurityOptions": []}
    version = {"Version": "20.10.24+dfsg1", "ApiVersion": "1.41"}
    hints = DaemonHints(cmdline=("/usr/sbin/dockerd",))
    return DockerRaw(containers, nets, info, version, hints)


def docker_rules(raw: DockerRaw) -> tuple[list[str], list[str], list[str]]:
    """(nat rules, filter rules, chain declarations) Docker 20.10 writes for `raw`."""
    nat = [
        "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
        "-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
    ]
    filt = ["-A FORWARD -j DOCKER-USER", "-A FORWARD -j DOCKER-ISOLATION-STAGE-1"]
    for n in raw.networks:
        br = n["Options"].get("com.docker.network.bridge.name") or "br-" + n["Id"][:12]
        sub = n["IPAM"]["Config"][0]["Subnet"]
        nat += [f"-A POSTROUTING -s {sub} ! -o {br} -j MASQUERADE", f"-A DOCKER -i {br} -j RETURN"]
        filt += [
            f"-A FORWARD -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            f"-A FORWARD -o {br} -j DOCKER",
            f"-A FORWARD -i {br} ! -o {br} -j ACCEPT",
            f"-A FORWARD -i {br} -o {br} -j ACCEPT",
        ]
    for c in raw.containers:
        (net,) = c["NetworkSettings"]["Networks"]
        br, ip = "br-" + hexid(net)[:12], c["NetworkSettings"]["Networks"][net]["IPAddress"]
        for p in c["Ports"]:
            proto, hp, cp = p["Type"], p["PublicPort"], p["PrivatePort"]
            m = f"-p {proto} -m {proto} --dport"
            nat.append(f"-A DOCKER ! -i {br} {m} {hp} -j DNAT --to-destination {ip}:{cp}")
            nat.append(f"-A POSTROUTING -s {ip}/32 -d {ip}/32 {m} {cp} -j MASQUERADE")
            filt.append(f"-A DOCKER -d {ip}/32 ! -i {br} -o {br} {m} {cp} -j ACCEPT")
    filt += [
        "-A DOCKER-ISOLATION-STAGE-1 -j RETURN",
        "-A DOCKER-ISOLATION-STAGE-2 -j RETURN",
        "-A DOCKER-USER -j RETURN",
    ]
    return nat, filt, ["DOCKER"]


def kube_rules(count: int) -> tuple[list[str], list[str]]:
    """About `count` kube-proxy-style nat rules: services, endpoints, node ports."""
    rules = [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
    ]
    chains = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-MARK-MASQ"]
    svc = 0
    while len(rules) < count - 1:
        sid = hexid(f"svc{svc}")[:16].upper()
        vip = f"10.96.{svc // 250}.{svc % 250 + 1}"
        chains.append(f"KUBE-SVC-{sid}")
        rules.append(
            f'-A KUBE-SERVICES -d {vip}/32 -p tcp -m comment --comment "ns/svc{svc}:http cluster IP" '
            f"-m tcp --dport 80 -j KUBE-SVC-{sid}"
        )
        if svc % 10 == 0:
            rules.append(
                f"-A KUBE-NODEPORTS -p tcp -m tcp --dport {30000 + svc % 2700} -j KUBE-SVC-{sid}"
            )
        for e in range(3):
            eid = hexid(f"sep{svc}-{e}")[:16].upper()
            pod = f"10.244.{svc // 80}.{(svc % 80) * 3 + e + 2}"
            chains.append(f"KUBE-SEP-{eid}")
            prob = {
                0: "-m statistic --mode random --probability 0.33333333349 ",
                1: "-m statistic --mode random --probability 0.50000000000 ",
                2: "",
            }[e]
            rules.append(f"-A KUBE-SVC-{sid} {prob}-j KUBE-SEP-{eid}")
            rules.append(f"-A KUBE-SEP-{eid} -s {pod}/32 -j KUBE-MARK-MASQ")
            rules.append(f"-A KUBE-SEP-{eid} -p tcp -m tcp -j DNAT --to-destination {pod}:8080")
        svc += 1
    rules.append("-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")
    return rules, chains


def ruleset_text(raw: DockerRaw, nat_total: int) -> str:
    nat, filt, _ = docker_rules(raw)
    kube, kchains = kube_rules(nat_total - len(nat))
    out = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]"]
    out += [
        f":{c} - [0:0]"
        for c in ("DOCKER", "DOCKER-ISOLATION-STAGE-1", "DOCKER-ISOLATION-STAGE-2", "DOCKER-USER")
    ]
    out += [*filt, "COMMIT", "*nat"]
    out += [f":{c} ACCEPT [0:0]" for c in ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")]
    out += [":DOCKER - [0:0]", *(f":{c} - [0:0]" for c in kchains)]
    # kube-proxy's jumps come first in PREROUTING/OUTPUT, as on a real node
    out += [r for r in kube if r.startswith(("-A PREROUTING", "-A OUTPUT"))]
    out += nat
    out += [r for r in kube if not r.startswith(("-A PREROUTING", "-A OUTPUT"))]
    out.append("COMMIT")
    return "\n".join(out) + "\n"


def sh(argv: list[str], stdin: str | None = None, timeout: float = 300) -> str:
    r = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if r.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed: {r.stderr.strip()}")
    return r.stdout


def best(fn, repeat: int):
    """(min wall time, min CPU time of this process and its children, last result)."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        t, c = time.perf_counter(), _cpu()
        result = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(_cpu() - c)
    return min(walls), min(cpus), result


def _cpu() -> float:
    """CPU seconds used so far by this process and its waited-for children: on a busy machine
    this is steadier than wall time."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", type=int, default=50_000, help="nat rules in total")
    ap.add_argument("--bindings", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="cProfile parse + analyse")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (a throwaway network namespace)")

    raw = docker_json(args.bindings)
    text = ruleset_text(raw, args.rules)
    ns = f"dnkbench{os.getpid()}"
    sh(["ip", "netns", "add", ns])
    try:
        enter = ["nsenter", f"--net=/run/netns/{ns}"]
        t_load, _, _ = best(lambda: sh([*enter, "iptables-nft-restore"], text), 1)
        floor, floor_cpu, saved = best(lambda: sh([*enter, "iptables-nft-save"]), args.repeat)
    finally:
        subprocess.run(["ip", "netns", "del", ns], timeout=60, check=False)

    t_parse, c_parse, rs = best(lambda: parse_save(saved, "ipv4", "nf_tables"), args.repeat)
    assert not rs.errors, rs.errors[:3]
    nat_rules = sum(len(c.rules) for c in rs.tables["nat"].chains.values())
    rules = {"ipv4": FamilyRules("ipv4", (rs,)), "ipv6": FamilyRules("ipv6", ())}
    addrs = (("eth0", HOST), ("eth1", "198.51.100.1"), ("lo", "127.0.0.1"))

    def analyse():
        return build(0.0, raw, "", rules, addrs)

    t_analyse, c_analyse, snap = best(analyse, args.repeat)
    states = Counter(p.verdict.state for p in snap.ports if p.binding.family == "ipv4")
    ours, ours_cpu = t_parse + t_analyse, c_parse + c_analyse
    print(
        f"rules: {rs.rule_count()} ({nat_rules} nat), {len(saved) / 1e6:.2f} MB of save output; "
        f"bindings: {len(snap.ports)} (ipv4 states: {dict(states)}); stale: {len(snap.stale)}"
    )
    print(f"min of {args.repeat}                    wall s    CPU s")
    print(f"load    iptables-nft-restore  {t_load:7.3f}           (once)")
    print(f"floor   iptables-nft-save     {floor:7.3f}  {floor_cpu:7.3f}")
    print(f"parse   iptsave.parse_save    {t_parse:7.3f}  {c_parse:7.3f}")
    print(f"analyse snapshot.build        {t_analyse:7.3f}  {c_analyse:7.3f}")
    print(f"ours / floor                  {ours / floor:7.2f}  {ours_cpu / floor_cpu:7.2f}")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        analyse_rs = parse_save(saved, "ipv4", "nf_tables")
        build(0.0, raw, "", {"ipv4": FamilyRules("ipv4", (analyse_rs,))}, addrs)
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
        print(out.getvalue())


if __name__ == "__main__":
    main()
