"""Tri-state matching of one rule against one modelled packet."""

from __future__ import annotations

from dataclasses import replace

import pytest

from exporter.path.matching import (
    LOCAL,
    MAYBE,
    NO,
    REMOTE,
    YES,
    Env,
    Packet,
    addr_match,
    iface_match,
    port_in,
    rule_match,
)
from exporter.path.sources import Sources
from exporter.rules.iptsave import parse_rule_tokens
from exporter.rules.model import Rule

ENV = Env(
    frozenset({"docker0", "br-0123456789ab"}),
    {"docker-ext-bridges-v4": Sources.parse("172.17.0.0/16")},
)
# a remote client's SYN to host port 8080, after DNAT to 172.17.0.2:80, in FORWARD
PKT = Packet(
    family="ipv4",
    proto="tcp",
    src=REMOTE,
    dst="172.17.0.2",
    sport=None,
    dport=80,
    iif="eth0",
    oif="docker0",
    ctstate="NEW",
    dst_local=False,
    src_local=False,
    tcp_flags=frozenset({"SYN"}),
)


def rule(spec: str) -> Rule:
    conds, target, topts, goto = parse_rule_tokens(f"{spec} -j ACCEPT".split())
    return Rule("ipv4", "filter", "DOCKER-USER", 1, conds, target, topts, goto, spec)


def match(spec: str, **changes) -> int:
    return rule_match(rule(spec), replace(PKT, **changes), ENV)[0]


@pytest.mark.parametrize(
    ("addr", "prefix", "want"),
    [
        ("172.17.0.2", "172.17.0.0/16", YES),
        ("172.18.0.2", "172.17.0.0/16", NO),
        (REMOTE, "10.0.0.0/8", NO),  # the generic client is in no named prefix
        (REMOTE, "0.0.0.0/0", YES),
        (LOCAL, "127.0.0.0/8", NO),  # a wildcard binding's host address is not loopback
        (LOCAL, "192.0.2.0/24", MAYBE),
        ("fd00::2", "fd00::/64", YES),
        ("192.0.2.1", "garbage", MAYBE),
    ],
)
def test_addr_match(addr, prefix, want):
    assert addr_match(addr, prefix) == want


@pytest.mark.parametrize(
    ("name", "pattern", "want"),
    [
        ("eth0", "eth0", YES),
        ("eth0", "eth1", NO),
        ("eth0", "eth+", YES),
        ("eth0", "br-+", NO),
        ("eth0", "+", YES),
        (None, "+", YES),
        (None, "docker0", NO),  # an unknown external interface is not one of Docker's bridges
        (None, "lo", NO),
        (None, "eth0", MAYBE),
        (None, "eth+", MAYBE),
    ],
)
def test_iface_match(name, pattern, want):
    assert iface_match(name, pattern, ENV) == want


@pytest.mark.parametrize(
    ("port", "spec", "want"),
    [
        (80, "80", YES),
        (80, "81", NO),
        (80, "8000:8010", NO),
        (8005, "8000:8010", YES),
        (443, "80,443", YES),
        (80, ":1024", YES),
        (None, "1024:65535", YES),  # any ephemeral source port
        (None, "40000:50000", MAYBE),  # some ephemeral ports
        (None, "80", NO),
        (80, "http", MAYBE),
    ],
)
def test_port_in(port, spec, want):
    assert port_in(port, spec) == want


@pytest.mark.parametrize(
    ("spec", "changes", "want"),
    [
        ("-p tcp", {}, YES),
        ("-p udp", {}, NO),
        ("-p 6", {}, YES),
        ("! -p tcp", {}, NO),
        ("-p all", {}, YES),
        ("-s 10.0.0.0/8", {}, NO),
        ("! -s 10.0.0.0/8", {}, YES),
        ("-s 10.0.0.0/8", {"src": "10.1.2.3"}, YES),
        ("-d 172.17.0.2/32", {}, YES),
        ("-i eth0 -o docker0", {}, YES),
        ("! -i docker0 -o docker0", {}, YES),
        ("-i docker0", {}, NO),
        ("-p tcp -m tcp --dport 80", {}, YES),
        ("-p tcp -m tcp --dport 8080", {}, NO),  # FORWARD sees the translated port
        ("-p udp -m udp --dport 80", {}, NO),
        ("-p tcp -m tcp --sport 1024:65535", {}, YES),
        ("-p tcp -m tcp --syn", {}, YES),
        ("-p tcp -m tcp --syn", {"tcp_flags": frozenset({"SYN", "ACK"})}, NO),
        ("-p tcp -m tcp --tcp-flags SYN,ACK SYN", {}, YES),
        ("-p tcp -m multiport --dports 22,80", {}, YES),
        ("-p tcp -m multiport --dports 22,443", {}, NO),
        ("-p tcp -m multiport --ports 80", {}, YES),
        ("-m conntrack --ctstate NEW", {}, YES),
        ("-m conntrack --ctstate RELATED,ESTABLISHED", {}, NO),
        ("-m state --state ESTABLISHED", {"ctstate": "ESTABLISHED"}, YES),
        ("-m conntrack --ctstatus ASSURED", {}, MAYBE),
        ("-m conntrack --ctorigdstport 80", {}, YES),
        ("-m conntrack --ctorigdstport 8080", {}, NO),
        ("-m addrtype --dst-type LOCAL", {}, NO),
        ("-m addrtype --dst-type LOCAL", {"dst_local": True}, YES),
        ("-m addrtype --src-type LOCAL", {}, NO),
        ("-m set --match-set docker-ext-bridges-v4 dst", {}, YES),
        ("-m set --match-set docker-ext-bridges-v4 dst", {"dst": "10.0.0.1"}, NO),
        ("-m set --match-set somebody-elses-set src", {}, MAYBE),
        ("-m mark --mark 0x1", {}, NO),
        ("-m mark --mark 0x0/0xff", {}, YES),
        ("-m comment --comment anything", {}, YES),
        ("-m limit --limit 10/sec", {}, MAYBE),
        ("-m recent --rcheck --name x", {}, MAYBE),
        ("-m physdev --physdev-in veth0", {}, MAYBE),
        ("-m frobnicate --frob 1", {}, MAYBE),  # an unknown module is never guessed
        ("! -m limit --limit 10/sec", {}, None),  # not valid: `!` before -m (parse error)
    ],
)
def test_rule_match(spec, changes, want):
    if want is None:
        with pytest.raises(ValueError):
            rule(spec)
        return
    assert match(spec, **changes) == want


def test_first_no_wins_over_maybe():
    # a condition that is certainly false makes the rule not match, even after a MAYBE
    assert match("-m limit --limit 1/sec -p udp") == NO
    assert match("-p udp -m limit --limit 1/sec") == NO


def test_maybe_names_the_undecidable_condition():
    result, why = rule_match(rule("-p tcp -m limit --limit 10/sec"), PKT, ENV)
    assert result == MAYBE
    assert why == "-m limit --limit depends on the traffic rate"
    result, why = rule_match(rule("-m conntrack --ctstatus ASSURED"), PKT, ENV)
    assert (result, why) == (MAYBE, "-m conntrack --ctstatus ASSURED")
    result, why = rule_match(rule("-i eth9"), replace(PKT, iif=None), ENV)
    assert (result, why) == (MAYBE, "-i eth9")
