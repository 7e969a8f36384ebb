"""Semantic rule keys: equal whatever the spelling, different whenever the meaning differs."""

from __future__ import annotations

import pytest

from exporter.rules.iptsave import parse_rule_tokens, parse_save
from exporter.rules.model import Rule
from exporter.rules.normalize import norm_addr, norm_endpoint, norm_proto, rule_key


def key(text: str, family: str = "ipv4", table: str = "filter", position: int = 1) -> tuple:
    tokens = text.split()
    conds, target, topts, goto = parse_rule_tokens(tokens[2:])
    return rule_key(Rule(family, table, tokens[1], position, conds, target, topts, goto, text))


@pytest.mark.parametrize(
    ("value", "normal"),
    [
        ("172.17.0.2", "172.17.0.2/32"),
        ("172.17.0.2/32", "172.17.0.2/32"),
        ("172.17.0.5/16", "172.17.0.0/16"),
        ("0/0", "0.0.0.0/0"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("fd00:18::2", "fd00:18::2/128"),
        ("FD00:18:0::2/128", "fd00:18::2/128"),
        ("::/0", "::/0"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_norm_addr(value, normal):
    assert norm_addr(value) == normal


@pytest.mark.parametrize(
    ("value", "normal"),
    [
        ("6", "tcp"),
        ("TCP", "tcp"),
        ("17", "udp"),
        ("132", "sctp"),
        ("58", "ipv6-icmp"),
        ("gre", "gre"),
    ],
)
def test_norm_proto(value, normal):
    assert norm_proto(value) == normal


def test_norm_endpoint_lowercases_ipv6():
    assert norm_endpoint("[FD00:18::2]:80") == "[fd00:18::2]:80"


SAME = [
    # (as Docker asks for it / as written by hand, as iptables-save prints it)
    (
        "-A DOCKER -d 172.17.0.2 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT",
        "-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT",
    ),
    (
        "-A DOCKER -p tcp -m tcp --dport 80 -o docker0 ! -i docker0 -d 172.17.0.2/32 -j ACCEPT",
        "-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT",
    ),
    (
        "-A DOCKER -s 0/0 -d 0.0.0.0/0 ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80",
        "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80",
    ),
    (
        "-A DOCKER ! -i docker0 -p 6 -m tcp --dport 8080 -m comment --comment web -j DNAT --to-destination 172.17.0.2:80",
        "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80",
    ),
    (
        "-A FORWARD -o docker0 -m state --state ESTABLISHED,RELATED -j ACCEPT",
        "-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ),
    ("-A FORWARD -p all -j DOCKER-USER", "-A FORWARD -j DOCKER-USER"),
]


@pytest.mark.parametrize(("a", "b"), SAME)
def test_same_meaning_same_key(a, b):
    assert key(a) == key(b)


def test_ipv6_spellings():
    a = "-A DOCKER ! -s fe80::/10 ! -i br-1 -p tcp -m tcp --dport 8080 -j DNAT --to-destination [FD00:18::2]:80"
    b = "-A DOCKER ! -s FE80::0/10 ! -i br-1 -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00:18::2]:80"
    assert key(a, "ipv6", "nat") == key(b, "ipv6", "nat")
    assert key(a, "ipv6", "nat") != key(a.replace("! -s fe80::/10 ", ""), "ipv6", "nat")


BASE = "-A FORWARD -o br-0123456789ab -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
DIFFERENT = [
    # the 1.8.11 `-C` bug: rules that differ only by interface name are different rules
    BASE.replace("br-0123456789ab", "docker0"),
    BASE.replace("-o", "-i"),
    BASE.replace("-o", "! -o"),
    BASE.replace("RELATED,ESTABLISHED", "ESTABLISHED"),
    BASE.replace("ACCEPT", "DROP"),
    BASE.replace("-j ACCEPT", "-g DOCKER"),
    BASE.replace("-j ACCEPT", "-j DOCKER"),
    BASE.replace("FORWARD", "DOCKER-CT"),
    BASE + " --reject-with x",
]


@pytest.mark.parametrize("other", DIFFERENT)
def test_different_meaning_different_key(other):
    assert key(BASE) != key(other)


@pytest.mark.parametrize(
    "other",
    [
        "-A DOCKER ! -i docker0 -p udp -m udp --dport 8080 -j DNAT --to-destination 172.17.0.2:80",
        "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8081 -j DNAT --to-destination 172.17.0.2:80",
        "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.3:80",
        "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:81",
        "-A DOCKER -d 127.0.0.1/32 ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80",
        "-A DOCKER -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80",
    ],
)
def test_dnat_keys_differ_by_every_field(other):
    dnat = (
        "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80"
    )
    assert key(dnat, table="nat") != key(other, table="nat")


def test_key_ignores_position_text_counters_and_backend_but_not_family_or_table():
    text = "*nat\n:DOCKER - [0:0]\n-A DOCKER -i docker0 -j RETURN\n[5:300] -A DOCKER -i docker0 -j RETURN\nCOMMIT\n"
    a, b = parse_save(text, "ipv4", "nf_tables").tables["nat"].chains["DOCKER"].rules
    assert (a.position, b.position) == (1, 2)
    assert rule_key(a) == rule_key(b)
    legacy = parse_save(text, "ipv4", "legacy").tables["nat"].chains["DOCKER"].rules[0]
    assert rule_key(legacy) == rule_key(a)
    assert key("-A DOCKER -i docker0 -j RETURN", "ipv6", "nat") != rule_key(a)
    assert key("-A DOCKER -i docker0 -j RETURN", "ipv4", "filter") != rule_key(a)
