"""Builders shared by the core tests: Docker API JSON, saved states, rule texts, one-call analysis.

The JSON is shaped like the Engine's real answers (tests/fixtures/d2010_*.json): a network list,
a container list, /info and /version. `state_doc()` wraps them in the `check --docker-state`
file format (docker.raw.dump_state: the API answers, hints and "host_addresses").
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from exporter.docker.decode import DaemonHints, decode_state
from exporter.docker.model import DockerState
from exporter.docker.raw import DockerRaw
from exporter.readings import Readings
from exporter.rules.family import FamilyRules
from exporter.rules.iptsave import parse_save
from exporter.rules.model import Ruleset
from exporter.serve.snapshot import Snapshot, assess

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LAYOUTS = FIXTURES / "layouts"
HOST4, HOST6 = "192.0.2.1", "2001:db8:1::1"
HOST_ADDRS = (
    ("lo", "127.0.0.1"),
    ("lo", "::1"),
    ("eth0", HOST4),
    ("eth0", HOST6),
    ("eth0", "fe80::1"),
    ("docker0", "172.17.0.1"),
)


def hexid(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


# --- Docker API JSON -------------------------------------------------------------------------


def network(
    name: str,
    subnet: str | None = None,
    *,
    subnet6: str | None = None,
    bridge: str | None = None,
    driver: str = "bridge",
    internal: bool = False,
    icc: bool = True,
    masquerade: bool = True,
    gw4: str | None = None,
    gw6: str | None = None,
    enable_ipv4: bool | None = None,
) -> dict:
    """One entry of GET /networks. `bridge` sets com.docker.network.bridge.name."""
    opts: dict[str, str] = {}
    if name == "bridge":
        opts["com.docker.network.bridge.default_bridge"] = "true"
        bridge = bridge or "docker0"
    if bridge:
        opts["com.docker.network.bridge.name"] = bridge
    if not icc:
        opts["com.docker.network.bridge.enable_icc"] = "false"
    if not masquerade:
        opts["com.docker.network.bridge.enable_ip_masquerade"] = "false"
    if gw4:
        opts["com.docker.network.bridge.gateway_mode_ipv4"] = gw4
    if gw6:
        opts["com.docker.network.bridge.gateway_mode_ipv6"] = gw6
    config = [{"Subnet": s} for s in (subnet, subnet6) if s]
    doc = {
        "Name": name,
        "Id": hexid("net-" + name),
        "Created": "2026-11-26T11:22:08.500796389Z",
        "Scope": "local",
        "Driver": driver,
        "EnableIPv6": bool(subnet6),
        "IPAM": {"Driver": "default", "Options": None, "Config": config},
        "Internal": internal,
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": {},
        "Options": opts,
        "Labels": {},
    }
    if enable_ipv4 is not None:  # API 1.48+ (Docker 28) reports it
        doc["EnableIPv4"] = enable_ipv4
    return doc


def bridge_of(net: dict) -> str:
    return net["Options"].get("com.docker.network.bridge.name") or "br-" + net["Id"][:12]


def endpoint(net: dict, ip: str = "", ip6: str = "", gw_priority: int | None = None) -> tuple:
    ep = {
        "IPAMConfig": None,
        "Links": None,
        "Aliases": None,
        "NetworkID": net["Id"],
        "EndpointID": hexid(f"ep-{net['Name']}-{ip}-{ip6}"),
        "Gateway": "",
        "IPAddress": ip,
        "IPPrefixLen": 16 if ip else 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": ip6,
        "GlobalIPv6PrefixLen": 64 if ip6 else 0,
        "MacAddress": "02:42:ac:11:00:02" if ip else "",
        "DriverOpts": None,
    }
    if gw_priority is not None:  # API 1.48+
        ep["GwPriority"] = gw_priority
    return net["Name"], ep


def port(host_port: int, container_port: int, proto: str = "tcp", ip: str = "0.0.0.0") -> dict:
    return {"IP": ip, "PrivatePort": container_port, "PublicPort": host_port, "Type": proto}


def published(host_port: int, container_port: int, proto: str = "tcp") -> list[dict]:
    """`-p H:C/proto` as Docker 27+ lists it: one entry for 0.0.0.0, one for ::."""
    return [port(host_port, container_port, proto), port(host_port, container_port, proto, "::")]


def container(
    name: str,
    ports: list[dict],
    endpoints: list[tuple],
    *,
    mode: str | None = None,
    labels: dict | None = None,
) -> dict:
    """One entry of GET /containers/json."""
    return {
        "Id": hexid("ctr-" + name),
        "Names": ["/" + name],
        "Image": "dnetest/busybox",
        "ImageID": "sha256:" + hexid("image"),
        "Command": "/bin/httpd -f -p 80 -h /",
        "Created": 1795692129,
        "Ports": ports,
        "Labels": labels or {},
        "State": "running",
        "Status": "Up 2 minutes",
        "HostConfig": {"NetworkMode": mode or (endpoints[0][0] if endpoints else "none")},
        "NetworkSettings": {"Networks": dict(endpoints)},
        "Mounts": [],
    }


def info(
    server_version: str = "20.10.24+dfsg1",
    *,
    firewall: dict | None = None,
    rootless: bool = False,
) -> dict:
    """GET /info, with FirewallBackend (API 1.49+, Docker 28.1) when given."""
    sec = ["name=seccomp,profile=default"] + (["name=rootless"] if rootless else [])
    doc = {
        "ID": "JF7N:MXXQ:VI6E:4LVY:PDAH:DTAH:OV72:Z6WA:TQT5:XQXS:HL3G:TEP6",
        "ServerVersion": server_version,
        "IPv4Forwarding": True,
        "KernelVersion": "6.18.44",
        "OperatingSystem": "Debian GNU/Linux 12 (bookworm)",
        "SecurityOptions": sec,
        "Name": "vm",
    }
    if firewall is not None:
        doc["FirewallBackend"] = firewall
    return doc


def firewall(driver: str = "iptables", **info_pairs: str) -> dict:
    """FirewallBackend as /info reports it: Info is a list of [key, value] pairs."""
    return {"Driver": driver, "Info": [[k, v] for k, v in info_pairs.items()] or None}


def version(engine: str = "20.10.24+dfsg1", api: str = "1.41") -> dict:
    """GET /version."""
    return {
        "Platform": {"Name": "Docker Engine - Community"},
        "Version": engine,
        "ApiVersion": api,
        "MinAPIVersion": "1.24",
        "Os": "linux",
        "Arch": "amd64",
        "KernelVersion": "6.18.44",
        "Components": [
            {"Name": "Engine", "Version": engine, "Details": {"ApiVersion": api}},
        ],
    }


def hints(
    cmdline: list[str] | None = None,
    daemon_json: dict | None = None,
    proxy_argvs: list[list[str]] | None = None,
    pid: int | None = None,
) -> dict:
    return {"pid": pid, "cmdline": cmdline, "daemon_json": daemon_json, "proxy_argvs": proxy_argvs}


def proxy_argv(proto: str, host_ip: str, host_port: int, cip: str, cport: int) -> list[str]:
    return [
        "/usr/bin/docker-proxy",
        "-proto",
        proto,
        "-host-ip",
        host_ip,
        "-host-port",
        str(host_port),
        "-container-ip",
        cip,
        "-container-port",
        str(cport),
    ]


def state_doc(
    containers: list[dict],
    networks: list[dict],
    info_doc: dict,
    version_doc: dict,
    hints_doc: dict | None = None,
    host_addresses=HOST_ADDRS,
) -> dict:
    """A `check --docker-state` document."""
    doc = {
        "containers": containers,
        "networks": networks,
        "info": info_doc,
        "version": version_doc,
        "hints": hints_doc or hints(cmdline=["/usr/bin/dockerd", "-H", "fd://"]),
    }
    if host_addresses is not None:
        doc["host_addresses"] = [list(a) for a in host_addresses]
    return doc


def default_networks() -> list[dict]:
    """The three networks every daemon has."""
    return [
        network("none", driver="null"),
        network("host", driver="host"),
        network("bridge", "172.17.0.0/16"),
    ]


# --- decoding and analysing ------------------------------------------------------------------


def daemon_hints(doc: dict) -> DaemonHints:
    h = doc.get("hints") or {}
    return DaemonHints(
        pid=h.get("pid"),
        cmdline=tuple(h["cmdline"]) if h.get("cmdline") is not None else None,
        daemon_json=h.get("daemon_json"),
        proxy_argvs=tuple(tuple(a) for a in h["proxy_argvs"])
        if h.get("proxy_argvs") is not None
        else None,
    )


def raw(doc: dict) -> DockerRaw:
    return DockerRaw(
        doc["containers"], doc["networks"], doc["info"], doc["version"], daemon_hints(doc)
    )


def decode(doc: dict) -> DockerState:
    return decode_state(
        doc["containers"], doc["networks"], doc["info"], doc["version"], daemon_hints(doc)
    )


def ruleset(text: str, family: str = "ipv4", backend: str = "nf_tables") -> Ruleset:
    return parse_save(text, family, backend)


def family_rules(family: str, *texts_and_backends) -> FamilyRules:
    """FamilyRules from (text, backend) pairs, or a single text (nf_tables)."""
    pairs = [(t, "nf_tables") if isinstance(t, str) else t for t in texts_and_backends]
    return FamilyRules(family, tuple(parse_save(t, family, b) for t, b in pairs))


def analyse_doc(
    doc: dict,
    v4: str | FamilyRules | None = None,
    v6: str | FamilyRules | None = None,
    clients: dict[str, str] | None = None,
    host_addresses="doc",
    net=None,
) -> Snapshot:
    """Decode `doc` and analyse it against rule texts, as `check` does offline. A family
    whose text is None is "not read"; `net`: the host's netstate.NetState (None: not read)."""
    rules = {}
    for family, given in (("ipv4", v4), ("ipv6", v6)):
        if given is None:
            rules[family] = FamilyRules(family, (), "not read in this test")
        elif isinstance(given, FamilyRules):
            rules[family] = given
        else:
            rules[family] = FamilyRules(family, (parse_save(given, family, "nf_tables"),))
    if host_addresses == "doc":
        addrs = doc.get("host_addresses")
        host_addresses = tuple(tuple(a) for a in addrs) if addrs is not None else None
    return assess(Readings(0.0, raw(doc), "", rules, host_addresses, net=net), clients)


