"""Native nftables rules, pure: `nft -j` JSON → rule model, and verdicts on it (issue 9).

The JSON fixtures (tests/fixtures/nft/*.ruleset.json) were written by nft 1.0.6 from the `.nft`
files next to them (test_nft_kernel checks they still are): Docker 29's nftables backend after
Docker's documented listings, and `foreign.nft`, other firewalls' tables. The Docker API
documents (`*.state.json`) describe the same hosts (ServerVersion 29.1.3, API 1.52,
FirewallBackend nftables).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from support.corefix import raw

from exporter.path.index import IndexedRuleset
from exporter.path.matching import LOCAL, MAYBE, NO, REMOTE, YES, Env, Packet, rule_match
from exporter.path.setmembers import nft_addresses
from exporter.path.walk import Walker
from exporter.readings import Readings
from exporter.rules.family import FamilyRules
from exporter.rules.iptsave import parse_save
from exporter.rules.model import Cond
from exporter.rules.nftconds import UNKNOWN
from exporter.rules.nftexpr import MAX_ALTERNATIVES, Alt, translate
from exporter.rules.nftjson import (
    NativeRuleset,
    NftJsonError,
    base_chain,
    native_rule_count,
    objects,
    order_rulesets,
    parse,
    unreadable,
)
from exporter.rules.nftmatch import match_options
from exporter.rules.nftprint import rule_text
from exporter.serve.snapshot import assess
from exporter.sources.nft import NativeRead, from_ruleset_json, tables_to_read, with_native

NFT = Path(__file__).resolve().parents[1] / "fixtures" / "nft"
SCENARIOS = ("proxy", "noproxy", "loopback", "two_bridges")
ENV = Env(frozenset({"docker0", "bridge1", "bridge2"}), {})


def ruleset_json(name: str) -> str:
    return (NFT / f"{name}.ruleset.json").read_text()


def state_doc(name: str) -> dict:
    return json.loads((NFT / f"{name}.state.json").read_text())


def native(name: str, text: str | None = None) -> NativeRead:
    """What sources.nft would return for a host holding this ruleset (every table read)."""
    got = parse(text if text is not None else ruleset_json(name))
    return NativeRead({f: tuple(v) for f, v in got.items()}, "", ())


def snapshot(name: str, text: str | None = None, iptables: dict[str, str] | None = None):
    nr = native(name, text)
    rules = {}
    for fam in ("ipv4", "ipv6"):
        base = (parse_save(iptables[fam], fam, "nf_tables"),) if iptables else ()
        rules[fam] = with_native(FamilyRules(fam, base), nr)
    doc = state_doc(name)
    return assess(
        Readings(0.0, raw(doc), "", rules, tuple(tuple(a) for a in doc["host_addresses"]))
    )


def without_rule(text: str, chain: str, comment_or_expr: str, family: str = "ip") -> str:
    """The ruleset JSON less the rules of `chain` (in family's docker-bridges) whose JSON
    contains `comment_or_expr`; at least one must go."""
    doc = json.loads(text)
    keep, dropped = [], 0
    for o in doc["nftables"]:
        r = o.get("rule")
        if r and r["chain"] == chain and r["family"] == family and comment_or_expr in json.dumps(r):
            dropped += 1
            continue
        keep.append(o)
    assert dropped, f"no rule in {chain} contains {comment_or_expr!r}"
    doc["nftables"] = keep
    return json.dumps(doc)


# --- parsing ---------------------------------------------------------------------------------


def test_each_base_chain_is_a_backend_walked_at_its_hook():
    got = parse(ruleset_json("proxy"))
    places = {
        rs.backend: {(t, c) for t, tab in rs.tables.items() for c in tab.chains if ":" not in c}
        for rs in got["ipv4"]
    }
    assert places == {
        "nft:ip docker-bridges/filter-FORWARD": {("filter", "FORWARD")},
        "nft:ip docker-bridges/nat-OUTPUT": {("nat", "OUTPUT")},
        "nft:ip docker-bridges/nat-POSTROUTING": {("nat", "POSTROUTING")},
        "nft:ip docker-bridges/nat-PREROUTING": {("nat", "PREROUTING")},
        "nft:ip docker-bridges/raw-PREROUTING": {("raw", "PREROUTING")},
    }
    assert {rs.backend for rs in got["ipv6"]} == {b.replace("ip ", "ip6 ") for b in places}, (
        "the ip6 table is read for IPv6 only"
    )
    fwd = next(rs for rs in got["ipv4"] if rs.base_chain == "filter-FORWARD")
    assert (fwd.hook, fwd.priority, fwd.nft_table) == ("forward", 0, "ip docker-bridges")
    chains = fwd.tables["filter"].chains
    assert "nft:filter-forward-in__bridge1" in chains and chains["FORWARD"].policy == "ACCEPT"


def test_rules_keep_their_nft_text_and_reference():
    got = parse(ruleset_json("proxy"))
    pre = next(rs for rs in got["ipv4"] if rs.base_chain == "nat-PREROUTING")
    dnat = pre.tables["nat"].chains["nft:nat-prerouting-and-output"].rules[0]
    assert dnat.ref == "ip docker-bridges/nat-prerouting-and-output #1"
    assert dnat.text == 'iifname != "bridge1" tcp dport 8080 dnat to 192.0.2.2:80 comment "DNAT"'
    assert dnat.conds == (
        Cond("-i", ("bridge1",), True),
        Cond("-p", ("tcp",)),
        Cond("--dport", ("8080",), False, "tcp"),
    )
    assert (dnat.target, dnat.target_opt("--to-destination")) == ("DNAT", "192.0.2.2:80")
    v6 = next(
        rs for rs in parse(ruleset_json("proxy"))["ipv6"] if rs.base_chain == "nat-PREROUTING"
    )
    rule6 = v6.tables["nat"].chains["nft:nat-prerouting-and-output"].rules[0]
    assert rule6.target_opt("--to-destination") == "[2001:db8:b1::2]:80"
    assert Cond("-s", ("fe80::/10",), True) in rule6.conds


def test_verdict_map_becomes_one_jump_per_element():
    fwd = next(
        rs for rs in parse(ruleset_json("two_bridges"))["ipv4"] if rs.base_chain == "filter-FORWARD"
    )
    rules = fwd.tables["filter"].chains["FORWARD"].rules
    got = [(r.position, r.conds, r.target) for r in rules]
    assert got == [
        (1, (Cond("-o", ("docker0",)),), "nft:filter-forward-in__docker0"),
        (1, (Cond("-o", ("bridge1",)),), "nft:filter-forward-in__bridge1"),
        (1, (Cond("-o", ("bridge2",)),), "nft:filter-forward-in__bridge2"),
        (2, (Cond("-i", ("docker0",)),), "nft:filter-forward-out__docker0"),
        (2, (Cond("-i", ("bridge1",)),), "nft:filter-forward-out__bridge1"),
        (2, (Cond("-i", ("bridge2",)),), "nft:filter-forward-out__bridge2"),
    ]
    assert rules[0].text == "oifname vmap @filter-forward-in-jumps"


def test_inet_tables_count_for_both_families_minus_the_other_familys_rules():
    got = parse(ruleset_json("foreign"))
    dmz4 = (
        next(rs for rs in got["ipv4"] if rs.base_chain == "forward")
        .tables["filter"]
        .chains["nft:dmz"]
    )
    dmz6 = (
        next(rs for rs in got["ipv6"] if rs.base_chain == "forward")
        .tables["filter"]
        .chains["nft:dmz"]
    )
    assert [r.position for r in dmz4.rules] == [2]  # `ip6 daddr ...` cannot match IPv4
    assert [r.position for r in dmz6.rules] == [1]
    assert dmz6.rules[0].conds == (
        Cond("-d", ("2001:db8:d::/64",)),
        Cond("-p", ("tcp",)),
        Cond("--dport", ("22,23",), True, "tcp"),
    )
    assert {rs.nft_table for rs in got["ipv6"]} == {"inet filter", "inet out-only"}, (
        "ip nat is IPv4"
    )
    assert not any(rs.nft_table.startswith("netdev") for f in got for rs in got[f])


def test_prerouting_chains_are_placed_before_or_after_dnat():
    by_chain = {rs.base_chain: rs for rs in parse(ruleset_json("foreign"))["ipv4"]}

    def places(rs):
        return {(t, c) for t in rs.tables for c in rs.tables[t].chains if ":" not in c}

    # mangle priority: walked with iptables' mangle PREROUTING, before DNAT
    assert places(by_chain["pre"]) == {("mangle", "PREROUTING")}
    # priority 10: sees what forward and input see, and before them (first at their mangle step)
    assert places(by_chain["post-dnat"]) == {("mangle", "FORWARD"), ("mangle", "INPUT")}
    others = [rs.order for name, rs in by_chain.items() if name != "post-dnat"]
    assert by_chain["post-dnat"].order < min(others)
    assert places(by_chain["forward"]) == {("filter", "FORWARD")}


def test_rulesets_run_in_hook_priority_order_with_iptables_at_its_own():
    ipt = parse_save("*filter\n:FORWARD DROP [0:0]\nCOMMIT\n", "ipv4", "nf_tables")

    def nat(name: str, prio: int, hook: str = "prerouting", type_: str = "filter") -> NativeRuleset:
        obj = {
            "chain": {
                "family": "ip",
                "table": "t",
                "name": name,
                "type": type_,
                "hook": hook,
                "prio": prio,
            }
        }
        return unreadable(base_chain(obj), "ipv4", "x")

    late, early = nat("late", 10, "forward"), nat("early", -10, "forward")
    m_late, m_early = nat("m_late", -120), nat("m_early", -160)
    dnat_before, dnat_after = nat("d1", -110, type_="nat"), nat("d2", -90, type_="nat")
    got = order_rulesets([late, ipt, early, m_late, m_early, dnat_after, dnat_before])
    backends = [rs.backend.rsplit("/", 1)[-1] if rs is not ipt else "iptables" for rs in got]
    # at each hook: by priority, the iptables backends at iptables' own (filter 0, dstnat -100,
    # mangle -150: m_late runs after iptables' mangle PREROUTING, m_early before it)
    assert backends.index("early") < backends.index("iptables") < backends.index("late")
    assert backends.index("d1") < backends.index("iptables") < backends.index("d2")
    assert backends.index("iptables") < backends.index("m_late")
    assert set(m_late.tables) == {"mangle"} and set(nat("m", -150).tables) == {"mangle"}
    # before iptables' mangle: walked with raw PREROUTING, which comes first
    assert set(m_early.tables) == set(nat("r", -300).tables) == {"raw"}
    assert backends.index("d1") < backends.index("iptables") < backends.index("d2")


def test_ingress_hooks_see_their_devices_only():
    def ingress(**dev) -> list[NativeRuleset]:
        chain = {"family": "inet", "table": "i", "name": "c", "type": "filter", "hook": "ingress"}
        return parse(
            json.dumps({"nftables": [{"chain": {**chain, "prio": 0, "policy": "drop", **dev}}]})
        )["ipv4"]

    (named,) = ingress(dev="wan0")
    assert named.order < min(rs.order for rs in parse(ruleset_json("proxy"))["ipv4"])
    walked = [IndexedRuleset(named)]
    assert Walker(ENV).hook(walked, "raw", "PREROUTING", packet(iif="eth0")).verdict == "ACCEPT"
    assert Walker(ENV).hook(walked, "raw", "PREROUTING", packet(iif="wan0")).verdict == "DROP"
    # nft 1.0.6 prints no device for an inet ingress chain: it may or may not see the packet
    (unnamed,) = ingress()
    o = Walker(ENV).hook([IndexedRuleset(unnamed)], "raw", "PREROUTING", packet(iif="eth0"))
    assert o.verdict == "UNKNOWN" and "a device nft does not name" in o.why


def test_not_an_nft_document_is_a_clear_error():
    for bad, why in (
        ("{", "not JSON"),
        ('{"nftables": 3}', 'no "nftables" array'),
        ("[]", "nftables"),
    ):
        with pytest.raises(NftJsonError, match=why):
            parse(bad)
    assert parse('{"nftables": [{"metainfo": {}}]}') == {"ipv4": [], "ipv6": []}
    assert objects(
        '{"nftables": [{"metainfo": {}}, {"table": {"family": "ip", "name": "x"}}]}'
    ) == [{"table": {"family": "ip", "name": "x"}}]


def test_malformed_rules_become_unknown_not_errors():
    doc = {"nftables": [
        {"chain": {"family": "ip", "table": "t", "name": "c", "type": "filter", "hook": "forward", "prio": 0}},
        {"rule": {"family": "ip", "table": "t", "chain": "c", "expr": "garbage"}},
        {"rule": {"family": "ip", "table": "t", "chain": "c", "expr": [{"xt": {"type": "match", "name": "addrtype"}}, {"accept": None}]}},
        {"rule": {"family": "ip", "table": "t", "chain": "c", "expr": [{"match": {"op": "==", "left": {"osf": {"key": "name"}}, "right": "Linux"}}, {"drop": None}]}},
        {"rule": {"family": "ip", "table": "t", "chain": "c", "expr": [{"xt": {"type": "target", "name": "DNAT"}}]}},
        {"rule": {"family": "ip", "table": "t", "chain": "c", "expr": [{"synproxy": {"mss": 1460}}, {"accept": None}]}},
    ]}  # fmt: skip
    rs = parse(json.dumps(doc))["ipv4"][0]
    rules = rs.tables["filter"].chains["FORWARD"].rules
    # an unknown match keeps its verdict (the walker follows both ways); an unknown action
    # makes the rule's outcome unknown whatever verdict follows it
    assert [r.target for r in rules] == [UNKNOWN, "ACCEPT", "DROP", UNKNOWN, UNKNOWN]
    assert all(any(c.option == UNKNOWN for c in r.conds) for r in rules)
    assert "xt match addrtype" in rules[1].conds[0].values[0]
    o = Walker(ENV).hook([IndexedRuleset(rs)], "filter", "FORWARD", packet(dport=80, oif="bridge1"))
    assert o.verdict == "UNKNOWN" and "t/c #1" in o.why


# --- expressions -----------------------------------------------------------------------------


def m(op, left, right) -> dict:
    return {"op": op, "left": left, "right": right}


META = {"meta": {"key": "iifname"}}
DPORT = {"payload": {"protocol": "tcp", "field": "dport"}}
SADDR = {"payload": {"protocol": "ip", "field": "saddr"}}


@pytest.mark.parametrize(
    "match,want",
    [
        (m("==", META, "eth0"), [(Cond("-i", ("eth0",)),)]),
        (m("!=", META, "eth*"), [(Cond("-i", ("eth+",), True),)]),
        (m("==", META, "eth\\*"), [(Cond("-i", ("eth*",)),)]),
        (m("==", META, {"set": ["a", "b"]}), [(Cond("-i", ("a",)),), (Cond("-i", ("b",)),)]),
        (m("!=", META, {"set": ["a", "b"]}), [(Cond("-i", ("a",), True), Cond("-i", ("b",), True))]),
        (m("==", DPORT, {"range": [1, 1023]}), [(Cond("-p", ("tcp",)), Cond("--dport", ("1:1023",), False, "tcp"))]),
        (m(">=", DPORT, 1024), [(Cond("-p", ("tcp",)), Cond("--dport", ("1024:65535",), False, "tcp"))]),
        (m("!=", DPORT, {"set": [22, 23]}), [(Cond("-p", ("tcp",)), Cond("--dport", ("22,23",), True, "tcp"))]),
        (m("==", SADDR, {"range": ["10.0.0.1", "10.0.0.3"]}), [(Cond("-s", ("10.0.0.1/32",)),), (Cond("-s", ("10.0.0.2/31",)),)]),
        (m("!=", SADDR, {"prefix": {"addr": "10.0.0.0", "len": 8}}), [(Cond("-s", ("10.0.0.0/8",), True),)]),
        (m("==", {"payload": {"protocol": "ip6", "field": "saddr"}}, "::1"), []),
        (m("==", {"meta": {"key": "nfproto"}}, "ipv6"), []),
        (m("==", {"meta": {"key": "nfproto"}}, "ipv4"), [()]),
        (m("in", {"ct": {"key": "state"}}, ["established", "related"]), [(Cond("--ctstate", ("ESTABLISHED,RELATED",), False, "conntrack"),)]),
        (m("!=", {"ct": {"key": "state"}}, "established"), [(Cond("--ctstate", ("ESTABLISHED",), True, "conntrack"),)]),
        (m("in", {"ct": {"key": "status"}}, "dnat"), [(Cond("--ctstatus", ("DNAT",), False, "conntrack"),)]),
        (m("==", {"fib": {"result": "type", "flags": ["daddr"]}}, "local"), [(Cond("--dst-type", ("LOCAL",), False, "addrtype"),)]),
        (m("==", {"fib": {"result": "type", "flags": ["saddr"]}}, {"set": ["local", "broadcast"]}), [(Cond("--src-type", ("LOCAL,BROADCAST",), False, "addrtype"),)]),
        (m("==", {"&": [{"meta": {"key": "mark"}}, 255]}, 1), [(Cond("--mark", ("0x1/0xff",), False, "mark"),)]),
        (m("in", {"payload": {"protocol": "tcp", "field": "flags"}}, "syn"), [(Cond("-p", ("tcp",)), Cond("--tcp-flags", ("SYN", "SYN"), False, "tcp"))]),
        (m("!=", {"&": [{"payload": {"protocol": "tcp", "field": "flags"}}, ["fin", "syn", "rst", "ack"]]}, "syn"),
         [(Cond("-p", ("tcp",)), Cond("--tcp-flags", ("FIN,SYN,RST,ACK", "SYN"), True, "tcp"))]),
    ],
)  # fmt: skip
def test_match_translation(match, want):
    assert match_options(match, "ipv4", {}) == want


def test_th_ports_stand_for_each_transport_protocol():
    th = m("==", {"payload": {"protocol": "th", "field": "dport"}}, 53)
    got = match_options(th, "ipv4", {})
    assert got == [
        (Cond("-p", (p,)), Cond("--dport", ("53",), False, p)) for p in ("tcp", "udp", "sctp")
    ]
    # with `meta l4proto { 6, udp }` before it, only the alternatives a packet can match remain
    l4 = {"match": m("==", {"meta": {"key": "l4proto"}}, {"set": [6, "udp"]})}
    alts = translate([l4, {"match": th}, {"accept": None}], "ipv4", {})
    assert [a.conds[-1].module for a in alts] == ["tcp", "udp"]


@pytest.mark.parametrize(
    "match",
    [
        m("==", {"fib": {"result": "oif", "flags": ["saddr", "iif"]}}, False),
        m("==", {"meta": {"key": "skuid"}}, 0),
        m("==", SADDR, "@missing-set"),
        m("<", META, "x"),
        m("==", {"payload": {"protocol": "icmp", "field": "type"}}, "echo-request"),
    ],
)
def test_untranslated_matches_are_maybe_never_guessed(match):
    (option,) = match_options(match, "ipv4", {})
    unknown = [c for c in option if c.option == UNKNOWN]
    assert len(unknown) == 1
    p = packet(proto="icmp") if "icmp" in json.dumps(match) else packet()
    verdict, why = rule_match(replace_conds(option), p, ENV)
    assert verdict == MAYBE and why


def replace_conds(conds):
    from exporter.rules.model import Rule

    return Rule("ipv4", "ip t", "c", 1, conds, "DROP")


def test_named_sets_resolve_and_big_ones_stay_unknown():
    sets = {"small": ["192.0.2.5", {"prefix": {"addr": "198.18.0.0", "len": 15}}]}
    assert match_options(m("==", SADDR, "@small"), "ipv4", sets) == [
        (Cond("-s", ("192.0.2.5/32",)),),
        (Cond("-s", ("198.18.0.0/15",)),),
    ]
    big = [f"10.0.{i // 256}.{i % 256}" for i in range(MAX_ALTERNATIVES + 1)]
    alts = translate([{"match": m("==", SADDR, {"set": big})}, {"drop": None}], "ipv4", {})
    assert len(alts) == 1 and alts[0].conds[0].option == UNKNOWN
    assert "too many elements" in alts[0].conds[0].values[0]


def test_statements():
    def one(*exprs, family="ipv4"):
        return translate(list(exprs), family, {})

    assert one({"counter": None}, {"dnat": {"addr": "192.0.2.2", "port": 80}}) == [
        Alt((), "DNAT", (("--to-destination", ("192.0.2.2:80",)),))
    ]
    assert one({"dnat": {"addr": "192.0.2.9"}})[0].target_opts == (
        ("--to-destination", ("192.0.2.9",)),
    )
    assert one({"dnat": {"family": "ip", "addr": "192.0.2.9"}}, family="ipv6") == []
    assert one({"dnat": {"addr": {"map": {}}}}) == [Alt((), "DNAT")], (
        "no destination: walker says unknown"
    )
    assert one({"jump": {"target": "x"}}) == [Alt((), "nft:x")]
    assert one({"goto": {"target": "x"}}) == [Alt((), "nft:x", (), True)]
    assert one({"reject": {"type": "icmpx", "expr": "admin-prohibited"}}) == [Alt((), "REJECT")]
    assert one({"masquerade": None}) == [Alt((), "MASQUERADE")]
    assert one({"continue": None}) == [Alt((), "")]
    assert one({"log": {"prefix": "x"}}, {"accept": None}) == [Alt((), "ACCEPT")]
    limited = one({"limit": {"rate": 10, "per": "minute"}}, {"accept": None})[0]
    assert limited.conds[0].module == "limit" and limited.target == "ACCEPT"
    marked = one({"mangle": {"key": {"meta": {"key": "mark"}}, "value": 512}}, {"accept": None})
    assert marked == [
        Alt((), "MARK", (("--set-xmark", ("0x200/0xffffffff",)),)),
        Alt((), "ACCEPT"),
    ]
    rewrite = one(
        {"mangle": {"key": {"payload": {"protocol": "ip", "field": "daddr"}}, "value": "1.1.1.1"}}
    )
    assert rewrite[0].target == UNKNOWN
    assert one({"tproxy": {"port": 1}})[0].target == UNKNOWN


def test_rule_text_reads_like_nft_list():
    exprs = [
        {"match": m("!=", META, "bridge1")},
        {"match": m("==", {"ct": {"key": "state"}}, {"set": ["established", "related"]})},
        {"match": m("==", DPORT, {"set": [80, {"range": [8000, 8010]}]})},
        {"counter": {"packets": 1, "bytes": 60}},
        {
            "vmap": {
                "key": {"meta": {"key": "oifname"}},
                "data": {"set": [["br0", {"jump": {"target": "c"}}]]},
            }
        },
    ]
    assert rule_text(exprs, "X") == (
        'iifname != "bridge1" ct state { established, related } tcp dport { 80, 8000-8010 } '
        'oifname vmap { "br0" : jump c } comment "X"'
    )
    six = [{"dnat": {"addr": "2001:db8::2", "port": 80}}]
    assert rule_text(six) == "dnat to [2001:db8::2]:80"


# --- the evaluator on parsed rules -----------------------------------------------------------


def packet(**kw) -> Packet:
    base = dict(family="ipv4", proto="tcp", src=REMOTE, dst="203.0.113.1", sport=None, dport=8080,
                iif="eth0", oif=None, ctstate="NEW", dst_local=True, src_local=False,
                tcp_flags=frozenset({"SYN"}))  # fmt: skip
    base.update(kw)
    return Packet(**base)


def walk(name: str, table: str, chain: str, p: Packet, family: str = "ipv4"):
    ordered = order_rulesets(parse(ruleset_json(name))[family])
    env = replace(ENV, sets=nft_addresses(ordered))  # the tables' named sets of addresses
    return Walker(env).hook([IndexedRuleset(rs) for rs in ordered], table, chain, p)


@pytest.mark.parametrize(
    "name,changes,want",
    [
        ("proxy", {}, ("DNAT", ("192.0.2.2", 80))),
        ("proxy", {"iif": "bridge1"}, ("ACCEPT", None)),  # docker-proxy's job for containers
        ("noproxy", {"iif": "bridge1"}, ("DNAT", ("192.0.2.2", 80))),
        ("proxy", {"dport": 8081}, ("ACCEPT", None)),
        ("proxy", {"proto": "udp"}, ("ACCEPT", None)),
        (
            "proxy",
            {"dst_local": False, "dst": "192.0.2.9"},
            ("ACCEPT", None),
        ),  # fib daddr type local
        ("loopback", {}, ("ACCEPT", None)),  # DNAT only for 127.0.0.1
        ("loopback", {"dst": "127.0.0.1", "iif": "lo"}, ("DNAT", ("192.0.2.2", 80))),
        ("two_bridges", {"proto": "udp", "dport": 5353}, ("DNAT", ("198.51.100.2", 53))),
        ("two_bridges", {"dport": 9090, "iif": "bridge2"}, ("ACCEPT", None)),
    ],
)
def test_nat_prerouting_truth_table(name, changes, want):
    o = walk(name, "nat", "PREROUTING", packet(**changes))
    assert (o.verdict, o.to) == want


@pytest.mark.parametrize(
    "changes,want,rule",
    [
        ({}, "ACCEPT", "ip docker-bridges/filter-forward-in__bridge1 #3"),
        ({"dport": 81}, "DROP", "ip docker-bridges/filter-forward-in__bridge1 #4"),
        (
            {"oif": "docker0", "dst": "172.17.0.2"},
            "DROP",
            "ip docker-bridges/filter-forward-in__docker0 #3",
        ),
        (
            {"iif": "bridge1", "dport": 81},
            "ACCEPT",
            "ip docker-bridges/filter-forward-in__bridge1 #2",
        ),  # ICC
        (
            {"ctstate": "ESTABLISHED", "dport": 81},
            "ACCEPT",
            "ip docker-bridges/filter-forward-in__bridge1 #1",
        ),
        ({"oif": "eth1", "dst": "198.51.100.7"}, "ACCEPT", None),  # not Docker's: policy accept
    ],
)
def test_filter_forward_truth_table(changes, want, rule):
    p = packet(**{"dst": "192.0.2.2", "dport": 80, "oif": "bridge1", "dst_local": False, **changes})
    o = walk("proxy", "filter", "FORWARD", p)
    assert o.verdict == want
    assert (o.rule.ref if o.rule else None) == rule


@pytest.mark.parametrize(
    "changes,want",
    [
        ({"dst": "192.0.2.2", "dport": 80}, "DROP"),  # DROP DIRECT ACCESS
        ({"dst": "192.0.2.2", "dport": 80, "iif": "bridge1"}, "ACCEPT"),
        ({"dst": "127.0.0.1"}, "DROP"),  # DROP REMOTE LOOPBACK
        ({"dst": "127.0.0.1", "iif": "lo"}, "ACCEPT"),
        ({"dst": "127.0.0.1", "dport": 8081}, "ACCEPT"),
    ],
)
def test_raw_prerouting_truth_table(changes, want):
    assert walk("loopback", "raw", "PREROUTING", packet(**changes)).verdict == want


def test_foreign_input_chain_truth_table():
    def verdict(**kw):
        return walk("foreign", "filter", "INPUT", packet(**{"dst": LOCAL, **kw})).verdict

    assert verdict(dport=22) == "UNKNOWN"  # `limit rate`: depends on traffic
    assert verdict(dport=443) == "ACCEPT"  # eth* → services chain
    assert verdict(dport=443, iif="wlan0") == "REJECT"
    assert verdict(dport=8005, proto="udp") == "ACCEPT"  # th dport range
    assert verdict(dport=9999) == "REJECT"
    assert verdict(dport=9999, tcp_flags=frozenset({"ACK"})) == "DROP"  # new but not SYN
    assert verdict(dport=9999, ctstate="ESTABLISHED") == "ACCEPT"


def test_foreign_forward_chain_is_unknown_where_it_cannot_decide():
    # `ct status dnat accept` (firewalld's forward chain starts so) is decided from the packet's
    # original destination: a DNATed connection is accepted by rule #1...
    p = packet(dst="192.0.2.2", dport=80, oif="bridge1", dst_local=False)
    translated = replace(p, orig_dst="198.51.100.1", orig_dport=8080)
    o = walk("foreign", "filter", "FORWARD", translated)
    assert (o.verdict, o.rule.ref) == ("ACCEPT", "inet filter/forward #1")
    # ...an untranslated one goes on, to a reverse-path check the model cannot decide
    o = walk("foreign", "filter", "FORWARD", p)
    assert o.verdict == "UNKNOWN"
    assert o.why.startswith("inet filter/forward #4 may or may not apply: nft `fib saddr")
    assert walk("foreign", "filter", "FORWARD", replace(p, oif="wan0")).verdict == "DROP"
    # ...but where both ways end alike, the answer is decided: lan0 is accepted either way
    assert walk("foreign", "filter", "FORWARD", replace(p, oif="lan0")).verdict == "ACCEPT"


# --- Docker's layout: expected rules and verdicts --------------------------------------------


@pytest.mark.parametrize("name", SCENARIOS)
def test_healthy_hosts_are_ok_with_every_expected_rule_present(name):
    snap = snapshot(name)
    assert snap.daemon.generation == "nftables"
    assert snap.ports and {p.verdict.state for p in snap.ports} == {"ok"}
    evidence = [e for p in snap.ports for e in p.rules] + list(snap.jumps + snap.bridge_rules)
    assert evidence and all(e.present for e in evidence), [
        e.expected.line for e in evidence if not e.present
    ]
    assert snap.stale == ()
    kinds = {e.expected.kind for p in snap.ports for e in p.rules}
    assert {"dnat", "forward_accept"} <= kinds
    assert ("hairpin_masquerade" in kinds) == (name == "noproxy")
    assert ("loopback_drop" in kinds) == (name == "loopback")


def test_missing_dnat_is_proxied_with_proxy_and_unreachable_without():
    for name, want in (("proxy", "proxied"), ("noproxy", "unreachable")):
        text = without_rule(ruleset_json(name), "nat-prerouting-and-output", '"DNAT"')
        p = next(p for p in snapshot(name, text).ports if p.binding.family == "ipv4")
        assert p.verdict.state == want
        assert (
            "expected rule missing: nft add rule ip docker-bridges nat-prerouting-and-output"
            in p.verdict.reason
        )


def test_missing_per_port_accept_is_dropped_by_the_unpublished_port_drop():
    text = without_rule(ruleset_json("proxy"), "filter-forward-in__bridge1", '"dport"')
    p = next(p for p in snapshot("proxy", text).ports if p.binding.family == "ipv4")
    assert p.verdict.state == "dropped"
    assert "ip docker-bridges/filter-forward-in__bridge1 #3" in p.verdict.reason
    assert 'drop comment "UNPUBLISHED PORT DROP"' in p.verdict.reason
    assert [e.present for e in p.rules if e.expected.kind == "forward_accept"] == [False]


def test_missing_native_tables_are_unknown_for_the_nftables_backend_only():
    doc = state_doc("proxy")
    rules = {f: FamilyRules(f, ()) for f in ("ipv4", "ipv6")}  # native tables never read
    snap = assess(Readings(0.0, raw(doc), "", rules, None))
    assert {p.verdict.state for p in snap.ports} == {"unknown"}
    assert all(
        p.verdict.reason == "nftables firewall backend: native nftables tables not read"
        and p.verdict.code == "nft_unreadable"
        for p in snap.ports
    )
    assert snap.jumps == () and all(p.rules == () for p in snap.ports)
    failing = {
        f: replace(r, nft_error="nft: Operation not permitted", rulesets=())
        for f, r in rules.items()
    }
    snap = assess(Readings(0.0, raw(doc), "", failing, None))
    assert all("Operation not permitted" in p.verdict.reason for p in snap.ports)


def test_an_unreadable_foreign_table_makes_its_hook_unknown():
    obj = {
        "chain": {
            "family": "inet",
            "table": "fw",
            "name": "fwd",
            "type": "filter",
            "hook": "forward",
            "prio": 0,
        }
    }
    stand_in = unreadable(base_chain(obj), "ipv4", "nft table inet fw: did not finish within 10s")
    nr = native("proxy")
    nr = NativeRead({**nr.rulesets, "ipv4": (*nr.rulesets["ipv4"], stand_in)}, "", ())
    doc = state_doc("proxy")
    rules = {f: with_native(FamilyRules(f, ()), nr) for f in ("ipv4", "ipv6")}
    addrs = tuple(tuple(a) for a in doc["host_addresses"])
    ports = {p.binding.family: p for p in assess(Readings(0.0, raw(doc), "", rules, addrs)).ports}
    assert ports["ipv4"].verdict.state == "unknown"
    assert "did not finish within 10s" in ports["ipv4"].verdict.reason
    assert ports["ipv6"].verdict.state == "ok"


def test_iptables_rules_and_native_rules_are_walked_together():
    # an iptables-nft FORWARD policy DROP (what Docker's iptables backend or ufw leave behind)
    ipt = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
    snap = snapshot("proxy", iptables={"ipv4": ipt, "ipv6": ipt.replace("DROP", "ACCEPT")})
    ports = {p.binding.family: p for p in snap.ports}
    assert ports["ipv4"].verdict.state == "dropped"
    assert "filter/FORWARD policy DROP (nf_tables)" in ports["ipv4"].verdict.reason
    assert ports["ipv6"].verdict.state == "ok"


def test_native_rules_are_counted_once_as_one_nftables_backend():
    nr = native("proxy")
    doc = json.loads(ruleset_json("proxy"))["nftables"]
    in_json = sum(1 for o in doc if "rule" in o and o["rule"]["family"] == "ip")
    assert in_json == 21
    # each base chain's ruleset repeats the regular chains, and vmap lookups expand per element
    assert sum(rs.rule_count() for rs in nr.rulesets["ipv4"]) > in_json
    assert native_rule_count(nr.rulesets["ipv4"]) == in_json
    assert native_rule_count(()) is None
    snap = snapshot("proxy")
    assert ("nftables", "ipv4", 21) in snap.backend_rules
    assert not any(b.startswith("nft:") for b, _, _ in snap.backend_rules)


def test_tables_to_read_skips_what_iptables_nft_save_reads_and_what_is_never_walked():
    bases = [b for b in map(base_chain, objects(ruleset_json("foreign"))) if b is not None]
    assert tables_to_read(bases, frozenset({"ipv4", "ipv6"})) == [("inet", "filter")]
    assert tables_to_read(bases, frozenset()) == [("inet", "filter"), ("ip", "nat")]


def test_a_saved_ruleset_reads_like_the_live_one():
    text = json.dumps(
        {
            "nftables": json.loads(ruleset_json("proxy"))["nftables"]
            + objects(ruleset_json("foreign"))
        }
    )
    got = from_ruleset_json(text, frozenset({"ipv4"}))
    assert got.tables == ("inet filter", "ip docker-bridges", "ip6 docker-bridges")
    assert not any(rs.nft_table == "ip nat" for rs in got.rulesets["ipv4"])
    assert {rs.nft_table for rs in got.rulesets["ipv6"]} == {"inet filter", "ip6 docker-bridges"}
    with pytest.raises(NftJsonError):
        from_ruleset_json("table ip x {}")


def test_with_native_orders_every_backend_and_records_the_read():
    ipt = parse_save("*raw\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", "ipv4", "legacy")
    fr = with_native(FamilyRules("ipv4", (ipt,)), native("proxy"))
    assert fr.nft_error == "" and ipt in fr.rulesets
    orders = [getattr(rs, "order", 0) for rs in fr.rulesets]
    assert orders == sorted(orders)
    assert len(fr.rulesets) == 1 + len(native("proxy").rulesets["ipv4"])


def test_match_results_on_translated_conditions():
    conds = match_options(m("!=", META, {"set": ["bridge1", "lo"]}), "ipv4", {})[0]
    r = replace_conds(conds)
    assert rule_match(r, packet(iif="eth0"), ENV)[0] == YES
    assert rule_match(r, packet(iif="lo"), ENV)[0] == NO


def test_offline_check_with_a_saved_nft_ruleset():
    """`check --docker-state F --nft-ruleset F`: a Docker 29 nftables host analysed offline."""
    import subprocess
    import sys

    fix = Path(__file__).resolve().parents[1] / "fixtures" / "nft"
    p = subprocess.run(
        [sys.executable, "-m", "exporter", "check", "--json",
         "--docker-state", str(fix / "proxy.state.json"),
         "--nft-ruleset", str(fix / "proxy.ruleset.json")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads(p.stdout)
    assert {x["state"] for x in doc["ports"]} == {"ok"}
    bad = subprocess.run(
        [sys.executable, "-m", "exporter", "check", "--docker-state",
         str(fix / "proxy.state.json"), "--nft-ruleset", str(fix / "proxy.nft")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "--nft-ruleset" in bad.stderr and "Traceback" not in bad.stderr
