"""Sets decide matches: ipsets read with `ipset save` and nftables named (interval) sets."""

from __future__ import annotations

from dataclasses import replace

from support.corefix import BASE_G27, USER_RETURN, insert_before, web_verdict

from exporter.path.setmembers import addresses, nft_addresses
from exporter.path.sources import Sources
from exporter.rules.family import FamilyRules
from exporter.rules.ipset import parse_ipset_save
from exporter.rules.iptsave import parse_save
from exporter.rules.nftjson import order_rulesets, parse

# `ipset save` of a real kernel (ipset v7), sets made in a scratch namespace
SAVE = """\
create a hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0xd80e1b46
add a 10.1.0.0/16 nomatch
add a 10.0.0.0/8
add a 10.1.2.0/24
create b hash:ip family inet6 hashsize 1024 maxelem 65536 timeout 300 bucketsize 12 initval 0x52d14265
add b 2001:db8::1 timeout 99
create c bitmap:ip range 192.168.1.0-192.168.1.255
add c 192.168.1.1
add c 192.168.1.2
add c 192.168.1.3
create e hash:ip,port family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1ff21357
add e 10.0.0.1,tcp:80
create f hash:ip family inet hashsize 1024 maxelem 65536 netmask 24 bucketsize 12 initval 0x34169c16
add f 192.0.2.0
create g hash:net family inet hashsize 1024 maxelem 65536 comment bucketsize 12 initval 0x0bb099b0
add g 198.51.100.0/24 comment "a b"
create d list:set size 8
add d a
add d g
"""
# `nft -j list ruleset` (nft 1.0.6) of a Debian-style table inet filter: forward policy drop,
# translated connections accepted from two interval sets only
NFT = (
    '{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},'
    ' {"table": {"family": "inet", "name": "filter", "handle": 1}},'
    ' {"set": {"family": "inet", "name": "allowed4", "table": "filter", "type": "ipv4_addr",'
    ' "handle": 4, "flags": ["interval"], "elem": [{"prefix": {"addr": "192.0.2.128", "len": 25}},'
    ' {"range": ["198.51.100.10", "198.51.100.20"]}]}},'
    ' {"set": {"family": "inet", "name": "allowed6", "table": "filter", "type": "ipv6_addr",'
    ' "handle": 5, "flags": ["interval"], "elem": [{"prefix": {"addr": "2001:db8:aaaa::", "len": 48}}]}},'
    ' {"chain": {"family": "inet", "table": "filter", "name": "forward", "handle": 2,'
    ' "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},'
    ' {"rule": {"family": "inet", "table": "filter", "chain": "forward", "handle": 6, "expr":'
    ' [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}},'
    ' {"accept": null}]}},'
    ' {"rule": {"family": "inet", "table": "filter", "chain": "forward", "handle": 7, "expr":'
    ' [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@allowed4"}},'
    ' {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}, {"accept": null}]}},'
    ' {"rule": {"family": "inet", "table": "filter", "chain": "forward", "handle": 8, "expr":'
    ' [{"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right": "@allowed6"}},'
    ' {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}, {"accept": null}]}}]}'
)


def sets():
    got, errors = parse_ipset_save(SAVE)
    assert errors == ()
    return got


def test_ipset_save_is_read_into_address_sets():
    a = addresses(sets())
    assert set(a) == {"a", "b", "c", "d", "f", "g"}  # e (hash:ip,port) is not a set of addresses
    assert a["a"].contains("10.9.9.9") and not a["a"].contains("10.1.9.9")  # nomatch: a hole
    assert a["a"].contains("10.1.2.3")  # ... in which a narrower entry matches again
    assert a["b"] == Sources.parse("2001:db8::1")
    assert a["c"] == Sources.parse("192.168.1.1-192.168.1.3")
    assert a["f"] == Sources.parse("192.0.2.0/24")  # netmask 24: each entry is its /24
    assert a["d"] == a["a"] | a["g"]  # list:set: the union of its members