def port_report(
    snap: Snapshot,
    container_name: str,
    host_port: int,
    family: str = "ipv4",
    proto: str = "tcp",
    host_ip: str | None = None,
):
    found = [
        p
        for p in snap.ports
        if p.binding.container == container_name
        and p.binding.host_port == host_port
        and p.binding.family == family
        and p.binding.protocol == proto
        and (host_ip is None or p.binding.host_ip == host_ip)
    ]
    assert len(found) == 1, f"{container_name} {host_port}/{proto} {family}: {len(found)} reports"
    return found[0]


def states(snap: Snapshot) -> dict[str, str]:
    return {p.binding.label: p.verdict.state for p in snap.ports}


# --- rule text editing -----------------------------------------------------------------------


def without(text: str, *needles: str) -> str:
    """`text` minus every line containing one of `needles`; each needle must match a line."""
    lines = text.splitlines()
    for n in needles:
        assert any(n in line for line in lines), f"no line contains {n!r}"
    return "\n".join(line for line in lines if not any(n in line for n in needles)) + "\n"


def insert_before(text: str, anchor: str, *new: str) -> str:
    """Insert `new` lines before the first line that contains `anchor`."""
    lines = text.splitlines()
    i = next((i for i, line in enumerate(lines) if anchor in line), None)
    assert i is not None, f"no line contains {anchor!r}"
    return "\n".join([*lines[:i], *new, *lines[i:]]) + "\n"


