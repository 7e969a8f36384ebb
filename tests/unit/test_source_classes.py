"""Source classes: each class of remote sources the rules tell apart gets its own verdict, and
the port's state tells policy (an admin's allow-list) from breakage (issue 13).

Every case starts from Docker 20.10's rules for `docker run -p 8080:80` (corefix.BASE_G27).
"""

from __future__ import annotations

import itertools

import pytest
from support.corefix import (
    ACCEPT_LINE,
    BASE_G27,
    USER_RETURN,
    insert_before,
    set_policy,
    ufw_docker,
    web_verdict,
    without,
)

from exporter.path.sources import Sources


def user(*rules: str, text: str = BASE_G27) -> str:
    return insert_before(text, USER_RETURN, *(f"-A DOCKER-USER {r}" for r in rules))


def reaching(v) -> Sources:
    out = Sources(4)
    for c in v.classes:
        if c.state in ("ok", "proxied"):
            out = out | c.sources
    return out


# Docker's documented DOCKER-USER restrictions ("Packet filtering and firewalls")
DOCS_ONE = "-i eth0 ! -s 192.168.1.1 -j DROP"
DOCS_RANGE = "-m iprange -i eth0 ! --src-range 192.168.1.1-192.168.1.3 -j DROP"


@pytest.mark.parametrize(
    ("rules", "allowed"),
    [
        ([DOCS_ONE], "192.168.1.1/32"),
        ([DOCS_RANGE], "192.168.1.1/32, 192.168.1.2/31"),
        (["-i eth0 -m set ! --match-set docker-ext-bridges-v4 src -j DROP"], "none"),
        (
            ["-s 198.51.100.0/24 -j ACCEPT", "-s 203.0.113.0/24 -j ACCEPT", "-i eth0 -j DROP"],
            "198.51.100.0/24, 203.0.113.0/24",
        ),
        (
            [
                "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                "-i eth0 ! -s 10.0.0.0/8 -j DROP",
            ],
            "10.0.0.0/8",
        ),
    ],
)
def test_an_allow_list_is_policy_not_breakage(rules, allowed):
    v = web_verdict(user(*rules))
    if allowed == "none":  # every remote source refused: the port is broken, by the admin's rule
        assert (v.state, v.owner, v.exposure) == ("dropped", "docker-user", "local")
        return
    assert v.state == "ok", v.reason
    assert (v.exposure, v.allowed) == ("restricted", allowed)
    assert f"only from {allowed}" in v.reason and "filter/DOCKER-USER #" in v.reason
    refused = [c for c in v.classes if c.state == "dropped"]
    assert refused and all(c.owner == "docker-user" for c in refused)


def test_the_classes_partition_the_client_space():
    v = web_verdict(user(DOCS_RANGE))
    spans = sorted(span for c in v.classes for span in c.sources.spans)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))  # disjoint
    union = Sources(4, spans)
    assert union.contains("192.168.1.2") and union.contains("8.8.8.8")
    assert not union.contains("172.17.0.2")  # a container's address is not a remote client's
    assert reaching(v) == Sources.parse("192.168.1.1-192.168.1.3")


def test_no_rule_about_sources_is_public_with_one_class():
    v = web_verdict(BASE_G27)
    assert (v.state, v.exposure, v.allowed, len(v.classes)) == ("ok", "public", "all", 1)


def test_a_blocklist_leaves_the_port_open_to_all_but_the_listed():
    v = web_verdict(user("-s 198.51.100.0/24 -j DROP"))
    assert (v.state, v.exposure) == ("ok", "restricted")
    assert v.allowed == "all except 198.51.100.0/24"


def test_every_source_refused_by_docker_user_is_broken_and_names_the_owner():
    v = web_verdict(user("-i eth0 -j DROP"))
    assert (v.state, v.owner, v.exposure, v.allowed) == ("dropped", "docker-user", "local", "none")
    assert "filter/DOCKER-USER #1" in v.reason


def test_every_class_refused_by_different_admin_rules_is_broken():
    v = web_verdict(user("-s 10.0.0.0/8 -j DROP", "-j REJECT"))
    assert (v.state, v.owner) == ("dropped", "docker-user")
    # one class: dropped by DOCKER-USER; named by the rule that refuses the most addresses
    assert "filter/DOCKER-USER #2 `-A DOCKER-USER -j REJECT`" in v.reason
    assert "(and 1 more rule of filter/DOCKER-USER)" in v.reason
    text = insert_before(
        user("-s 10.0.0.0/8 -j DROP"), "-A FORWARD -j DOCKER-ISOLATION", "-A FORWARD -j REJECT"
    )
    v = web_verdict(text)  # FORWARD's REJECT (host) and DOCKER-USER's DROP: two classes
    assert (v.state, v.owner) == ("dropped", "host")
    assert v.reason.startswith("no remote source reaches it")


def test_a_missing_docker_rule_is_docker_breakage_whoever_drops():
    v = web_verdict(without(user(DOCS_ONE), ACCEPT_LINE))
    assert (v.state, v.owner) == ("dropped", "docker")
    assert "expected rule missing" in v.reason


def test_a_host_rule_in_forward_belongs_to_the_host():
    text = insert_before(BASE_G27, "-A FORWARD -j DOCKER-USER", "-A FORWARD -i eth0 -j DROP")
    v = web_verdict(text)
    assert (v.state, v.owner) == ("dropped", "host")


