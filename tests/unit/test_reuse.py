"""Incremental analysis (path.reuse via serve.state.RefreshState) equals a whole analysis.

A generated host (bench.gen: Docker 20.10's rules, kube-proxy-style chains) takes random
one-rule changes (delete, insert, replace; anywhere in Docker's chains, FORWARD, DOCKER-USER, the
chains walks jump to) and random Docker-state changes, read as the service reads them (the
changed chain patched in, or the whole text again); after each, the RefreshState's analysis
must equal one from scratch in everything: states, reasons, owners, exposure, classes, the
expected rules' evidence, stale rules.
"""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import gen
from exporter.docker.decode import DaemonHints, decode_state
from exporter.path.analysis import analyse
from exporter.rules.family import FamilyRules
from exporter.rules.lazysave import looked_at, parse_save_lazy, patch_ruleset
from exporter.serve.state import RefreshState

ADDRS = (("lo", "127.0.0.1"), ("eth0", gen.HOST_ADDR))
DOC = gen.docker_json(8)
TEXT = gen.ruleset_text(DOC, 60)
CHAINS = [("nat", "DOCKER"), ("nat", "PREROUTING"), ("nat", "POSTROUTING"),
          ("nat", "KUBE-SERVICES"), ("filter", "FORWARD"), ("filter", "DOCKER-USER"),
          ("filter", "DOCKER"), ("filter", "DOCKER-ISOLATION-STAGE-1"),
          ("filter", "DOCKER-ISOLATION-STAGE-2")]  # fmt: skip
IPS = [
    ep["IPAddress"] for c in DOC["containers"] for ep in c["NetworkSettings"]["Networks"].values()
]
PORTS = [p["PublicPort"] for c in DOC["containers"] for p in c["Ports"]]
FIXED = ["-s 203.0.113.0/24 -j DROP", "-s 198.51.100.7/32 -j RETURN", "-j RETURN",
         "-i eth0 -j DROP", "-m statistic --mode random --probability 0.5 -j DROP",
         "-s 203.0.113.0/24 -j ACCEPT", "-j NOSUCHCHAIN", "-p udp -j REJECT",
         "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
         "-o br-9404eea3257e -j DOCKER-USER"]  # fmt: skip
DNAT = "! -i docker0 -p tcp -m tcp --dport {} -j DNAT --to-destination {}:80"
BODIES = st.one_of(
    st.sampled_from(FIXED),
    st.builds(lambda p: f"-p tcp -m tcp --dport {p} -j DROP", st.sampled_from(PORTS)),
    st.builds(lambda ip: f"-d {ip}/32 -j REJECT", st.sampled_from(IPS)),
    st.builds(DNAT.format, st.sampled_from(PORTS), st.sampled_from(IPS)),
    st.just(None),  # a copy of a rule of the same chain: the same content twice
)
CHANGE = st.tuples(st.sampled_from(CHAINS), st.sampled_from(["delete", "insert", "replace"]),
                   st.integers(0, 10_000), BODIES, st.integers(0, 10_000))  # fmt: skip
DOCKER_CHANGE = st.one_of(st.none(), st.tuples(st.sampled_from(["drop", "port"]),
                                               st.integers(0, 100)))  # fmt: skip


def family_rules(rs) -> dict:
    return {"ipv4": FamilyRules("ipv4", (rs,)), "ipv6": FamilyRules("ipv6", ())}


def state_of(doc, decode=decode_state):
    return decode(doc["containers"], doc["networks"], doc["info"], doc["version"],
                  DaemonHints(cmdline=("/usr/sbin/dockerd",)))  # fmt: skip


def chain_lines(text: str, table: str, chain: str) -> tuple[int, list[int]]:
    """The index of the table's COMMIT and those of the chain's rule lines in `text`'s lines."""
    lines = text.split("\n")
    start = lines.index(f"*{table}")
    end = lines.index("COMMIT", start)
    return end, [i for i in range(start, end) if lines[i].startswith(f"-A {chain} ")]


def changed(text: str, change) -> tuple[str, str, str, tuple[str, ...]]:
    """The text after one rule change, the chain changed and its new rule lines."""
    (table, chain), op, at, body, copied = change
    lines = text.split("\n")
    end, mine = chain_lines(text, table, chain)
    if body is None:
        body = lines[mine[copied % len(mine)]][len(chain) + 4 :] if mine else "-j RETURN"
    rule = f"-A {chain} {body}"
    if op == "delete" and mine:
        del lines[mine[at % len(mine)]]
    elif op == "replace" and mine:
        lines[mine[at % len(mine)]] = rule
    else:
        lines.insert(mine[at % (len(mine) + 1)] if at % (len(mine) + 1) < len(mine) else
                     (mine[-1] + 1 if mine else end), rule)  # fmt: skip
    new = "\n".join(lines)
    return new, table, chain, tuple(lines[i] for i in chain_lines(new, table, chain)[1])


