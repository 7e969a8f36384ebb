"""Large anonymous nft sets of addresses (`ip saddr { 1,000 prefixes }`) are one lookup, as the
kernel's is: the source classes split once, inside and outside, not per element."""

from __future__ import annotations

import json

import pytest
from support.corefix import BASE_G27, web_verdict

from exporter.path.sources import Sources
from exporter.rules.family import FamilyRules
from exporter.rules.iptsave import parse_save
from exporter.rules.nftconds import UNKNOWN
from exporter.rules.nftexpr import MAX_ALTERNATIVES
from exporter.rules.nftjson import order_rulesets, parse
from exporter.rules.nftmatch import ANON_INLINE, MAX_SET_ELEMENTS

# 1,000 /24s, none adjacent to another (so none merge): 10.0.0.0/24, 10.0.2.0/24, ...
PREFIXES = [f"10.{i // 100}.{i % 100 * 2}.0/24" for i in range(1000)]
SADDR = {"payload": {"protocol": "ip", "field": "saddr"}}
DNAT = {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}


def element(prefix: str) -> dict:
    addr, length = prefix.split("/")
    return {"prefix": {"addr": addr, "len": int(length)}}


def ruleset(policy: str, *exprs: dict) -> str:
    """`table inet filter` with a forward chain of `policy` holding one rule."""
    objs = [
        {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        {"table": {"family": "inet", "name": "filter", "handle": 1}},
        {"chain": {"family": "inet", "table": "filter", "name": "forward", "handle": 2,
                   "type": "filter", "hook": "forward", "prio": 0, "policy": policy}},
        {"rule": {"family": "inet", "table": "filter", "chain": "forward", "handle": 3,
                  "expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}},
                                      "right": ["established", "related"]}}, {"accept": None}]}},
        {"rule": {"family": "inet", "table": "filter", "chain": "forward", "handle": 4,
                  "expr": list(exprs)}},
    ]  # fmt: skip
    return json.dumps({"nftables": objs})


def verdict(text: str):
    native = order_rulesets(parse(text)["ipv4"])
    base = parse_save(BASE_G27, "ipv4", "nf_tables")
    return web_verdict(FamilyRules("ipv4", order_rulesets((base, *native)), nft_error=""))


def native_rules(text: str):
    [rs, *_] = parse(text)["ipv4"]
    return [r for t in rs.tables.values() for c in t.chains.values() for r in c.rules]


def test_an_allow_list_of_1000_prefixes_is_one_lookup_and_decides_the_classes():
    assert len(PREFIXES) > MAX_ALTERNATIVES
    doc = ruleset(
        "drop",
        {"match": {"op": "==", "left": SADDR, "right": {"set": list(map(element, PREFIXES))}}},
        DNAT,
        {"accept": None},
    )
    [rule] = [r for r in native_rules(doc) if r.position == 2]
    [lookup] = [c for c in rule.conds if c.option == "--match-set"]
    assert lookup.values[1] == "src" and not lookup.negated
    assert not any(c.option == UNKNOWN for c in rule.conds)
    v = verdict(doc)
    assert (v.state, v.exposure) == ("ok", "restricted")
    inside = Sources.union_of(4, PREFIXES)
    [ok] = [c for c in v.classes if c.state == "ok"]
    assert ok.sources == inside
    refused = [c for c in v.classes if c.state == "dropped"]
    assert refused and all(not (c.sources & inside) for c in refused)
    assert "policy DROP" in refused[0].reason


def test_a_negated_large_set_drops_everyone_outside_it():
    doc = ruleset(
        "accept",
        {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth0"}},
        {"match": {"op": "!=", "left": SADDR, "right": {"set": list(map(element, PREFIXES))}}},
        {"drop": None},
    )
    v = verdict(doc)
    assert (v.state, v.exposure) == ("ok", "restricted")
    [ok] = [c for c in v.classes if c.state == "ok"]
    assert ok.sources == Sources.union_of(4, PREFIXES)


def test_the_same_set_in_two_reads_has_the_same_name():
    doc = ruleset("drop", {"match": {"op": "==", "left": SADDR, "right": {"set": PREFIXES}}},
                  {"accept": None})  # fmt: skip
    names = [
        next(c.values[0] for r in native_rules(doc) if r.position == 2 for c in r.conds)
        for _ in range(2)
    ]
    assert names[0] == names[1] and names[0].startswith("nft:inet filter/{anonymous ")


def test_a_small_set_is_still_one_alternative_per_prefix():
    small = PREFIXES[:ANON_INLINE]
    doc = ruleset("drop", {"match": {"op": "==", "left": SADDR, "right": {"set": small}}},
                  {"accept": None})  # fmt: skip
    rules = [r for r in native_rules(doc) if r.position == 2]
    assert sorted(c.values[0] for r in rules for c in r.conds) == sorted(small)


@pytest.mark.parametrize("op", ["==", "!="])
def test_beyond_the_bound_the_match_is_unknown_naming_why(op):
    big = [f"{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}.1" for i in range(MAX_SET_ELEMENTS + 1)]
    doc = ruleset("drop", {"match": {"op": op, "left": SADDR, "right": {"set": big}}},
                  {"accept": None})  # fmt: skip
    [rule] = [r for r in native_rules(doc) if r.position == 2]
    [why] = [c.values[0] for c in rule.conds if c.option == UNKNOWN]
    assert f"{MAX_SET_ELEMENTS + 1} elements" in why
    assert verdict(doc).state == "unknown"