def insert_after(text: str, anchor: str, *new: str) -> str:
    lines = text.splitlines()
    i = next((i for i, line in enumerate(lines) if anchor in line), None)
    assert i is not None, f"no line contains {anchor!r}"
    return "\n".join([*lines[: i + 1], *new, *lines[i + 1 :]]) + "\n"


def append_rules(text: str, table: str, *new: str) -> str:
    """Append rules at the end of `table` (before its COMMIT); declare chains they name with
    `:CHAIN - [0:0]` lines passed in `new` as well."""
    lines = text.splitlines()
    start = lines.index(f"*{table}")
    end = lines.index("COMMIT", start)
    decls = [n for n in new if n.startswith(":")]
    rules = [n for n in new if not n.startswith(":")]
    last_decl = max(i for i in range(start, end) if lines[i].startswith(":"))
    out = [*lines[: last_decl + 1], *decls, *lines[last_decl + 1 : end], *rules, *lines[end:]]
    return "\n".join(out) + "\n"


def with_table(text: str, name: str, *rules: str) -> str:
    """`text` plus `rules` in table `name` (raw or mangle), created with its built-in chains
    when missing; `:CHAIN - [0:0]` lines in `rules` declare user chains."""
    if f"*{name}\n" in text:
        return append_rules(text, name, *rules)
    chains = {"raw": ("PREROUTING", "OUTPUT"),
              "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")}[name]  # fmt: skip
    decl = [f":{c} ACCEPT [0:0]" for c in chains] + [r for r in rules if r.startswith(":")]
    body = [r for r in rules if not r.startswith(":")]
    return text + "\n".join([f"*{name}", *decl, *body, "COMMIT"]) + "\n"


