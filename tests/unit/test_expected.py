"""Expected rules per engine generation, against literal layouts of every generation.

Each layout (tests/fixtures/layouts/, plus the real 20.10 capture) is a Docker state and the
rules that Docker writes for it, as iptables-save prints them. With all rules in place every
expected rule is present and every port is ok; removing any one expected rule flips exactly
its evidence to 0 and moves the ports it serves to the state the packet path dictates.
"""

from __future__ import annotations

import pytest
from support.corefix import (
    HOST4,
    LAYOUT_NAMES,
    REAL_NAMES,
    analyse_doc,
    container,
    decode,
    default_networks,
    endpoint,
    hints,
    info,
    layout,
    network,
    port,
    port_report,
    published,
    state_doc,
    version,
)

from exporter.docker.model import DESIGN_DNAT, DESIGN_ROUTED
from exporter.expect import layouts as exp
from exporter.expect.model import PORT_KINDS, Expected
from exporter.rules.iptsave import parse_save
from exporter.rules.normalize import rule_key

ALL_LAYOUTS = ("d2010", *REAL_NAMES, *LAYOUT_NAMES)
GENERATIONS = {
    "d2010": "g27",
    "d26": "g27",
    "d28": "g28",
    "d28g28": "g28",
    "g27_noproxy": "g27",
    "g28_0": "g28.0",
    "g28": "g28",
    "g29": "g29",
    "g29_noproxy": "g29",
}


def analyse_layout(name: str, v4: str | None = None, v6: str | None = None):
    doc, text4, text6 = layout(name)
    return analyse_doc(doc, text4 if v4 is None else v4, text6 if v6 is None else v6)


def all_evidence(snap):
    for p in snap.ports:
        yield from p.rules
    yield from snap.jumps
    yield from snap.bridge_rules


@pytest.mark.parametrize("name", ALL_LAYOUTS)
def test_layout_is_healthy(name):
    snap = analyse_layout(name)
    assert snap.daemon.generation == GENERATIONS[name]
    assert snap.ports, "the layout publishes ports"
    bad = {p.binding.label: p.verdict for p in snap.ports if p.verdict.state != "ok"}
    assert bad == {}
    missing = [e.expected.line for e in all_evidence(snap) if not e.present]
    assert missing == []
    assert snap.stale == ()
    assert snap.jumps, "the layout's jumps are checked"
    ruled = [p for p in snap.ports if p.binding.design in (DESIGN_DNAT, DESIGN_ROUTED)]
    assert ruled and all(p.rules for p in ruled), "every DNAT/routed port has expectations"


def test_expectation_counts_for_the_real_capture():
    snap = analyse_layout("d2010")
    kinds = {}
    for p in snap.ports:
        for e in p.rules:
            kinds[e.expected.kind] = kinds.get(e.expected.kind, 0) + 1
    # 4 DNAT ports and the loopback one: DNAT + ACCEPT each; hairpin only for the 4 (20.10)
    assert kinds == {"dnat": 5, "forward_accept": 5, "hairpin_masquerade": 4}
    assert len(snap.jumps) == 6  # 4 global + FORWARD -o BR -j DOCKER for two bridges
    assert len(snap.bridge_rules) == 8  # per bridge: 2 FORWARD ACCEPTs, nat RETURN, MASQUERADE


# --- what each generation expects -----------------------------------------------------------


def expected_lines(name: str) -> set[str]:
    snap = analyse_layout(name)
    return {e.expected.line for e in all_evidence(snap)}


BR = "br-311a970dfdd4"