def docker_changed(doc: dict, change) -> dict:
    if change is None:
        return doc
    doc = copy.deepcopy(doc)
    what, n = change
    cs = doc["containers"]
    if what == "drop":
        del cs[n % len(cs)]
    else:
        cs[n % len(cs)]["Ports"][0]["PublicPort"] += 1000
    return doc


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(st.lists(st.tuples(CHANGE, DOCKER_CHANGE, st.booleans()), min_size=1, max_size=3))
def test_incremental_analysis_equals_a_whole_one(steps) -> None:
    cache, text, doc = RefreshState(), TEXT, DOC
    rs = parse_save_lazy(text, "ipv4", "nf_tables")
    cache.analyse(state_of(doc, cache.decode), family_rules(rs), ADDRS, None)
    for change, dchange, patched in steps:
        text, table, chain, lines = changed(text, change)
        doc = docker_changed(doc, dchange)
        if patched:  # as the change feed has it read: the one chain alone
            policy = {"FORWARD": "DROP", "PREROUTING": "ACCEPT", "POSTROUTING": "ACCEPT"}
            policy = policy.get(chain)
            rs = patch_ruleset(rs, {table: {chain: (policy, lines)}})
        else:  # the whole text again, reusing the unchanged chains
            rs = parse_save_lazy(text, "ipv4", "nf_tables", rs)
        state = state_of(doc)
        # the API answers as a new read has them: equal, not the same objects
        kept = state_of(copy.deepcopy(doc), cache.decode)
        assert kept == state
        got = cache.analyse(kept, family_rules(rs), ADDRS, None)
        fresh = parse_save_lazy(text, "ipv4", "nf_tables")
        want = analyse(state, family_rules(fresh), ADDRS)
        assert got == want
        unmarked(text, fresh, rs, state, want)


TARGETS = {"ACCEPT", "DROP", "REJECT", "RETURN", "DNAT", "SNAT", "MASQUERADE", "MARK", ""}


def unmarked(text: str, fresh, rs, state, want) -> None:
    """What a whole analysis looked up and the incremental one's rules do not say was looked
    up (relevance skips changes to such chains) must not matter: a DROP at its top changes
    nothing."""
    for table, t in fresh.tables.items():
        for chain in sorted(t.chains.seen - rs.tables[table].chains.seen - TARGETS):
            lines = text.split("\n")
            start = lines.index(f"*{table}")
            at = next(i for i in range(start, len(lines)) if lines[i].startswith("-A "))
            lines.insert(at, f"-A {chain} -j DROP")
            if f":{chain} " not in text:
                lines.insert(start + 1, f":{chain} - [0:0]")
            other = parse_save_lazy("\n".join(lines), "ipv4", "nf_tables")
            assert analyse(state, family_rules(other), ADDRS) == want, (table, chain)


def test_one_dnat_deleted_walks_its_binding_alone_and_moves_the_others_positions() -> None:
    cache = RefreshState()
    rs = parse_save_lazy(TEXT, "ipv4", "nf_tables")
    state = state_of(DOC)
    before = cache.analyse(state, family_rules(rs), ADDRS, None)
    change = (("nat", "DOCKER"), "delete", 0, "", 0)
    _, docker = chain_lines(TEXT, "nat", "DOCKER")
    first_dnat = next(i for i, ln in enumerate(TEXT.split("\n")[j] for j in docker) if "DNAT" in ln)
    text, _, _, lines = changed(TEXT, (*change[:2], first_dnat, "", 0))
    rs = patch_ruleset(rs, {"nat": {"DOCKER": (None, lines)}})
    got = cache.analyse(state, family_rules(rs), ADDRS, None)
    assert cache.last.walked == 1
    assert got == analyse(state, family_rules(parse_save_lazy(text, "ipv4", "nf_tables")), ADDRS)
    moved = [
        (a.verdict.reason, b.verdict.reason) for a, b in zip(before.ports, got.ports, strict=True)
    ]
    assert sum(a != b for a, b in moved) == len(got.ports)  # the deleted one, the others moved
    assert "nat/DOCKER #" in moved[-1][0] and moved[-1][0] != moved[-1][1]