def replace_line(text: str, old: str, new: str) -> str:
    assert old in text, f"{old!r} not in text"
    return text.replace(old, new, 1)


def set_policy(text: str, table: str, chain: str, policy: str) -> str:
    lines = text.splitlines()
    start = lines.index(f"*{table}")
    for i in range(start, len(lines)):
        if lines[i].startswith(f":{chain} "):
            lines[i] = f":{chain} {policy} [0:0]"
            return "\n".join(lines) + "\n"
    raise AssertionError(f"no chain {table}/{chain}")


# --- fixtures on disk ------------------------------------------------------------------------


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def d2010_doc(host_addresses=HOST_ADDRS, hints_doc: dict | None = None) -> dict:
    """The real Docker 20.10 capture as a docker-state document."""
    f = FIXTURES
    return state_doc(
        json.loads(read(f / "d2010_containers.json")),
        json.loads(read(f / "d2010_networks.json")),
        json.loads(read(f / "d2010_info.json")),
        json.loads(read(f / "d2010_version.json")),
        hints_doc or hints(cmdline=["/usr/sbin/dockerd", "-H", "fd://"]),
        host_addresses,
    )


def d2010_rules() -> tuple[str, str]:
    return read(FIXTURES / "d2010_iptables.txt"), read(FIXTURES / "d2010_ip6tables.txt")


LAYOUT_NAMES = ("g27_noproxy", "g28_0", "g28", "g29", "g29_noproxy")
# Recorded from real daemons (tests/fixtures/SOURCES.md): Debian's docker.io 26.1.5 and
# 28.5.2 with d2010's scenario, and 28.5.2 replaying the g28 layout's scenario.
REAL_NAMES = ("d26", "d28", "d28g28")


def layout(name: str) -> tuple[dict, str, str]:
    """(docker-state document, iptables-save text, ip6tables-save text) of one layout fixture;
    "d2010" is the real 20.10 capture, REAL_NAMES the other real ones."""
    if name == "d2010":
        return (d2010_doc(), *d2010_rules())
    if name in REAL_NAMES:
        files = [FIXTURES / f"{name}_{f}" for f in ("state.json", "iptables.txt", "ip6tables.txt")]
        return json.loads(read(files[0])), read(files[1]), read(files[2])
    d = LAYOUTS / name
    return json.loads(read(d / "state.json")), read(d / "iptables.txt"), read(d / "ip6tables.txt")


