"""What real hosts add around Docker's rules (issue 13): marks, NOTRACK, inbound source NAT,
several nat chains on one hook, tcpmss, and matches that depend on chance, time or rate.

Each case starts from Docker 20.10's rules for `docker run -p 8080:80` (corefix.BASE_G27) and
adds the construct; the state of web's 0.0.0.0:8080/tcp and the reason's fragments must match.
tests/kernel/test_constructs_kernel.py checks the same constructs against real connections.
"""

from __future__ import annotations

import json

import pytest
from support.corefix import (
    BASE_G27,
    USER_RETURN,
    append_rules,
    insert_before,
    web_doc,
    web_verdict,
    with_table,
)

from exporter.rules.family import FamilyRules
from exporter.rules.iptsave import parse_save
from exporter.sources.nft import from_ruleset_json, with_native

DNAT_BY = "DNAT by nat/DOCKER #2, accepted by filter/DOCKER #1"


def user(text: str, *rules: str) -> str:
    return insert_before(text, USER_RETURN, *(f"-A DOCKER-USER {r}" for r in rules))


MARK_PRE = "-A PREROUTING -p tcp -m tcp --dport 8080 -j MARK --set-xmark 0x10/0xffffffff"
CONNMARK_PRE = "-A PREROUTING -p tcp -m tcp --dport 8080 -j CONNMARK --set-xmark 0x7/0xffffffff"


def case(name, text, state, *reason, doc=None):
    return pytest.param(text, doc, state, reason, id=name)