def test_a_failing_class_decides_over_reaching_ones():
    # a DNAT to elsewhere for one source range (say, a port forward for a partner) misroutes it
    stale = "-A DOCKER -s 203.0.113.0/24 ! -i docker0 -p tcp -m tcp --dport 8080 "
    text = insert_before(
        BASE_G27, "-A DOCKER ! -i docker0", stale + "-j DNAT --to-destination 172.17.0.9:80"
    )
    v = web_verdict(text)
    assert v.state == "misrouted" and v.reason.startswith("from 203.0.113.0/24: nat/DOCKER #2")
    assert reaching(v) == (reaching(v) | Sources.parse("8.8.8.8"))  # the others still reach it


def test_ufw_docker_closes_ports_to_the_internet_and_leaves_private_ranges():
    v = web_verdict(ufw_docker())
    assert v.state == "ok" and v.exposure == "restricted"
    assert v.allowed == "10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16"
    refused = [c for c in v.classes if c.state == "dropped"]
    assert [c.owner for c in refused] == ["docker-user"]  # ufw-docker-logging-deny is reached
    assert "filter/ufw-docker-logging-deny #2" in refused[0].reason


def test_ufw_route_allow_opens_the_port_to_everyone():
    v = web_verdict(ufw_docker("-p tcp -m tcp --dport 80 -j ACCEPT"))
    assert (v.state, v.exposure, v.allowed) == ("ok", "public", "all")


def test_a_drop_policy_of_the_host_on_forward_with_an_allowed_range():
    text = set_policy(without(BASE_G27, ACCEPT_LINE), "filter", "FORWARD", "DROP")
    text = insert_before(
        text, "-A FORWARD -j DOCKER-USER", "-A FORWARD -s 192.0.2.128/25 -j ACCEPT"
    )
    v = web_verdict(text)
    # the ACCEPT Docker expects is missing: breakage, even though one range gets through
    assert v.state == "dropped" and v.owner == "docker"


def test_a_concrete_client_is_the_only_class():
    v = web_verdict(user(DOCS_ONE), clients={"ipv4": "192.168.1.1"})
    assert (v.state, len(v.classes), v.exposure) == ("ok", 1, "public")
    v = web_verdict(user(DOCS_ONE), clients={"ipv4": "192.168.1.2"})
    assert (v.state, v.owner) == ("dropped", "docker-user")


def test_fifty_prefixes_cost_few_walks_not_one_per_prefix():
    rules = [f"-s 198.51.{i}.0/24 -j RETURN" for i in range(50)] + ["-i eth0 -j DROP"]
    v = web_verdict(user(*rules))
    assert v.state == "ok" and v.exposure == "restricted"
    assert len(v.classes) == 2  # the 50 allowed prefixes continue the same way: one class
    assert reaching(v).size() == 50 * 256


@pytest.mark.parametrize(
    "text",
    [
        user(DOCS_ONE),
        user(DOCS_RANGE),
        user("-s 198.51.100.0/24 -j DROP", "-s 203.0.113.0/24 -j REJECT"),
        user("! -s 10.0.0.0/8 -j DROP"),  # the allowed ones' replies are dropped
        ufw_docker(),
    ],
)
def test_each_class_gets_what_one_client_from_it_gets(text):
    """A class's verdict (some are settled where the walk splits) is the verdict of a walk
    with one address of the class as the only client."""
    v = web_verdict(text)
    assert len(v.classes) > 1
    for c in v.classes:
        for addr in {c.sources.first(), c.sources.cidrs()[-1].split("/")[0]}:
            one = web_verdict(text, clients={"ipv4": addr})
            assert (one.state, one.owner) == (c.state, c.owner), addr
            if "more rule" in c.reason:  # prefixes dropped by rules of one chain: one class
                assert one.rule.split()[:2] == c.rule.split()[:2]
            else:
                assert one.reason == c.reason


def test_check_shows_allowed_sources_and_json_carries_the_classes():
    import json

    from support.corefix import analyse_doc, web_doc

    from exporter.cli.report import to_json
    from exporter.cli.table import render_table

    snap = analyse_doc(web_doc(), user(DOCS_RANGE))
    table = render_table(snap)
    assert any(line.startswith("STATE") and "SOURCES" in line for line in table.splitlines())
    row = next(line for line in table.splitlines() if line.startswith("ok") and "web" in line)
    assert "restricted: 192.168.1.1/32, 192.168.1.2/31" in row
    port = next(p for p in json.loads(to_json(snap))["ports"] if p["host_port"] == 8080)
    assert (port["exposure"], port["allowed_sources"]) == (
        "restricted",
        "192.168.1.1/32, 192.168.1.2/31",
    )
    ok, dropped = (next(c for c in port["classes"] if c["state"] == s) for s in ("ok", "dropped"))
    assert ok["prefixes"] == ["192.168.1.1/32", "192.168.1.2/31"] and ok["addresses"] == 3
    assert dropped["owner"] == "docker-user" and "filter/DOCKER-USER #1" in dropped["reason"]
    assert dropped["sources"].startswith("all except 192.168.1.1/32")
    assert sum(c["addresses"] for c in port["classes"]) == Sources.parse("0.0.0.0/0").size() - (
        2**24 * 2
        + 2**16
        + 2**28 * 2
        + 2**16
        + 1  # 0/8, 127/8, 169.254/16, 224/4, 240/4, Docker's 172.17/16, the host
    )