@pytest.mark.parametrize(
    ("name", "present", "absent"),
    [
        (
            "d2010",
            [
                "-t nat -A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
                "-t nat -A DOCKER -i docker0 -j RETURN",
                "-t filter -A FORWARD -j DOCKER-ISOLATION-STAGE-1",
                "-t nat -A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE",
            ],
            ["-t filter -A FORWARD -j DOCKER-FORWARD"],
        ),
        (
            "g27_noproxy",
            [
                "-t nat -A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER",
                "-t nat -A DOCKER -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00:18::2]:80",
                "-t nat -A DOCKER -p tcp -m tcp --dport 8081 -j DNAT --to-destination 172.17.0.2:80",
            ],
            [f"-t nat -A DOCKER -i {BR} -j RETURN", "-t nat -A DOCKER -i docker0 -j RETURN"],
        ),
        (
            "g28_0",
            [
                "-t filter -A FORWARD -m set --match-set docker-ext-bridges-v4 dst -j DOCKER",
                "-t filter -A FORWARD -j DOCKER-ISOLATION-STAGE-1",
                "-t raw -A PREROUTING -d 127.0.0.1/32 ! -i lo -p tcp -m tcp --dport 8443 -j DROP",
                f"-t nat -A DOCKER -i {BR} -j RETURN",
            ],
            [
                # hairpin MASQUERADE only without the proxy from 28 on
                "-t nat -A POSTROUTING -s 172.18.0.2/32 -d 172.18.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE",
                f"-t filter -A FORWARD -o {BR} -j DOCKER",
            ],
        ),
        (
            "g28",
            [
                f"-t nat -A DOCKER ! -s fe80::/10 ! -i {BR} -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00:18::2]:80",
                f"-t nat -A DOCKER -d 2001:db8:1::1/128 ! -s fe80::/10 ! -i {BR} -p tcp -m tcp --dport 8054 -j DNAT --to-destination [fd00:18::3]:53",
                f"-t nat -A DOCKER -d {HOST4}/32 ! -i {BR} -p tcp -m tcp --dport 8053 -j DNAT --to-destination 172.18.0.3:53",
                "-t filter -A DOCKER-FORWARD -j DOCKER-ISOLATION-STAGE-1",
                f"-t filter -A DOCKER-BRIDGE -o {BR} -j DOCKER",
                f"-t filter -A DOCKER-FORWARD -i {BR} -j ACCEPT",
                "-t nat -A DOCKER ! -i docker0 -p sctp -m sctp --dport 3868 -j DNAT --to-destination 172.17.0.2:3868",
                # multi: bridge has GwPriority 1, but the dual-stack appnet takes the ports
                f"-t filter -A DOCKER -d 172.18.0.4/32 ! -i {BR} -o {BR} -p tcp -m tcp --dport 90 -j ACCEPT",
                f"-t nat -A DOCKER ! -s fe80::/10 ! -i {BR} -p tcp -m tcp --dport 8090 -j DNAT --to-destination [fd00:18::4]:90",
            ],
            [
                "-t filter -A FORWARD -j DOCKER-ISOLATION-STAGE-1",
                "-t raw -A PREROUTING -d 172.18.0.2/32 ! -i br-311a970dfdd4 -j DROP",
                "-t filter -A DOCKER -d 172.17.0.5/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 90 -j ACCEPT",
            ],
        ),
        (
            "g29",
            [
                "-t filter -A DOCKER -d 172.20.0.2/32 ! -i routed1 -o routed1 -p tcp -m tcp --dport 80 -j ACCEPT",
                "-t nat -A DOCKER ! -i unprot1 -p tcp -m tcp --dport 8083 -j DNAT --to-destination 172.21.0.2:80",
                "-t raw -A PREROUTING -d 127.0.0.1/32 ! -i lo -p tcp -m tcp --dport 8081 -j DROP",
            ],
            [
                f"-t nat -A DOCKER -i {BR} -j RETURN",
                "-t filter -A DOCKER-FORWARD -j DOCKER-ISOLATION-STAGE-1",
                # routed: no DNAT and no MASQUERADE; nat-unprotected: no per-port ACCEPT
                "-t nat -A DOCKER ! -i routed1 -p tcp -m tcp --dport 8082 -j DNAT --to-destination 172.20.0.2:80",
                "-t nat -A POSTROUTING -s 172.20.0.0/16 ! -o routed1 -j MASQUERADE",
                "-t filter -A DOCKER -d 172.21.0.2/32 ! -i unprot1 -o unprot1 -p tcp -m tcp --dport 80 -j ACCEPT",
            ],
        ),
        (
            "g29_noproxy",
            [
                "-t nat -A DOCKER ! -s fe80::/10 -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00:18::2]:80",
                "-t nat -A POSTROUTING -s fd00:18::2/128 -d fd00:18::2/128 -p tcp -m tcp --dport 80 -j MASQUERADE",
                "-t nat -A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER",
            ],
            ["-t nat -A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER"],
        ),
    ],
)
def test_generation_specific_expectations(name, present, absent):
    lines = expected_lines(name)
    for line in present:
        assert line in lines
    for line in absent:
        assert line not in lines


