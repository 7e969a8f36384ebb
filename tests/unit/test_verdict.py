"""Truth tables of the path evaluator over small literal rulesets.

Every case starts from Docker 20.10's rules for `docker run -p 8080:80` on docker0 (corefix.
BASE_G27: web at 172.17.0.2, FORWARD policy DROP, userland proxy on) and changes a few lines.
Each asserts the state of web's 0.0.0.0:8080/tcp AND that the reason names what decided it.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from support.corefix import (
    ACCEPT_LINE,
    BASE_G27,
    DNAT_LINE,
    HOST4,
    USER_RETURN,
    analyse_doc,
    append_rules,
    container,
    endpoint,
    family_rules,
    insert_after,
    insert_before,
    layout,
    network,
    port,
    port_report,
    proxy_argv,
    replace_line,
    set_policy,
    web_doc,
    web_verdict,
    without,
)

from exporter.path.codes import CODES

PRE_JUMP = "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER"
NAT_RETURN = "-A DOCKER -i docker0 -j RETURN"
FWD_JUMP = "-A FORWARD -o docker0 -j DOCKER"
REPLY_ACCEPT = "-A FORWARD -i docker0 ! -o docker0 -j ACCEPT"
STALE_NOBODY = (
    "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.9:80"
)
STALE_API = (
    "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.3:80"
)


def user(*rules: str) -> str:
    """BASE_G27 with `rules` in DOCKER-USER (before its RETURN)."""
    return insert_before(BASE_G27, USER_RETURN, *(f"-A DOCKER-USER {r}" for r in rules))


def with_chain(text: str, table: str, name: str, *rules: str) -> str:
    return append_rules(text, table, f":{name} - [0:0]", *rules)


def api_doc(**kw) -> dict:
    """web plus `api` (172.17.0.3) publishing 8081->80."""
    bridge = network("bridge", "172.17.0.0/16")
    api = container("api", [port(8081, 80)], [endpoint(bridge, "172.17.0.3")], mode="default")
    return web_doc(extra=[api], **kw)


NO_ADDRS = web_doc(host_addresses=None)
TWO_ADDRS = web_doc(host_addresses=(("eth0", HOST4), ("eth1", "198.51.100.1"), ("lo", "127.0.0.1")))
PROXY_OFF = web_doc(False)
PROXY_UNKNOWN = web_doc(None)
DNAT_BY = "DNAT by nat/DOCKER #2, accepted by filter/DOCKER #1"


def case(name: str, text: str, state: str, *reason: str, doc: dict | None = None, **kw):
    """One row: web's port against `text` (docker state `doc`, default web_doc()) must be in
    `state`, with every `reason` fragment in the reason; `kw` goes to analyse_doc."""
    return pytest.param(text, doc, kw, state, reason, id=name)


CASES = [
    case("baseline", BASE_G27, "ok", DNAT_BY),
    # --- nat: first DNAT wins
    case(
        "stale DNAT after Docker's", insert_after(BASE_G27, DNAT_LINE, STALE_NOBODY), "ok", DNAT_BY
    ),
    case(
        "stale DNAT before Docker's, nobody's address",
        insert_before(BASE_G27, DNAT_LINE, STALE_NOBODY),
        "misrouted",
        "nat/DOCKER #2",
        STALE_NOBODY,
        "172.17.0.9:80 (no container has it) instead of 172.17.0.2:80",
    ),
    case(
        "stale DNAT before Docker's, another container's address",
        insert_before(BASE_G27, DNAT_LINE, STALE_API),
        "misrouted",
        "nat/DOCKER #2",
        "172.17.0.3:80 (container api) instead of 172.17.0.2:80",
        doc=api_doc(),
    ),
    case(
        "stale DNAT in PREROUTING before the jump",
        insert_before(
            BASE_G27,
            PRE_JUMP,
            "-A PREROUTING -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.9.9.9:80",
        ),
        "misrouted",
        "nat/PREROUTING #1",
        "10.9.9.9:80 (no container has it)",
    ),
    case(
        "DNAT without a port keeps the host port",
        replace_line(BASE_G27, "--to-destination 172.17.0.2:80", "--to-destination 172.17.0.2"),
        "misrouted",
        "172.17.0.2:8080 (no container has it) instead of 172.17.0.2:80",
    ),
    case(
        "DNAT to a range",
        replace_line(
            BASE_G27, "--to-destination 172.17.0.2:80", "--to-destination 172.17.0.2-172.17.0.4:80"
        ),
        "unknown",
        "nat/DOCKER #2",
        "DNAT destination not understood",
    ),
    case(
        "REDIRECT before Docker's DNAT",
        insert_before(
            BASE_G27, DNAT_LINE, "-A DOCKER -p tcp -m tcp --dport 8080 -j REDIRECT --to-ports 3128"
        ),
        "misrouted",
        "nat/DOCKER #2",
        "redirects it to a local port",
    ),
    # --- nat DOCKER's RETURN for the bridge
    case("RETURN -i docker0, client interface unknown", BASE_G27, "ok", DNAT_BY, doc=NO_ADDRS),
    case(
        "RETURN for the client's interface",
        insert_before(BASE_G27, DNAT_LINE, "-A DOCKER -i eth0 -j RETURN"),
        "proxied",
        "no DNAT applies",
        "docker-proxy serves it",
    ),
    case(
        "RETURN for an interface, client interface unknown",
        insert_before(BASE_G27, DNAT_LINE, "-A DOCKER -i eth0 -j RETURN"),
        "unknown",
        "nat/DOCKER #2 may or may not apply: -i eth0",
        doc=NO_ADDRS,
    ),
    # --- the jump into DOCKER
    case(
        "PREROUTING jump missing, proxy on",
        without(BASE_G27, PRE_JUMP),
        "proxied",
        "docker-proxy serves it (userland proxy on)",
        "the container sees the host",
        f"expected rule missing: -t nat {PRE_JUMP}",
    ),
    case(
        "PREROUTING jump missing, proxy off",
        without(BASE_G27, PRE_JUMP),
        "unreachable",
        "no DNAT applies and the userland proxy is off",
        "expected rule missing: -t nat -A DOCKER -p tcp",
        doc=PROXY_OFF,
    ),
    case(
        "PREROUTING jump missing, proxy setting unknown",
        without(BASE_G27, PRE_JUMP),
        "unknown",
        "userland proxy setting unknown",
        f"expected rule missing: -t nat {PRE_JUMP}",
        doc=PROXY_UNKNOWN,
    ),
    case(
        "PREROUTING jump missing, proxy process listens",
        without(BASE_G27, PRE_JUMP),
        "proxied",
        "docker-proxy listens",
        doc=web_doc(None, proxy_argvs=[proxy_argv("tcp", "0.0.0.0", 8080, "172.17.0.2", 80)]),
    ),
    case(
        "PREROUTING jump missing, other ports' proxies listen",
        without(BASE_G27, PRE_JUMP),
        "unreachable",
        "no docker-proxy process listens on it",
        doc=web_doc(None, proxy_argvs=[proxy_argv("tcp", "0.0.0.0", 9999, "172.17.0.2", 80)]),
    ),
    case(
        "jump only for the host's address",
        replace_line(BASE_G27, PRE_JUMP, f"-A PREROUTING -d {HOST4}/32 -j DOCKER"),
        "ok",
        DNAT_BY,
    ),
    case(
        "jump only for the host's address, host addresses unknown",
        replace_line(BASE_G27, PRE_JUMP, f"-A PREROUTING -d {HOST4}/32 -j DOCKER"),
        "unknown",
        "nat/PREROUTING #1 may or may not apply",
        f"-d {HOST4}/32",
        doc=NO_ADDRS,
    ),
    # --- filter FORWARD
    case(
        "per-port ACCEPT missing",
        without(BASE_G27, ACCEPT_LINE),
        "dropped",
        "after translation the connection is dropped by filter/FORWARD policy DROP",
        f"expected rule missing: -t filter {ACCEPT_LINE}",
    ),
    case(
        "per-bridge jump missing",
        without(BASE_G27, FWD_JUMP),
        "dropped",
        "filter/FORWARD policy DROP",
        f"expected rule missing: -t filter {FWD_JUMP}",
    ),
    case(
        "FORWARD policy ACCEPT and no Docker filter rules at all",
        set_policy(
            BASE_G27.split("*filter")[0] + "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n"
            ":OUTPUT ACCEPT [0:0]\nCOMMIT\n*nat" + BASE_G27.split("*nat")[1],
            "filter",
            "FORWARD",
            "ACCEPT",
        ),
        "ok",
        "accepted by filter/FORWARD policy ACCEPT",
    ),
    case(
        "reply path dropped (-i docker0 ! -o docker0 missing)",
        without(BASE_G27, REPLY_ACCEPT),
        "dropped",
        "the replies are dropped by filter/FORWARD policy DROP",
        f"expected rule missing: -t filter {REPLY_ACCEPT}",
    ),
    case(
        "docker 28 per-network DROP after a missing per-port ACCEPT",
        insert_after(
            without(BASE_G27, ACCEPT_LINE),
            "-A FORWARD -i docker0 -o docker0 -j ACCEPT",
            "-A DOCKER ! -i docker0 -o docker0 -j DROP",
        ),
        "dropped",
        "dropped by filter/DOCKER #1",
        "-A DOCKER ! -i docker0 -o docker0 -j DROP",
    ),
    # --- DOCKER-USER
    case(
        "DROP in DOCKER-USER",
        user("-j DROP"),
        "dropped",
        "dropped by filter/DOCKER-USER #1 `-A DOCKER-USER -j DROP`",
    ),
    case(
        "REJECT in DOCKER-USER",
        user("-p tcp -j REJECT --reject-with tcp-reset"),
        "dropped",
        "filter/DOCKER-USER #1",
        "REJECT",
    ),
    case("-s other network, generic client", user("-s 10.0.0.0/8 -j DROP"), "ok", DNAT_BY),
    case(
        "-s other network, that client",
        user("-s 10.0.0.0/8 -j DROP"),
        "dropped",
        "filter/DOCKER-USER #1",
        clients={"ipv4": "10.1.2.3"},
    ),
    case(
        "! -s allowed network, every client: the replies of the allowed ones are dropped",
        user("! -s 10.0.0.0/8 -j DROP"),
        "dropped",
        "no remote source reaches it",
        "filter/DOCKER-USER #1",
    ),
    case(
        "! -s allowed network, allowed client: the container's replies are dropped",
        user("! -s 10.0.0.0/8 -j DROP"),
        "dropped",
        "the replies are dropped by filter/DOCKER-USER #1",
        clients={"ipv4": "10.1.2.3"},
    ),
    case(
        "-i ext ! -s allowed network, allowed client",
        user("-i eth0 ! -s 10.0.0.0/8 -j DROP"),
        "ok",
        DNAT_BY,
        clients={"ipv4": "10.1.2.3"},
    ),
    case(
        "-i ext ! -s allowed network, every client: works as configured",
        user("-i eth0 ! -s 10.0.0.0/8 -j DROP"),
        "ok",
        DNAT_BY,
        "only from 10.0.0.0/8: other sources after translation the connection is dropped by "
        "filter/DOCKER-USER #1",
    ),
    case("-i client interface", user("-i eth0 -j DROP"), "dropped", "filter/DOCKER-USER #1"),
    case("-i other interface", user("-i eth1 -j DROP"), "ok", DNAT_BY),
    case(
        "! -i client interface hits the replies",
        user("! -i eth0 -j DROP"),
        "dropped",
        "the replies are dropped by filter/DOCKER-USER #1",
    ),
    case("! -i client interface -o bridge", user("! -i eth0 -o docker0 -j DROP"), "ok", DNAT_BY),
    case("-i wildcard matching", user("-i eth+ -j DROP"), "dropped", "filter/DOCKER-USER #1"),
    case("-i wildcard not matching", user("-i wlan+ -j DROP"), "ok", DNAT_BY),
    case(
        "-i interface, client interface unknown",
        user("-i eth0 -j DROP"),
        "unknown",
        "filter/DOCKER-USER #1 may or may not apply: -i eth0",
        doc=NO_ADDRS,
    ),
    case("-o bridge", user("-o docker0 -j DROP"), "dropped", "filter/DOCKER-USER #1"),
    case("-o other bridges wildcard", user("-o br-+ -j DROP"), "ok", DNAT_BY),
    case(
        "-d container address", user("-d 172.17.0.2/32 -j DROP"), "dropped", "filter/DOCKER-USER #1"
    ),
    case(
        "multiport on the container port",
        user("-p tcp -m multiport --dports 80,443 -j DROP"),
        "dropped",
        "filter/DOCKER-USER #1",
    ),
    case(
        "multiport on the host port (FORWARD sees the container port)",
        user("-p tcp -m multiport --dports 8080,8443 -j DROP"),
        "ok",
        DNAT_BY,
    ),
    case(
        "conntrack NEW dropped",
        user("-m conntrack --ctstate NEW -j DROP"),
        "dropped",
        "filter/DOCKER-USER #1",
    ),
    case(
        "conntrack INVALID dropped", user("-m conntrack --ctstate INVALID -j DROP"), "ok", DNAT_BY
    ),
    case(
        "established accepted, rest dropped",
        user("-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN", "-j DROP"),
        "dropped",
        "filter/DOCKER-USER #2",
    ),
    case(
        "replies dropped by state",
        user("-m state --state ESTABLISHED -j DROP"),
        "dropped",
        "the replies are dropped by filter/DOCKER-USER #1",
    ),
    case(
        "addrtype LOCAL does not match forwarded traffic",
        user("-m addrtype --dst-type LOCAL -j DROP"),
        "ok",
        DNAT_BY,
    ),
    case(
        "rate limit before a DROP",
        user("-m limit --limit 5/sec -j RETURN", "-j DROP"),
        "unknown",
        "filter/DOCKER-USER #1 may or may not apply",
        "-m limit",
        "depends on the traffic rate",
    ),
    case(
        "rate-limited RETURN at the end changes nothing",
        user("-m limit --limit 5/sec -j RETURN"),
        "ok",
        DNAT_BY,
    ),
    case(
        "unknown match module",
        user("-m frobnicate --frob 3 -j DROP"),
        "unknown",
        "filter/DOCKER-USER #1 may or may not apply: -m frobnicate --frob 3",
    ),
    case(
        "unknown target",
        user("-p tcp -j NFQUEUE --queue-num 1"),
        "unknown",
        "filter/DOCKER-USER #1: target NFQUEUE not understood",
    ),
    case(
        "MARK then a mark match",
        user("-j MARK --set-xmark 0x1/0xffffffff", "-m mark --mark 0x1 -j DROP"),
        "dropped",
        "filter/DOCKER-USER #2",
    ),
    case("LOG is not a verdict", user('-j LOG --log-prefix "docker-user: "'), "ok", DNAT_BY),
    # --- sub-chains: RETURN, goto, loops
    case(
        "RETURN from a sub-chain before its DROP",
        with_chain(
            user("-j FILTERS"),
            "filter",
            "FILTERS",
            "-A FILTERS -p tcp -j RETURN",
            "-A FILTERS -j DROP",
        ),
        "ok",
        DNAT_BY,
    ),
    case(
        "DROP in a sub-chain",
        with_chain(
            user("-j FILTERS"),
            "filter",
            "FILTERS",
            "-A FILTERS -p udp -j RETURN",
            "-A FILTERS -j DROP",
        ),
        "dropped",
        "filter/FILTERS #2",
    ),
    case(
        "goto a chain that falls off: back to FORWARD, Docker's rules apply",
        with_chain(
            user("-p tcp -g FILTERS"), "filter", "FILTERS", "-A FILTERS -s 10.0.0.0/8 -j DROP"
        ),
        "ok",
        DNAT_BY,
    ),
    case(
        "goto from FORWARD: falling off ends FORWARD (policy DROP)",
        with_chain(
            insert_before(BASE_G27, "-A FORWARD -j DOCKER-USER", "-A FORWARD -p tcp -g FILTERS"),
            "filter",
            "FILTERS",
            "-A FILTERS -s 10.0.0.0/8 -j DROP",
        ),
        "dropped",
        "filter/FORWARD policy DROP",
    ),
    case(
        "jump (not goto) from FORWARD: falling off continues in FORWARD",
        with_chain(
            insert_before(BASE_G27, "-A FORWARD -j DOCKER-USER", "-A FORWARD -p tcp -j FILTERS"),
            "filter",
            "FILTERS",
            "-A FILTERS -s 10.0.0.0/8 -j DROP",
        ),
        "ok",
        DNAT_BY,
    ),
    case(
        "jump loop",
        with_chain(user("-j LOOP"), "filter", "LOOP", "-A LOOP -j DOCKER-USER"),
        "unknown",
        "too deep",
    ),
    # --- raw and INPUT
    case(
        "raw PREROUTING drops the port",
        append_rules(BASE_G27, "raw", "-A PREROUTING -p tcp -m tcp --dport 8080 -j DROP"),
        "dropped",
        "the connection is dropped by raw/PREROUTING #1",
    ),
    case(
        "raw PREROUTING drops another port",
        append_rules(BASE_G27, "raw", "-A PREROUTING -p tcp -m tcp --dport 8081 -j DROP"),
        "ok",
        DNAT_BY,
    ),
    case(
        "raw PREROUTING drops the container's replies",
        append_rules(BASE_G27, "raw", "-A PREROUTING -i docker0 -p tcp -j DROP"),
        "dropped",
        "the container's replies are dropped by raw/PREROUTING #1",
    ),
    case(
        "raw NOTRACK: untracked, so not translated; docker-proxy answers",
        append_rules(BASE_G27, "raw", "-A PREROUTING -p tcp -j CT --notrack"),
        "proxied",
        "untracked (by raw/PREROUTING #1 `-A PREROUTING -p tcp -j CT --notrack`), so no DNAT",
    ),
    case(
        "INPUT drop does not touch the DNAT path",
        append_rules(BASE_G27, "filter", "-A INPUT -p tcp -m tcp --dport 8080 -j DROP"),
        "ok",
        DNAT_BY,
    ),
    case(
        "INPUT drop on the proxied path",
        append_rules(
            without(BASE_G27, DNAT_LINE), "filter", "-A INPUT -p tcp -m tcp --dport 8080 -j DROP"
        ),
        "dropped",
        "the untranslated connection is dropped by filter/INPUT #1",
    ),
    case(
        "INPUT policy DROP on the proxied path",
        set_policy(without(BASE_G27, DNAT_LINE), "filter", "INPUT", "DROP"),
        "dropped",
        "the untranslated connection is dropped by filter/INPUT policy DROP",
    ),
]


@pytest.mark.parametrize(("text", "doc", "kw", "state", "reason"), CASES)
def test_truth_table(text, doc, kw, state, reason):
    v = web_verdict(text, doc, **kw)
    assert v.state == state, v
    assert CODES[v.code].state == state, v
    for part in reason:
        assert part in v.reason, v


CODE_CASES = [
    ("dnat_accepted", BASE_G27, None),
    ("shadowed_by_dnat", insert_before(BASE_G27, DNAT_LINE, STALE_NOBODY), None),
    (
        "redirected",
        insert_before(
            BASE_G27, DNAT_LINE, "-A DOCKER -p tcp -m tcp --dport 8080 -j REDIRECT --to-ports 3128"
        ),
        None,
    ),
    ("dnat_missing", without(BASE_G27, PRE_JUMP), None),
    ("no_proxy", without(BASE_G27, PRE_JUMP), PROXY_OFF),
    ("proxy_unknown", without(BASE_G27, PRE_JUMP), PROXY_UNKNOWN),
    ("forward_policy_drop", without(BASE_G27, ACCEPT_LINE), None),
    ("dropped_by_rule", user("-j DROP"), None),
    ("dropped_by_rule", user("-j REJECT"), None),
    ("reply_dropped", without(BASE_G27, REPLY_ACCEPT), None),
    (
        "reply_dropped",
        append_rules(BASE_G27, "raw", "-A PREROUTING -i docker0 -p tcp -j DROP"),
        None,
    ),
    (
        "input_policy_drop",
        set_policy(without(BASE_G27, DNAT_LINE), "filter", "INPUT", "DROP"),
        None,
    ),
    ("prerouting_policy_drop", set_policy(BASE_G27, "raw", "PREROUTING", "DROP"), None),
    ("undecidable_rule", user("-m frobnicate --frob 3 -j DROP"), None),
]


@pytest.mark.parametrize(("code", "text", "doc"), CODE_CASES)
def test_reason_code(code, text, doc):
    """Each cause has its code, whatever position the deciding rule has."""
    v = web_verdict(text, doc)
    assert v.code == code, v
    assert CODES[code].state == v.state


def test_codes_are_stable_when_rules_move():
    shifted = user("-s 10.0.0.0/8 -j DROP", "-s 10.1.0.0/16 -j DROP", "-j DROP")
    a, b = web_verdict(user("-j DROP")), web_verdict(shifted)
    assert "DOCKER-USER #1" in a.reason and "DOCKER-USER #3" in b.reason
    assert a.code == b.code == "dropped_by_rule"


def test_deciding_rule_is_reported_as_listed():
    v = web_verdict(insert_before(BASE_G27, DNAT_LINE, STALE_NOBODY))
    assert v.rule == STALE_NOBODY
    v = web_verdict(BASE_G27)
    assert v.rule == DNAT_LINE


# --- both backends --------------------------------------------------------------------------

LEGACY_FILTER = (
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{rules}COMMIT\n"
)
LEGACY_NAT = (
    "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
    ":POSTROUTING ACCEPT [0:0]\n{rules}COMMIT\n"
)


def both(legacy: str):
    return family_rules("ipv4", (BASE_G27, "nf_tables"), (legacy, "legacy"))


@pytest.mark.parametrize(
    ("legacy", "state", "reason"),
    [
        (LEGACY_FILTER.format(rules=""), "ok", ["DNAT by nat/DOCKER #2, accepted by filter/"]),
        (
            LEGACY_FILTER.format(rules="-A FORWARD -p tcp -m tcp --dport 80 -j DROP\n"),
            "dropped",
            ["filter/FORWARD #1"],
        ),
        (
            LEGACY_FILTER.format(rules="").replace(":FORWARD ACCEPT", ":FORWARD DROP"),
            "dropped",
            ["filter/FORWARD policy DROP (legacy)"],
        ),
        (
            "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -p tcp -j DROP\nCOMMIT\n",
            "dropped",
            ["raw/PREROUTING #1"],
        ),
        (
            LEGACY_NAT.format(rules=f":DOCKER - [0:0]\n{PRE_JUMP}\n{DNAT_LINE}\n"),
            "ok",
            ["DNAT by nat/DOCKER"],
        ),
        (
            LEGACY_NAT.format(
                rules="-A PREROUTING -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.9:80\n"
            ),
            "unknown",
            ["nat/DOCKER #2 and nat/PREROUTING #1 translate differently"],
        ),
        (BASE_G27.split("*nat")[0], "ok", ["DNAT by nat/DOCKER #2, accepted by filter/DOCKER #1"]),
    ],
    ids=["empty", "drop", "policy-drop", "raw-drop", "same-dnat", "different-dnat", "same-filter"],
)
def test_both_backends(legacy, state, reason):
    v = web_verdict(both(legacy))
    assert v.state == state, v
    assert CODES[v.code].state == state, v
    for part in reason:
        assert part in v.reason, v


def test_unreadable_table_in_either_backend_is_unknown():
    legacy = LEGACY_FILTER.format(rules="") + "# Table `nat' is incompatible, use 'nft' tool.\n"
    v = web_verdict(both(legacy))
    assert v.state == "unknown" and "legacy nat table unreadable" in v.reason
    assert v.code == "rules_unreadable"


def test_family_unreadable_is_unknown():
    snap = analyse_doc(web_doc(), None)
    v = port_report(snap, "web", 8080).verdict
    assert v.state == "unknown" and "ipv4 rules could not be read" in v.reason
    assert v.code == "rules_unreadable"


# --- several host addresses and the modelled client ------------------------------------------


def test_worst_address_wins_and_is_named():
    v = web_verdict(user("-i eth1 -j DROP"), TWO_ADDRS)
    assert v.state == "dropped"
    assert v.reason.startswith("via 198.51.100.1: ")
    assert "filter/DOCKER-USER #1" in v.reason


def test_stale_dnat_for_one_address_only():
    stale = "-A DOCKER -d 198.51.100.1/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.9:80"
    v = web_verdict(insert_before(BASE_G27, DNAT_LINE, stale), TWO_ADDRS)
    assert v.state == "misrouted"
    assert v.reason.startswith("via 198.51.100.1: ") and "nat/DOCKER #2" in v.reason
    v = web_verdict(insert_before(BASE_G27, DNAT_LINE, stale))  # the host lacks that address
    assert v.state == "ok"


def test_same_verdict_on_every_address_names_none():
    v = web_verdict(BASE_G27, TWO_ADDRS)
    assert v.state == "ok" and not v.reason.startswith("via")


def test_bridge_and_loopback_addresses_are_not_probed():
    doc = web_doc(host_addresses=(("docker0", "172.17.0.1"), ("lo", "127.0.0.1"), ("eth0", HOST4)))
    # a rule dropping everything addressed to docker0's own address does not matter
    v = web_verdict(insert_before(BASE_G27, DNAT_LINE, "-A DOCKER -d 172.17.0.1/32 -j RETURN"), doc)
    assert v.state == "ok"


@pytest.mark.parametrize(
    ("rule", "client", "state"),
    [
        ("-s 203.0.113.0/24 -j DROP", None, "ok"),
        ("-s 203.0.113.0/24 -j DROP", "203.0.113.5", "dropped"),
        ("-i eth0 ! -s 203.0.113.0/24 -j DROP", None, "ok"),  # policy: 203.0.113.0/24 reach it
        ("-i eth0 ! -s 203.0.113.0/24 -j DROP", "198.51.100.7", "dropped"),
        ("-i eth0 ! -s 203.0.113.0/24 -j DROP", "203.0.113.5", "ok"),
        ("-s 203.0.113.0/24 -j DROP", "198.51.100.7", "ok"),
    ],
)
def test_concrete_client_versus_generic_client(rule, client, state):
    kw = {"clients": {"ipv4": client}} if client else {}
    v = web_verdict(user(rule), **kw)
    assert v.state == state
    if state == "dropped":
        assert "filter/DOCKER-USER #1" in v.reason


# --- IPv6 and the 28.0.0 ipset layout, on the layout fixtures -------------------------------


def test_ipv6_dnat_excludes_link_local_clients():
    doc, v4, v6 = layout("g28")
    snap = analyse_doc(doc, v4, v6)
    assert port_report(snap, "web", 8080, "ipv6").verdict.state == "ok"
    # a link-local client does not match `! -s fe80::/10`: no DNAT, docker-proxy takes it
    snap = analyse_doc(doc, v4, v6, clients={"ipv6": "fe80::5"})
    v = port_report(snap, "web", 8080, "ipv6").verdict
    assert v.state == "proxied" and "no DNAT applies" in v.reason


def test_ipv6_stale_dnat():
    doc, v4, v6 = layout("g28")
    stale = "-A DOCKER -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00:18::99]:80"
    v6 = insert_before(v6, "-A DOCKER -i br-311a970dfdd4 -j RETURN", stale)
    v = port_report(analyse_doc(doc, v4, v6), "web", 8080, "ipv6").verdict
    assert v.state == "misrouted"
    assert "nat/DOCKER #1" in v.reason and "fd00:18::99:80 (no container has it)" in v.reason


def test_ipset_layout_uses_docker_ext_bridges():
    doc, v4, v6 = layout("g28_0")
    assert port_report(analyse_doc(doc, v4, v6), "web", 8080).verdict.state == "ok"
    # a set the exporter cannot resolve is never guessed
    other = v4.replace("docker-ext-bridges-v4 dst -j DOCKER", "somebody-elses-set dst -j DOCKER")
    v = port_report(analyse_doc(doc, other, v6), "web", 8080).verdict
    assert v.state == "unknown"
    assert (
        "filter/FORWARD #4 may or may not apply: -m set --match-set somebody-elses-set dst"
        in v.reason
    )
    # the set holds the subnets of Docker's non-internal networks: without appnet's, no jump
    for net in doc["networks"]:
        if net["Name"] == "appnet":
            net["IPAM"]["Config"] = []
    v = port_report(analyse_doc(doc, v4, v6), "web", 8080).verdict
    assert v.state == "dropped" and "filter/FORWARD policy DROP" in v.reason


def test_routed_mode_walks_to_the_container_address():
    doc, v4, v6 = layout("g29")
    v = port_report(analyse_doc(doc, v4, v6), "routed", 8082).verdict
    assert v.state == "ok" and v.reason.startswith("routed, accepted by filter/DOCKER #1")
    assert v.code == "routed_accepted"
    # a direct-routing DROP (what nat mode has) would kill routed traffic
    raw = append_rules(v4, "raw", "-A PREROUTING -d 172.20.0.2/32 ! -i routed1 -j DROP")
    v = port_report(analyse_doc(doc, raw, v6), "routed", 8082).verdict
    assert v.state == "dropped" and "raw/PREROUTING #4" in v.reason


def test_forwarding_off_is_dropped_with_its_code():
    off = replace(family_rules("ipv4", BASE_G27), forwarding=False)
    v = web_verdict(off)
    assert (v.state, v.code) == ("dropped", "ip_forward_off")
    assert "net.ipv4.ip_forward=0" in v.reason
    assert web_verdict(replace(off, forwarding=None)).code == "dnat_accepted"