# --- one container, one port: the small world of the truth tables ---------------------------

WEB_IP, WEB_PORT, HOST_PORT = "172.17.0.2", 80, 8080

# Docker 20.10's rules for `docker run -p 8080:80` on docker0, userland proxy on, as
# iptables-save prints them (compare tests/fixtures/d2010_iptables.txt).
BASE_G27 = """\
# Generated by iptables-save v1.8.9 (nf_tables) on Thu Nov 26 11:22:09 2026
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
COMMIT
"""
DNAT_LINE = (
    "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80"
)
ACCEPT_LINE = (
    "-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT"
)
USER_RETURN = "-A DOCKER-USER -j RETURN"
# ufw-docker's /etc/ufw/after.rules (chaifeng/ufw-docker), as iptables-save lists it
UFW_DOCKER = [
    ":ufw-user-forward - [0:0]",
    ":ufw-docker-logging-deny - [0:0]",
    "-A ufw-docker-logging-deny -m limit --limit 3/min --limit-burst 10 -j LOG",
    "-A ufw-docker-logging-deny -j DROP",
]
UFW_USER = [
    "-j ufw-user-forward",
    "-s 10.0.0.0/8 -j RETURN",
    "-s 172.16.0.0/12 -j RETURN",
    "-s 192.168.0.0/16 -j RETURN",
    "-p udp -m udp --sport 53 --dport 1024:65535 -j RETURN",
    "-d 192.168.0.0/16 -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j ufw-docker-logging-deny",
    "-d 10.0.0.0/8 -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j ufw-docker-logging-deny",
    "-d 172.16.0.0/12 -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j ufw-docker-logging-deny",
    "-d 192.168.0.0/16 -p udp -m udp --dport 0:32767 -j ufw-docker-logging-deny",
    "-d 10.0.0.0/8 -p udp -m udp --dport 0:32767 -j ufw-docker-logging-deny",
    "-d 172.16.0.0/12 -p udp -m udp --dport 0:32767 -j ufw-docker-logging-deny",
]


def ufw_docker(*allow: str) -> str:
    """BASE_G27 behind ufw-docker, with `allow` as ufw's route rules (`ufw route allow ...`
    writes them into ufw-user-forward)."""
    text = append_rules(
        BASE_G27, "filter", *UFW_DOCKER, *(f"-A ufw-user-forward {a}" for a in allow)
    )
    return insert_before(text, USER_RETURN, *(f"-A DOCKER-USER {r}" for r in UFW_USER))


def web_doc(
    proxy: bool | None = True,
    *,
    engine: str = "20.10.24+dfsg1",
    api: str = "1.41",
    host_addresses=(("lo", "127.0.0.1"), ("eth0", HOST4), ("docker0", "172.17.0.1")),
    extra: list[dict] | None = None,
    proxy_argvs: list[list[str]] | None = None,
) -> dict:
    """Container `web` (172.17.0.2) on docker0 publishing 0.0.0.0:8080->80/tcp. `proxy` is the
    userland-proxy setting on dockerd's command line (None: nothing known about it)."""
    bridge = network("bridge", "172.17.0.0/16")
    web = container("web", [port(HOST_PORT, WEB_PORT)], [endpoint(bridge, WEB_IP)], mode="default")
    cmdline = None
    if proxy is not None:
        cmdline = ["/usr/sbin/dockerd", f"--userland-proxy={str(proxy).lower()}"]
    return state_doc(
        [web, *(extra or [])],
        default_networks(),
        info(engine),
        version(engine, api),
        hints(cmdline=cmdline, proxy_argvs=proxy_argvs),
        host_addresses,
    )


def web_verdict(text: str | FamilyRules, doc: dict | None = None, **kw):
    """The verdict of web's 0.0.0.0:8080/tcp against `text`."""
    snap = analyse_doc(doc or web_doc(), text, **kw)
    return port_report(snap, "web", HOST_PORT).verdict