def test_no_expectations_for_designs_without_rules():
    snap = analyse_layout("g29")
    for name in ("iso", "internal"):
        p = port_report(snap, name, 8084 if name == "iso" else 8085)
        assert p.rules == () and p.verdict.state == "ok"
    assert not any(j.expected.bridge in ("iso1", "int1") for j in (*snap.jumps, *snap.bridge_rules))


# --- removing each expected rule ------------------------------------------------------------

REACH_DOCKER_CHAIN = {
    ("filter", "FORWARD", "DOCKER"),
    ("filter", "FORWARD", "DOCKER-FORWARD"),
    ("filter", "DOCKER-FORWARD", "DOCKER-BRIDGE"),
    ("filter", "DOCKER-BRIDGE", "DOCKER"),
}


def after_removal(e: Expected, b, own_keys, proxy: bool) -> str:
    """The state a port must be in once the kernel lacks rule `e`."""
    ruled = b.family == e.family and b.design in (DESIGN_DNAT, DESIGN_ROUTED)
    if not ruled:
        return "ok"
    if e.kind in PORT_KINDS:
        if e.key not in own_keys:
            return "ok"
    elif e.bridge not in ("", b.bridge):
        return "ok"
    where = (e.table, e.chain, e.target)
    if e.kind == "dnat" or where == ("nat", "PREROUTING", "DOCKER"):
        if b.design == DESIGN_ROUTED:
            return "ok"  # routed packets are not for a local address
        return "proxied" if proxy else "unreachable"
    if e.kind == "forward_accept" or where in REACH_DOCKER_CHAIN:
        return "dropped"
    replies = {("filter", "FORWARD", "ACCEPT"), ("filter", "DOCKER-FORWARD", "ACCEPT")}
    if where in replies and "--ctstate" not in e.text:  # `-i BR [! -o BR] -j ACCEPT`
        return "dropped"
    return "ok"


def removal_cases():
    for name in ALL_LAYOUTS:
        snap = analyse_layout(name)
        seen = set()
        for e in all_evidence(snap):
            x = e.expected
            if (x.family, x.key) not in seen:
                seen.add((x.family, x.key))
                yield pytest.param(name, x, id=f"{name}:{x.kind}:{x.line}")


def remove_rules(text: str, family: str, e: Expected) -> tuple[str, int]:
    """`text` without the rules of e's table whose key is e's key; and how many there were."""
    rs = parse_save(text, family, "nf_tables")
    doomed = {r.text for r in rs.tables[e.table].chains[e.chain].rules if rule_key(r) == e.key}
    out, table, removed = [], "", 0
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        if table == e.table and line in doomed:
            removed += 1
            continue
        out.append(line)
    return "\n".join(out) + "\n", removed


@pytest.mark.parametrize(("name", "e"), list(removal_cases()))
def test_removing_one_expected_rule(name, e):
    doc, text4, text6 = layout(name)
    if e.family == "ipv4":
        text4, removed = remove_rules(text4, "ipv4", e)
    else:
        text6, removed = remove_rules(text6, "ipv6", e)
    assert removed >= 1
    snap = analyse_doc(doc, text4, text6)
    for ev in all_evidence(snap):
        same = ev.expected.family == e.family and ev.expected.key == e.key
        assert ev.present is not same, ev.expected.line
    proxy = bool(snap.daemon.userland_proxy)
    for p in snap.ports:
        own = {x.expected.key for x in p.rules}
        want = after_removal(e, p.binding, own, proxy)
        assert p.verdict.state == want, (p.binding.label, p.verdict)
        if want != "ok":
            assert f"expected rule missing: {e.line}" in p.verdict.reason


# --- daemons whose rules the exporter does not (or cannot) check ----------------------------


def one_port_doc(info_doc: dict, hints_doc: dict, engine: str = "27.5.1") -> dict:
    nets = default_networks()
    web = container("web", published(8080, 80), [endpoint(nets[2], "172.17.0.2")], mode="default")
    return state_doc([web], nets, info_doc, version(engine, "1.47"), hints_doc)


EMPTY_RULES = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"


def test_iptables_false_expects_nothing_and_trusts_the_proxy():
    doc = one_port_doc(info("27.5.1"), hints(cmdline=["/usr/bin/dockerd", "--iptables=false"]))
    snap = analyse_doc(doc, EMPTY_RULES, EMPTY_RULES)
    assert snap.jumps == () and snap.bridge_rules == ()
    for p in snap.ports:
        assert p.rules == ()
        assert p.verdict.state == "ok"
        assert "--iptables=false" in p.verdict.reason
        assert "docker-proxy" in p.verdict.reason


