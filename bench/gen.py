"""Synthetic Docker hosts: Docker API JSON shaped like a real 20.10 daemon's answers
(tests/fixtures/d2010_*.json) and the iptables-save text Docker 20.10 writes for it, plus
unrelated kube-proxy-style nat chains up to a total number of nat rules.

Every binding is an IPv4 one (`-p 0.0.0.0:HOST:CONTAINER`), so every binding is walked. Two
bindings per container (tcp/80 and udp/53), containers spread over NETWORKS user bridges.
"""

from __future__ import annotations

import copy
import hashlib
import json
import pathlib

FIX = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures"
NETWORKS = 10
FIRST_HOST_PORT = 20000
HOST_ADDR = "192.0.2.1"  # the namespace's one external address (a dummy interface)


def hexid(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def _fixture(name: str):
    return json.loads((FIX / f"d2010_{name}.json").read_text())


def docker_json(bindings: int) -> dict:
    """{"containers", "networks", "info", "version"}: what GET /containers/json, /networks,
    /info and /version answer on a Docker 20.10 host with `bindings` published IPv4 ports."""
    nets = [n for n in _fixture("networks") if n["Name"] in ("bridge", "host", "none")]
    appnet = next(n for n in _fixture("networks") if n["Name"] == "appnet")
    for n in range(NETWORKS):
        net = copy.deepcopy(appnet)
        net.update(Name=f"net{n}", Id=hexid(f"net{n}"))
        net["IPAM"]["Config"] = [{"Subnet": f"10.{100 + n}.0.0/16", "Gateway": f"10.{100 + n}.0.1"}]
        nets.append(net)
    template = next(c for c in _fixture("containers") if c["Names"] == ["/web"])
    containers = []
    for c in range((bindings + 1) // 2):
        n = c % NETWORKS
        ip = f"10.{100 + n}.{c // 250}.{c % 250 + 2}"
        hp = FIRST_HOST_PORT + 2 * c
        ports = [
            {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": hp, "Type": "tcp"},
            {"IP": "0.0.0.0", "PrivatePort": 53, "PublicPort": hp + 1, "Type": "udp"},
        ]
        body = copy.deepcopy(template)
        body.update(Id=hexid(f"c{c}"), Names=[f"/c{c}"], Ports=ports[: bindings - 2 * c])
        body["HostConfig"] = {"NetworkMode": f"net{n}"}
        ep = copy.deepcopy(template["NetworkSettings"]["Networks"]["bridge"])
        mac = f"02:42:0a:{n:02x}:{(c // 250) % 256:02x}:{c % 250 + 2:02x}"
        ep.update(
            NetworkID=hexid(f"net{n}"),
            EndpointID=hexid(f"ep{c}"),
            IPAddress=ip,
            Gateway=f"10.{100 + n}.0.1",
            MacAddress=mac,
        )
        body["NetworkSettings"] = {"Networks": {f"net{n}": ep}}
        containers.append(body)
    return {"containers": containers, "networks": nets, "info": _fixture("info"),
            "version": _fixture("version")}  # fmt: skip


def bridges(doc: dict) -> list[tuple[str, str]]:
    """(bridge, gateway address/prefix) of `doc`'s bridge networks: what dockerd would have
    made (the exporter judges routes: a container address must route out on its bridge)."""
    out = []
    for n in doc["networks"]:
        if n["Driver"] == "bridge" and n["IPAM"]["Config"]:
            subnet = n["IPAM"]["Config"][0]["Subnet"]
            net, prefix = subnet.split("/")
            gateway = n["IPAM"]["Config"][0].get("Gateway") or net.rsplit(".", 1)[0] + ".1"
            out.append((_bridge(n), f"{gateway}/{prefix}"))
    return out


def _bridge(net: dict) -> str:
    return net["Options"].get("com.docker.network.bridge.name") or "br-" + net["Id"][:12]


def docker_rules(doc: dict) -> tuple[list[str], list[str]]:
    """(nat rules, filter rules) Docker 20.10 (userland proxy on) writes for `doc`."""
    nat = ["-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
           "-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER"]  # fmt: skip
    filt = ["-A FORWARD -j DOCKER-USER", "-A FORWARD -j DOCKER-ISOLATION-STAGE-1"]
    bridges = {n["Id"]: _bridge(n) for n in doc["networks"] if n["Driver"] == "bridge"}
    for n in doc["networks"]:
        if n["Driver"] != "bridge":
            continue
        br, sub = bridges[n["Id"]], n["IPAM"]["Config"][0]["Subnet"]
        nat += [f"-A POSTROUTING -s {sub} ! -o {br} -j MASQUERADE", f"-A DOCKER -i {br} -j RETURN"]
        filt += [f"-A FORWARD -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                 f"-A FORWARD -o {br} -j DOCKER", f"-A FORWARD -i {br} ! -o {br} -j ACCEPT",
                 f"-A FORWARD -i {br} -o {br} -j ACCEPT",
                 f"-A DOCKER-ISOLATION-STAGE-1 -i {br} ! -o {br} -j DOCKER-ISOLATION-STAGE-2",
                 f"-A DOCKER-ISOLATION-STAGE-2 -o {br} -j DROP"]  # fmt: skip
    for c in doc["containers"]:
        ((_, ep),) = c["NetworkSettings"]["Networks"].items()
        br, ip = bridges[ep["NetworkID"]], ep["IPAddress"]
        for p in c["Ports"]:
            proto, hp, cp = p["Type"], p["PublicPort"], p["PrivatePort"]
            m = f"-p {proto} -m {proto} --dport"
            nat.append(f"-A DOCKER ! -i {br} {m} {hp} -j DNAT --to-destination {ip}:{cp}")
            nat.append(f"-A POSTROUTING -s {ip}/32 -d {ip}/32 {m} {cp} -j MASQUERADE")
            filt.append(f"-A DOCKER -d {ip}/32 ! -i {br} -o {br} {m} {cp} -j ACCEPT")
    filt += ["-A DOCKER-ISOLATION-STAGE-1 -j RETURN", "-A DOCKER-ISOLATION-STAGE-2 -j RETURN",
             "-A DOCKER-USER -j RETURN"]  # fmt: skip
    return nat, filt


def kube_rules(count: int) -> tuple[list[str], list[str]]:
    """(rules, chains): about `count` kube-proxy-style nat rules (services, endpoints, node
    ports); the two jumps from PREROUTING/OUTPUT come first, as on a real node."""
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
        rules.append(f'-A KUBE-SERVICES -d {vip}/32 -p tcp -m comment --comment '
                     f'"ns/svc{svc}:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-{sid}')  # fmt: skip
        if svc % 10 == 0:
            rules.append(f"-A KUBE-NODEPORTS -p tcp -m tcp --dport {30000 + svc % 2700} "
                         f"-j KUBE-SVC-{sid}")  # fmt: skip
        for e in range(3):
            eid = hexid(f"sep{svc}-{e}")[:16].upper()
            pod = f"10.244.{svc // 80}.{(svc % 80) * 3 + e + 2}"
            chains.append(f"KUBE-SEP-{eid}")
            prob = ("-m statistic --mode random --probability 0.33333333349 ",
                    "-m statistic --mode random --probability 0.50000000000 ", "")[e]  # fmt: skip
            rules.append(f"-A KUBE-SVC-{sid} {prob}-j KUBE-SEP-{eid}")
            rules.append(f"-A KUBE-SEP-{eid} -s {pod}/32 -j KUBE-MARK-MASQ")
            rules.append(f"-A KUBE-SEP-{eid} -p tcp -m tcp -j DNAT --to-destination {pod}:8080")
        svc += 1
    rules.append("-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")
    return rules, chains


def ruleset_text(doc: dict, nat_total: int) -> str:
    """iptables-restore input: Docker's filter and nat rules for `doc`, and kube-proxy-style
    chains filling the nat table up to `nat_total` rules (none when Docker's alone exceed it)."""
    nat, filt = docker_rules(doc)
    kube, kchains = kube_rules(nat_total - len(nat)) if nat_total - len(nat) >= 4 else ([], [])
    out = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]"]
    out += [f":{c} - [0:0]" for c in ("DOCKER", "DOCKER-ISOLATION-STAGE-1",
                                       "DOCKER-ISOLATION-STAGE-2", "DOCKER-USER")]  # fmt: skip
    out += [*filt, "COMMIT", "*nat"]
    out += [f":{c} ACCEPT [0:0]" for c in ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")]
    out += [":DOCKER - [0:0]", *(f":{c} - [0:0]" for c in kchains)]
    out += [r for r in kube if r.startswith(("-A PREROUTING", "-A OUTPUT"))]
    out += nat
    out += [r for r in kube if not r.startswith(("-A PREROUTING", "-A OUTPUT"))]
    out.append("COMMIT")
    return "\n".join(out) + "\n"


def kube_restore(count: int) -> str:
    """iptables-restore --noflush input adding `count` kube-proxy-style rules to the nat table
    of a host whose Docker rules are already there (jumps inserted before Docker's)."""
    kube, chains = kube_rules(count)
    out = ["*nat", *(f":{c} - [0:0]" for c in chains)]
    first = ("-A PREROUTING", "-A OUTPUT")
    out += ["-I " + r[3:].replace(" ", " 1 ", 1) if r.startswith(first) else r for r in kube]
    out.append("COMMIT")
    return "\n".join(out) + "\n"
