"""The walk's shortcuts give what a plain walk gives (path.relevance, path.index).

A remembered chain walk reused for another packet (a client class, or a container's address
keyed by its cell of the chain's tested prefixes) and rules left out of the candidates because
no client of the class passes their `-s` must change no verdict: every port's state, reason,
owner, exposure, allowed sources and classes equal those of walks with both turned off.
"""

from __future__ import annotations

import pytest

from bench import gen
from bench.sources import ADDRS, scenario
from exporter.docker.decode import DaemonHints, decode_state
from exporter.path import index, relevance, walk
from exporter.path.analysis import analyse
from exporter.rules.family import FamilyRules
from exporter.rules.lazysave import parse_save_lazy

DOC = gen.docker_json(40)
TEXT = gen.ruleset_text(DOC, 300)
STATE = decode_state(DOC["containers"], DOC["networks"], DOC["info"], DOC["version"],
                     DaemonHints(cmdline=("/usr/sbin/dockerd",)))  # fmt: skip
IPS = [b.container_ip for b in STATE.bindings if b.family == "ipv4" and b.container_ip]
ANCHOR = "-A DOCKER-USER -j RETURN"


def user(*rules: str) -> str:
    return TEXT.replace(ANCHOR, "\n".join([*(f"-A DOCKER-USER {r}" for r in rules), ANCHOR]), 1)


CASES = {
    **{kind: scenario(TEXT, kind, 12) for kind in ("none", "allow", "allow+acc", "block")},
    # the replies of one container dropped: its address's cell differs from the others'
    "one container's replies": user(f"-s {IPS[0]}/32 -j DROP"),
    "a subnet's replies": user("-s 10.101.0.0/16 -o eth0 -j DROP", "-s 198.51.100.0/24 -j DROP"),
    "a range": user("-m iprange --src-range 10.100.0.2-10.100.0.9 -j DROP"),
    "negated": user("-i eth0 ! -s 198.51.100.0/24 -j DROP", "! -s 10.100.0.0/16 -o eth0 -j DROP"),
}


def verdicts(text: str) -> list:
    rs = parse_save_lazy(text, "ipv4", "nf_tables")
    rules = {"ipv4": FamilyRules("ipv4", (rs,)), "ipv6": FamilyRules("ipv6", ())}
    return [(p.binding.container_ip, p.binding.host_port, p.verdict)
            for p in analyse(STATE, rules, ADDRS).ports]  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_reused_walks_and_left_out_rules_change_no_verdict(case, monkeypatch):
    text = CASES[case]
    fast = verdicts(text)
    monkeypatch.setattr(walk, "plan", lambda fields: relevance.NEVER)  # every chain walked
    monkeypatch.setattr(index, "_sources", lambda r: ())  # every -s rule a candidate
    assert verdicts(text) == fast


def test_a_container_whose_replies_a_rule_drops_is_told_from_the_others():
    got = {(ip, port): v for ip, port, v in verdicts(CASES["one container's replies"])}
    dropped = {k for k, v in got.items() if v.state == "dropped"}
    assert dropped and {ip for ip, _ in dropped} == {IPS[0]}
    assert all(v.state == "ok" for k, v in got.items() if k not in dropped)