CASES = [
    # --- marks keep their value into the later hooks
    case("mangle MARK, DOCKER-USER drops that mark",
         user(with_table(BASE_G27, "mangle", MARK_PRE), "-m mark --mark 0x10 -j DROP"),
         "dropped", "filter/DOCKER-USER #1"),
    case("mangle MARK, DOCKER-USER drops another mark",
         user(with_table(BASE_G27, "mangle", MARK_PRE), "-m mark --mark 0x11 -j DROP"), "ok", DNAT_BY),
    case("raw MARK, DOCKER-USER drops inbound packets without that mark",
         user(with_table(BASE_G27, "raw", MARK_PRE), "! -i docker0 -m mark ! --mark 0x10/0xff -j DROP"),
         "ok", DNAT_BY),
    case("MARK --or-mark then --and-mark: arithmetic as xt_MARK does it",
         user(with_table(BASE_G27, "mangle", MARK_PRE, "-A PREROUTING -j MARK --set-xmark 0x2/0x2",
                    "-A PREROUTING -j MARK --set-xmark 0x0/0xfffffff0"),
              "-m mark --mark 0x2 -j DROP"), "dropped", "filter/DOCKER-USER #1"),
    case("a mark set in a user chain survives its RETURN",
         user(with_table(BASE_G27, "mangle", ":MARKS - [0:0]", "-A PREROUTING -j MARKS",
                    MARK_PRE.replace("PREROUTING", "MARKS"), "-A MARKS -j RETURN"),
              "-m mark --mark 0x10 -j DROP"), "dropped", "filter/DOCKER-USER #1"),
    case("a mark set only under a rate limit is unknown where it is matched",
         user(with_table(BASE_G27, "mangle", MARK_PRE.replace("-j MARK", "-m limit --limit 1/sec -j MARK")),
              "-m mark --mark 0x10 -j DROP"),
         "unknown", "filter/DOCKER-USER #1 may or may not apply: -m mark --mark 0x10"),
    case("a mark set only under a rate limit changes nothing when never matched",
         with_table(BASE_G27, "mangle", MARK_PRE.replace("-j MARK", "-m limit --limit 1/sec -j MARK")),
         "ok", DNAT_BY),
    case("CONNMARK --set-mark, DOCKER-USER drops by connmark",
         user(with_table(BASE_G27, "mangle", CONNMARK_PRE), "-m connmark --mark 0x7 -j DROP"),
         "dropped", "filter/DOCKER-USER #1"),
    case("CONNMARK --save-mark copies the packet's mark",
         user(with_table(BASE_G27, "mangle", MARK_PRE, "-A PREROUTING -j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff"),
              "-m connmark --mark 0x10 -j DROP"), "dropped", "filter/DOCKER-USER #1"),
    case("CONNMARK --restore-mark copies the connection's mark",
         user(with_table(BASE_G27, "mangle", CONNMARK_PRE, "-A PREROUTING -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff"),
              "-m mark --mark 0x7 -j DROP"), "dropped", "filter/DOCKER-USER #1"),
    case("CONNMARK in raw: no connection yet, nothing to mark",
         user(with_table(BASE_G27, "raw", CONNMARK_PRE), "-m connmark --mark 0x7 -j DROP"),
         "ok", DNAT_BY),
    case("connmark matched in raw: no connection yet, no match",
         with_table(BASE_G27, "raw", "-A PREROUTING -m connmark --mark 0x0 -j DROP"), "ok", DNAT_BY),
    case("conntrack state in raw reads INVALID",
         with_table(BASE_G27, "raw", "-A PREROUTING -m conntrack --ctstate INVALID -j DROP"),
         "dropped", "raw/PREROUTING #1"),
    case("the reply carries the connection's mark",
         user(with_table(BASE_G27, "mangle", CONNMARK_PRE), "-i docker0 -m connmark --mark 0x7 -j DROP"),
         "dropped", "the replies are dropped by filter/DOCKER-USER #1"),
    case("the reply does not carry the packet's mark",
         user(with_table(BASE_G27, "mangle", MARK_PRE), "-i docker0 -m mark --mark 0x10 -j DROP"),
         "ok", DNAT_BY),
    # --- NOTRACK: no conntrack, no NAT
    case("raw NOTRACK: docker-proxy answers",
         with_table(BASE_G27, "raw", "-A PREROUTING -p tcp -m tcp --dport 8080 -j NOTRACK"),
         "proxied", "untracked (by raw/PREROUTING #1", "so no DNAT applies", "docker-proxy"),
    case("raw CT --notrack without the proxy: nothing answers",
         with_table(BASE_G27, "raw", "-A PREROUTING -p tcp -m tcp --dport 8080 -j CT --notrack"),
         "unreachable", "untracked", doc=web_doc(False)),
    case("NOTRACK of another port changes nothing",
         with_table(BASE_G27, "raw", "-A PREROUTING -p tcp -m tcp --dport 8081 -j CT --notrack"),
         "ok", DNAT_BY),
    case("NOTRACK outside raw is refused by the kernel, and ignored here",
         with_table(BASE_G27, "mangle", "-A PREROUTING -p tcp -j CT --notrack"), "ok", DNAT_BY),
    case("untracked packets skip conntrack matches: INPUT drops UNTRACKED",
         append_rules(with_table(BASE_G27, "raw", "-A PREROUTING -p tcp -j NOTRACK"), "filter",
                      "-A INPUT -m conntrack --ctstate UNTRACKED -j DROP"),
         "dropped", "the untranslated connection is dropped by filter/INPUT #1"),
    # --- source NAT on the way to the bridge
    case("catch-all MASQUERADE",
         append_rules(BASE_G27, "nat", "-A POSTROUTING -j MASQUERADE"),
         "masqueraded", DNAT_BY, "then nat/POSTROUTING #3 `-A POSTROUTING -j MASQUERADE`",
         "the container sees a host address"),
    case("SNAT towards docker0",
         append_rules(BASE_G27, "nat", "-A POSTROUTING -o docker0 -j SNAT --to-source 172.17.0.1"),
         "masqueraded", "nat/POSTROUTING #3"),
    case("MASQUERADE out of the uplink only",
         append_rules(BASE_G27, "nat", "-A POSTROUTING -o eth0 -j MASQUERADE"), "ok", DNAT_BY),
    case("a RETURN first keeps the client's address",
         append_rules(BASE_G27, "nat", "-A POSTROUTING -o docker0 -j RETURN", "-A POSTROUTING -j MASQUERADE"),
         "ok", DNAT_BY),
    case("masqueraded but the replies are dropped: dropped",
         user(append_rules(BASE_G27, "nat", "-A POSTROUTING -j MASQUERADE"), "-i docker0 -j DROP"),
         "dropped", "the replies are dropped"),
    # --- tcpmss: a normal SYN carries MSS 1460
    case("tcpmss range holding 1460 drops",
         user(BASE_G27, "-p tcp -m tcpmss --mss 1400:1500 -j DROP"), "dropped", "filter/DOCKER-USER #1"),
    case("tcpmss of tiny segments does not match a normal SYN",
         user(BASE_G27, "-p tcp -m tcpmss --mss 1:500 -j DROP"), "ok", DNAT_BY),
    case("TCPMSS --set-mss in mangle lowers what a later tcpmss sees",
         user(with_table(BASE_G27, "mangle", "-A PREROUTING -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 400"),
              "-p tcp -m tcpmss --mss 1:500 -j DROP"), "dropped", "filter/DOCKER-USER #1"),
    case("TCPMSS --clamp-mss-to-pmtu makes a later tcpmss unknown",
         user(with_table(BASE_G27, "mangle", "-A PREROUTING -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu"),
              "-p tcp -m tcpmss --mss 1:500 -j DROP"), "unknown", "-m tcpmss --mss 1:500"),
    # --- chance, time, rate: an honest unknown naming the match
    case("statistic", user(BASE_G27, "-m statistic --mode random --probability 0.5 -j DROP"),
         "unknown", "filter/DOCKER-USER #1 may or may not apply: -m statistic --mode depends on chance"),
    case("time", user(BASE_G27, "-m time --timestart 08:00:00 --timestop 17:00:00 -j DROP"),
         "unknown", "-m time --timestart depends on the time of day"),
    case("string", user(BASE_G27, '-m string --string "foo" --algo bm -j DROP'),
         "unknown", "-m string --string depends on the payload"),
    case("hashlimit", user(BASE_G27, "-m hashlimit --hashlimit-above 5/sec --hashlimit-name x -j DROP"),
         "unknown", "-m hashlimit", "depends on the traffic rate"),
    case("recent", user(BASE_G27, "-m recent --rcheck --seconds 60 --name DEFAULT -j DROP"),
         "unknown", "-m recent --rcheck depends on earlier traffic"),
    case("limit", user(BASE_G27, "-m limit --limit 5/min -j RETURN", "-j DROP"),
         "unknown", "-m limit --limit depends on the traffic rate"),
    case("a rate limit whose outcomes agree is no unknown",
         user(BASE_G27, "-m limit --limit 5/min -j RETURN"), "ok", DNAT_BY),
]  # fmt: skip