def test_unreadable_lines_are_reported_not_raised():
    got, errors = parse_ipset_save(
        'create x hash:net family inet\nadd x 10.0.0.0/8 comment "open\nbogus\n'
    )
    assert [s.name for s in got] == ["x"] and len(errors) == 2


def user_rules(*rules: str, ipsets=()) -> FamilyRules:
    text = insert_before(BASE_G27, USER_RETURN, *(f"-A DOCKER-USER {r}" for r in rules))
    return FamilyRules("ipv4", (parse_save(text, "ipv4", "nf_tables"),), ipsets=ipsets)


def test_an_ipset_allow_list_decides_the_classes():
    v = web_verdict(user_rules("-i eth0 -m set ! --match-set d src -j DROP", ipsets=sets()))
    assert (v.state, v.exposure) == ("ok", "restricted")
    classes = {c.state: c for c in v.classes}
    assert classes["ok"].sources == addresses(sets())["d"]  # 10/8 less the nomatch hole, ...
    assert v.allowed.startswith("10.0.0.0/16, 10.1.2.0/24, 10.2.0.0/15")
    assert classes["dropped"].owner == "docker-user"


def test_a_set_not_read_or_not_of_addresses_is_unknown():
    v = web_verdict(user_rules("-i eth0 -m set ! --match-set d src -j DROP"))  # not read
    assert v.state == "unknown" and "--match-set d src" in v.reason
    v = web_verdict(user_rules("-m set --match-set e src,dst -j DROP", ipsets=sets()))
    assert v.state == "unknown" and "--match-set e" in v.reason


def test_nft_named_sets_become_one_lookup_each():
    got = parse(NFT)["ipv4"]
    named = nft_addresses(got)
    assert named == {
        "nft:inet filter/allowed4": Sources.parse("192.0.2.128/25")
        | Sources.parse("198.51.100.10-198.51.100.20"),
        "nft:inet filter/allowed6": Sources.parse("2001:db8:aaaa::/48"),
    }
    rules = [
        r for rs in got for t in rs.tables.values() for c in t.chains.values() for r in c.rules
    ]
    assert any(c.option == "--match-set" for r in rules for c in r.conds)


def test_a_debian_style_forward_drop_policy_with_interval_sets():
    native = order_rulesets(parse(NFT)["ipv4"])
    base = parse_save(BASE_G27, "ipv4", "nf_tables")
    fr = FamilyRules("ipv4", order_rulesets((base, *native)), nft_error="")
    v = web_verdict(fr)
    assert (v.state, v.exposure) == ("ok", "restricted")
    assert (
        v.allowed
        == "192.0.2.128/25, 198.51.100.10/31, 198.51.100.12/30, 198.51.100.16/30, 198.51.100.20/32"
    )
    refused = [c for c in v.classes if c.state == "dropped"]
    assert [c.owner for c in refused] == ["host"] and "policy DROP" in refused[0].reason
    v = web_verdict(
        replace(
            fr,
            rulesets=order_rulesets(
                (base, *order_rulesets(parse(NFT.replace("@allowed4", "@nothing"))["ipv4"]))
            ),
        )
    )
    assert v.state == "unknown"  # a set the table does not hold: not guessed


def test_nft_anonymous_sets_split_the_classes_too():
    anon = NFT.replace(
        '"right": "@allowed4"',
        '"right": {"set": [{"prefix": {"addr": "192.0.2.128", "len": 25}}, "198.51.100.7"]}',
    )
    native = order_rulesets(parse(anon)["ipv4"])
    fr = FamilyRules(
        "ipv4", order_rulesets((parse_save(BASE_G27, "ipv4", "nf_tables"), *native)), nft_error=""
    )
    v = web_verdict(fr)
    assert (v.state, v.exposure, v.allowed) == (
        "ok",
        "restricted",
        "192.0.2.128/25, 198.51.100.7/32",
    )