def test_what_kept_verdicts_read_stays_looked_at() -> None:
    # relevance (serve.relevance) skips changes to chains no analysis looked up: the chains
    # behind a kept verdict must count as looked up in the new rules too
    cache = RefreshState()
    rs = parse_save_lazy(TEXT, "ipv4", "nf_tables")
    state = state_of(DOC)
    cache.analyse(state, family_rules(rs), ADDRS, None)
    assert looked_at(rs, "filter", "DOCKER-USER") and looked_at(rs, "filter", "FORWARD")
    new = "-p udp -m udp --dport 9 -j RETURN"  # no binding has that port
    _, _, _, lines = changed(TEXT, (("nat", "DOCKER"), "insert", 0, new, 0))
    rs = patch_ruleset(rs, {"nat": {"DOCKER": (None, lines)}})
    cache.analyse(state, family_rules(rs), ADDRS, None)
    assert cache.last.walked == 0
    for chain in ("PREROUTING", "POSTROUTING", "KUBE-SERVICES", "KUBE-NODEPORTS"):
        assert looked_at(rs, "nat", chain), chain
    for chain in ("DOCKER-USER", "FORWARD", "DOCKER", "DOCKER-ISOLATION-STAGE-1"):
        assert looked_at(rs, "filter", chain), chain


def test_equal_docker_answers_decode_once_changed_ones_again() -> None:
    cache, calls = RefreshState(), []
    first = state_of(DOC, cache.decode)
    assert state_of(copy.deepcopy(DOC), cache.decode) is first
    other = docker_changed(DOC, ("port", 3))
    assert state_of(other, cache.decode) == state_of(other) != first
    assert state_of(DOC, cache.decode) == first
    bad = copy.deepcopy(DOC)
    bad["containers"] = {}
    try:
        state_of(bad, cache.decode)
    except ValueError:
        calls.append("raised")
    assert calls == ["raised"] and cache.decoded is None
    assert state_of(DOC, cache.decode) == first


def test_a_chain_only_a_walked_again_binding_read_stops_being_looked_at() -> None:
    # the DNAT gone, its port falls back to the host and reads filter INPUT; once the DNAT is
    # back and filter is read again (an INPUT change), INPUT changes must cost nothing again
    cache, state = RefreshState(), state_of(DOC)
    rs = parse_save_lazy(TEXT, "ipv4", "nf_tables")
    cache.analyse(state, family_rules(rs), ADDRS, None)
    _, docker = chain_lines(TEXT, "nat", "DOCKER")
    nat = [TEXT.split("\n")[j] for j in docker]
    first = next(i for i, ln in enumerate(nat) if "DNAT" in ln)
    for lines in (nat[:first] + nat[first + 1 :], nat):
        rs = patch_ruleset(rs, {"nat": {"DOCKER": (None, tuple(lines))}})
        cache.analyse(state, family_rules(rs), ADDRS, None)
        assert cache.last.walked == 1
    assert looked_at(rs, "filter", "INPUT")  # the same filter table: as before this work
    rs = patch_ruleset(
        rs, {"filter": {"INPUT": ("ACCEPT", ("-A INPUT -s 198.51.100.1/32 -j DROP",))}}
    )
    cache.analyse(state, family_rules(rs), ADDRS, None)
    assert cache.last.walked == 0
    assert not looked_at(rs, "filter", "INPUT")
    assert looked_at(rs, "filter", "FORWARD") and looked_at(rs, "filter", "DOCKER-USER")


def test_a_patched_table_knows_what_its_text_lacks_and_still_records_the_lookup() -> None:
    rs = parse_save_lazy(TEXT, "ipv4", "nf_tables")
    nat = rs.tables["nat"].chains
    assert "NOSUCH" not in nat and nat.get("OTHER") is None
    rs = patch_ruleset(rs, {"nat": {"OTHER": (None, ("-A OTHER -j RETURN",))}})
    chains = rs.tables["nat"].chains
    assert "NOSUCH" not in chains
    assert "NOSUCH" in chains.seen  # a lookup, though the answer was known
    assert chains.get("NOSUCH") is None
    assert "OTHER" in chains and [r.target for r in chains["OTHER"].rules] == ["RETURN"]
    rs = patch_ruleset(rs, {"nat": {"NOSUCH": (None, ("-A NOSUCH -j ACCEPT",))}})
    assert [r.target for r in rs.tables["nat"].chains["NOSUCH"].rules] == ["ACCEPT"]