@pytest.mark.parametrize(("text", "doc", "state", "reason"), CASES)
def test_construct(text, doc, state, reason):
    assert parse_save(text, "ipv4", "nf_tables").errors == ()
    v = web_verdict(text, doc)
    assert v.state == state, v
    for part in reason:
        assert part in v.reason, v


# --- several nat chains on one hook: priority order, first translation wins ------------------


def nft_nat(priority: int, *exprs_rules: list) -> str:
    """An nft JSON document with `table ip fwd`, one nat prerouting chain at `priority`."""
    chain = {"family": "ip", "table": "fwd", "name": "pre", "type": "nat", "hook": "prerouting",
             "prio": priority, "policy": "accept"}  # fmt: skip
    objs = [{"table": {"family": "ip", "name": "fwd"}}, {"chain": chain}]
    objs += [
        {"rule": {"family": "ip", "table": "fwd", "chain": "pre", "expr": e}} for e in exprs_rules
    ]
    return json.dumps({"nftables": objs})


DPORT_8080 = {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                        "right": 8080}}  # fmt: skip
TO_OTHER = [DPORT_8080, {"dnat": {"addr": "172.17.0.9", "port": 80}}]
TO_WEB = [DPORT_8080, {"dnat": {"addr": "172.17.0.2", "port": 80}}]
ACCEPT = [DPORT_8080, {"accept": None}]