def test_iptables_false_without_the_proxy_is_unreachable():
    cmd = ["/usr/bin/dockerd", "--iptables=false", "--userland-proxy=false"]
    snap = analyse_doc(one_port_doc(info("27.5.1"), hints(cmdline=cmd)), EMPTY_RULES, EMPTY_RULES)
    assert {p.verdict.state for p in snap.ports} == {"unreachable"}


def test_ip6tables_false_only_drops_ipv6_expectations():
    cmd = ["/usr/bin/dockerd", "--ip6tables=false"]
    doc, text4, text6 = layout("g28")
    doc["hints"]["cmdline"] = cmd
    snap = analyse_doc(doc, text4, text6)
    assert not [j for j in snap.jumps if j.expected.family == "ipv6"]
    for p in snap.ports:
        if p.binding.family == "ipv6":
            assert p.rules == () and "--ip6tables=false" in p.binding.why
        elif p.binding.design == DESIGN_DNAT:
            assert p.rules


def test_rootless_is_unknown_with_a_reason():
    doc = one_port_doc(info("27.5.1", rootless=True), hints(cmdline=["dockerd-rootless"]))
    snap = analyse_doc(doc, EMPTY_RULES, EMPTY_RULES)
    assert snap.jumps == ()
    for p in snap.ports:
        assert p.rules == ()
        assert p.verdict.state == "unknown"
        assert "rootless" in p.verdict.reason and p.verdict.code == "rootless"


def test_nftables_backend_is_unknown_not_missing():
    fw = {"Driver": "nftables", "Info": None}
    doc = one_port_doc(info("29.1.0", firewall=fw), hints(cmdline=["dockerd"]), "29.1.0")
    snap = analyse_doc(doc, EMPTY_RULES, EMPTY_RULES)
    assert snap.daemon.generation == "nftables" and snap.jumps == ()
    assert {p.verdict.state for p in snap.ports} == {"unknown"}  # never a false ok
    assert "nftables" in port_report(snap, "web", 8080).verdict.reason


def test_expected_rules_compare_with_the_kernels_spelling():
    # the expected DNAT is written by hand; the kernel's has /32, -m tcp and reordering
    state = decode(layout("g28")[0])
    b = next(b for b in state.bindings if b.container == "dns" and b.host_ip == HOST4)
    net = state.network_by_id(b.network_id)
    dnat = next(e for e in exp.for_binding(b, state.daemon, net) if e.kind == "dnat")
    kernel = f"-A DOCKER -d {HOST4}/32 ! -i {BR} -p tcp -m tcp --dport 8053 -j DNAT --to-destination 172.18.0.3:53"
    rs = parse_save(f"*nat\n:DOCKER - [0:0]\n{kernel}\nCOMMIT\n", "ipv4", "nf_tables")
    assert rule_key(rs.tables["nat"].chains["DOCKER"].rules[0]) == dnat.key


def test_a_rule_spelled_otherwise_is_present_by_its_key():
    # its line differs from the expected text (the first comparison); its key does not
    doc, text4, text6 = layout("g28")
    line = next(ln for ln in text4.splitlines() if " -j DNAT " in ln and " -p tcp -m tcp " in ln)
    respelled = line.replace(" -p tcp -m tcp ", " -p 6 -m tcp ")
    snap = analyse_doc(doc, text4.replace(line, respelled), text6)
    assert respelled not in text4
    assert all(ev.present for ev in all_evidence(snap))


def test_userland_proxy_unknown_expects_the_proxy_layout():
    # nothing tells whether the proxy is on: expect Docker's default (on)
    nets = default_networks()
    web = container("web", [port(8080, 80)], [endpoint(nets[2], "172.17.0.2")], mode="default")
    doc = state_doc([web], nets, info("28.3.3"), version("28.3.3", "1.51"), hints())
    state = decode(doc)
    assert state.daemon.userland_proxy is None
    lines = {e.line for e in exp.global_jumps("ipv4", state.daemon)}
    assert "-t nat -A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER" in lines
    net = state.network_by_id(state.bindings[0].network_id)
    dnat = exp.for_binding(state.bindings[0], state.daemon, net)[0]
    assert "! -i docker0" in dnat.text
    assert network("x")["Name"] == "x"