def native_verdict(doc_text: str):
    fr = FamilyRules("ipv4", (parse_save(BASE_G27, "ipv4", "nf_tables"),))
    return web_verdict(with_native(fr, from_ruleset_json(doc_text)))


@pytest.mark.parametrize(
    ("priority", "rules", "state", "part"),
    [
        (-150, [TO_OTHER], "misrouted", "ip fwd/pre #1"),  # before iptables' nat (-100)
        (-50, [TO_OTHER], "ok", "DNAT by nat/DOCKER #2"),  # after it: Docker's DNAT won
        (-150, [TO_WEB], "ok", "DNAT by ip fwd/pre #1"),  # the same translation, first
        (-150, [ACCEPT], "ok", "DNAT by nat/DOCKER #2"),  # accept ends that chain only
        (-150, [[DPORT_8080, {"drop": None}]], "dropped", "ip fwd/pre #1"),
    ],
)
def test_nat_chains_on_one_hook_first_translation_wins(priority, rules, state, part):
    v = native_verdict(nft_nat(priority, *rules))
    assert v.state == state, v
    assert part in v.reason, v


def test_same_priority_backends_translating_differently_is_unknown():
    other = BASE_G27.replace("--to-destination 172.17.0.2:80", "--to-destination 172.17.0.9:80")
    fr = FamilyRules(
        "ipv4",
        (parse_save(BASE_G27, "ipv4", "nf_tables"), parse_save(other, "ipv4", "legacy")),
    )
    v = web_verdict(fr)
    assert v.state == "unknown" and "translate differently" in v.reason, v


# --- the same constructs written natively in nftables ----------------------------------------


def nft_doc(*chains: tuple) -> str:
    """`table inet host` with base chains (name, type, hook, priority, rules as expr lists)."""
    objs: list[dict] = [{"table": {"family": "inet", "name": "host"}}]
    for name, kind, hook, prio, rules in chains:
        objs.append({"chain": {"family": "inet", "table": "host", "name": name, "type": kind,
                               "hook": hook, "prio": prio, "policy": "accept"}})  # fmt: skip
        objs += [
            {"rule": {"family": "inet", "table": "host", "chain": name, "expr": e}} for e in rules
        ]
    return json.dumps({"nftables": objs})


def meta(key: str) -> dict:
    return {"meta": {"key": key}}


def ct(key: str) -> dict:
    return {"ct": {"key": key}}


def eq(left, right, op="==") -> dict:
    return {"match": {"op": op, "left": left, "right": right}}


IIF_ETH0 = eq(meta("iifname"), "eth0")
SET_MARK = [DPORT_8080, {"mangle": {"key": meta("mark"), "value": 16}}]
DROP_MARKED = [eq(meta("mark"), 16), {"drop": None}]
INBOUND_DROP_UNMARKED = [IIF_ETH0, eq(meta("mark"), 16, "!="), {"drop": None}]
SET_CTMARK = [DPORT_8080, {"mangle": {"key": ct("mark"), "value": 7}}]
REPLY_DROP_CTMARK = [eq(meta("iifname"), "docker0"), eq(ct("mark"), 7), {"drop": None}]
NOTRACK = [DPORT_8080, {"notrack": None}]
MASQ = [eq(meta("oifname"), "docker0"), {"masquerade": None}]
MSS_DROP = [eq({"tcp option": {"name": "maxseg", "field": "size"}}, {"range": [1400, 1500]}),
            {"drop": None}]  # fmt: skip
NUMGEN_DROP = [eq({"numgen": {"mode": "random", "mod": 2, "offset": 0}}, 0), {"drop": None}]
HOUR_DROP = [eq(meta("hour"), {"range": ["08:00", "17:00"]}), {"drop": None}]


def raw_pre(*rules, prio=-300):
    return ("pre", "filter", "prerouting", prio, list(rules))


def fwd(*rules, prio=-10):
    return ("fwd", "filter", "forward", prio, list(rules))


NATIVE = [
    ("meta mark set in raw, matched in forward", [raw_pre(SET_MARK), fwd(DROP_MARKED)],
     "dropped", "inet host/fwd #1"),
    ("meta mark set, forward drops inbound unmarked", [raw_pre(SET_MARK), fwd(INBOUND_DROP_UNMARKED)],
     "ok", DNAT_BY),
    ("ct mark set after conntrack, the reply is dropped by ct mark",
     [raw_pre(SET_CTMARK, prio=-150), fwd(REPLY_DROP_CTMARK)],
     "dropped", "the replies are dropped by inet host/fwd #1"),
    ("ct mark set before conntrack (raw) is lost: no connection yet",
     [raw_pre(SET_CTMARK), fwd(REPLY_DROP_CTMARK)], "ok", DNAT_BY),
    ("notrack at priority raw", [raw_pre(NOTRACK)], "proxied", "untracked (by inet host/pre #1"),
    ("notrack after conntrack (-190) has no effect", [raw_pre(NOTRACK, prio=-190)], "ok", DNAT_BY),
    ("masquerade in a native nat postrouting chain",
     [("post", "nat", "postrouting", 100, [MASQ])], "masqueraded", "inet host/post #1"),
    ("tcp option maxseg size holding 1460", [fwd(MSS_DROP)], "dropped", "inet host/fwd #1"),
    ("numgen", [fwd(NUMGEN_DROP)], "unknown", "nft `numgen random mod 2", "depends on chance"),
    ("meta hour", [fwd(HOUR_DROP)], "unknown", "nft `meta hour", "depends on the time of day"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("chains", "state", "reason"), [pytest.param(*c[1:3], c[3:], id=c[0]) for c in NATIVE]
)
def test_native_construct(chains, state, reason):
    v = native_verdict(nft_doc(*chains))
    assert v.state == state, v
    for part in reason:
        assert part in v.reason, v


# --- marks and source classes -------------------------------------------------------------


def test_a_mark_set_for_some_sources_splits_the_classes():
    # 10.0.0.0/8 gets the mark and DOCKER-USER refuses marked packets: policy for that class,
    # every other source reaches the port
    mark = "-A PREROUTING -s 10.0.0.0/8 -j MARK --set-xmark 0x10/0xffffffff"
    text = user(with_table(BASE_G27, "mangle", mark), "-m mark --mark 0x10 -j DROP")
    v = web_verdict(text)
    assert v.state == "ok", v
    states = {c.state for c in v.classes}
    assert states == {"ok", "dropped"}, v.classes
    dropped = next(c for c in v.classes if c.state == "dropped")
    assert repr(dropped.sources) == "Sources(10.0.0.0/8)", dropped
    assert "other sources" in v.reason and "filter/DOCKER-USER #1" in v.reason, v


def test_some_sources_proxied_others_translated_is_proxied_for_those():
    # a RETURN for 10.0.0.0/8 ahead of the DNAT: those reach docker-proxy, the rest the DNAT
    ret = "-A DOCKER -s 10.0.0.0/8 -j RETURN"
    v = web_verdict(insert_before(BASE_G27, "-A DOCKER -i docker0 -j RETURN", ret))
    assert v.state == "proxied", v
    assert v.reason.startswith("from 10.0.0.0/8: no DNAT applies"), v
