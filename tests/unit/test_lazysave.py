"""exporter.rules.lazysave (chains parsed on first access, unchanged chains reused) and the refresh
cache built on it: the same Rulesets and verdicts as the eager parser, never a stale one."""

from __future__ import annotations

import random

import pytest
from support.corefix import (
    ACCEPT_LINE,
    BASE_G27,
    DNAT_LINE,
    FIXTURES,
    LAYOUTS,
    decode,
    web_doc,
    web_verdict,
    without,
)

from exporter.rules.family import FamilyRules
from exporter.rules.iptsave import parse_save
from exporter.rules.lazysave import LazyChains, parse_save_lazy, rule_errors
from exporter.serve.state import RefreshState
from exporter.sources.iptables import parse_reusing

SAVES = sorted([*LAYOUTS.glob("*/ip*tables.txt"), *FIXTURES.glob("d2010_ip*tables.txt")])
KUBE = [
    ":KUBE-SERVICES - [0:0]",
    '-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https '
    'cluster IP" -m tcp --dport 443 -j KUBE-SVC-NPX46M4PTMTKRN6Y',
    ":KUBE-SVC-NPX46M4PTMTKRN6Y - [0:0]",
    "-A KUBE-SVC-NPX46M4PTMTKRN6Y -j DNAT --to-destination 10.0.0.5:6443",
]


def _same_as_eager(text: str) -> None:
    eager, lazy = parse_save(text, "ipv4", "nf_tables"), parse_save_lazy(text, "ipv4", "nf_tables")
    assert lazy.tables == eager.tables  # every chain, every rule, every policy
    for name, table in eager.tables.items():
        for chain, c in table.chains.items():
            assert [r.text for r in lazy.tables[name].chains[chain].rules] == [
                r.text for r in c.rules
            ]
    assert lazy.rule_count() == eager.rule_count()
    assert sorted(map(str, (*lazy.errors, *rule_errors(lazy)))) == sorted(map(str, eager.errors))


@pytest.mark.parametrize("path", SAVES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_lazy_parse_equals_the_eager_one_on_every_fixture(path):
    text = path.read_text()
    assert all(isinstance(t.chains, LazyChains) for t in
               parse_save_lazy(text, "ipv4", "nf_tables").tables.values())  # fmt: skip
    _same_as_eager(text)


def test_chains_are_parsed_only_when_looked_at():
    nat = BASE_G27.index("*nat")
    end = BASE_G27.index("COMMIT\n", nat)
    text = BASE_G27[:end] + "\n".join(KUBE) + "\n" + BASE_G27[end:]
    rs = parse_save_lazy(text, "ipv4", "nf_tables")
    nat = rs.tables["nat"].chains
    assert rs.rule_count() == parse_save(text, "ipv4", "nf_tables").rule_count()
    assert "KUBE-SERVICES" in nat and "NOPE" not in nat and nat.get("NOPE") is None
    assert nat.parsed == {}  # counting and membership parse nothing
    assert [r.target for r in nat["DOCKER"].rules][-1] == "DNAT"
    assert set(nat.parsed) == {"DOCKER"}
    quoted = nat["KUBE-SERVICES"].rules[0]
    assert quoted.opt("--comment").values == ("default/kubernetes:https cluster IP",)
    _same_as_eager(text)


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.replace("-A DOCKER ", "[3:180] -A DOCKER ", 1),  # counters (-c)
        lambda t: t.replace(DNAT_LINE, DNAT_LINE.replace("-A DOCKER", "-A DOCKR")),  # undeclared
        lambda t: t[: t.rindex("COMMIT")],  # truncated: no COMMIT
        lambda t: t + "# Table `raw' is incompatible, use 'nft' tool.\n",
        lambda t: t.replace("\n", "\r\n"),
        lambda t: t.replace("-A DOCKER ", "  -A DOCKER ", 1),
        lambda t: t.replace(":DOCKER - [0:0]", ":DOCKER", 1),  # malformed declaration
        lambda t: "-A DOCKER -j ACCEPT\n" + t,  # a rule outside any table
        lambda t: t.replace("*nat", "*nat\n*mangle", 1),  # a table inside a table
    ],
)
def test_unusual_structure_gets_the_eager_parser_and_its_errors(change):
    text = change(BASE_G27)
    lazy = parse_save_lazy(text, "ipv4", "nf_tables")
    assert not any(isinstance(t.chains, LazyChains) for t in lazy.tables.values())
    assert lazy == parse_save(text, "ipv4", "nf_tables")


def test_odd_but_valid_rule_lines_are_read_like_the_eager_parser_reads_them():
    for text in (
        BASE_G27.replace(DNAT_LINE, "-A DOCKER"),  # nothing after the chain: a no-op rule
        BASE_G27.replace(DNAT_LINE, DNAT_LINE.replace(" -j ", "   -j ")),  # extra spaces
        BASE_G27.replace(DNAT_LINE, DNAT_LINE + "\n\n# a comment"),
    ):
        assert isinstance(parse_save_lazy(text, "ipv4", "nf_tables").tables["nat"].chains,
                          LazyChains)  # fmt: skip
        _same_as_eager(text)


def test_an_unparsable_rule_is_a_placeholder_with_its_error_once_its_chain_is_read():
    bad = DNAT_LINE.replace("-j DNAT", '--bogus "x -j DNAT')
    text = BASE_G27.replace(DNAT_LINE, bad)
    lazy = parse_save_lazy(text, "ipv4", "nf_tables")
    assert rule_errors(lazy) == ()  # not read yet
    rule = lazy.tables["nat"].chains["DOCKER"].rules[-1]
    assert rule.conds[0].option == "?unparsed" and rule.text == bad
    (err,) = rule_errors(lazy)
    (want,) = parse_save(text, "ipv4", "nf_tables").errors
    assert str(err) == str(want) and err.chain == "DOCKER"
    assert err.line_no == text.splitlines().index(bad) + 1


def test_unchanged_chains_are_reused_and_changed_ones_parsed_again():
    old = parse_save_lazy(BASE_G27, "ipv4", "nf_tables")
    docker, post = (old.tables["nat"].chains[c] for c in ("DOCKER", "POSTROUTING"))
    new = parse_save_lazy(without(BASE_G27, DNAT_LINE), "ipv4", "nf_tables", old)
    assert new.tables["nat"].chains["POSTROUTING"] is post
    changed = new.tables["nat"].chains["DOCKER"]
    assert changed is not docker and "DNAT" not in [r.target for r in changed.rules]
    other = parse_save_lazy(BASE_G27, "ipv6", "nf_tables", old)  # another family: no reuse
    assert other.tables["nat"].chains["POSTROUTING"] is not post
    assert other.tables["nat"].chains["POSTROUTING"].rules[0].family == "ipv6"


def test_policy_change_is_not_hidden_by_reuse():
    old = parse_save_lazy(BASE_G27, "ipv4", "nf_tables")
    assert old.tables["filter"].chains["FORWARD"].policy == "DROP"
    text = BASE_G27.replace(":FORWARD DROP", ":FORWARD ACCEPT", 1)
    new = parse_save_lazy(text, "ipv4", "nf_tables", old)
    assert new.tables["filter"].chains["FORWARD"].policy == "ACCEPT"


def test_read_cache_gives_the_same_ruleset_only_for_the_same_text():
    last: dict = {}
    first = parse_reusing(BASE_G27, "ipv4", "nf_tables", last)
    assert parse_reusing(BASE_G27, "ipv4", "nf_tables", last) is first
    other = parse_reusing(without(BASE_G27, DNAT_LINE), "ipv4", "nf_tables", last)
    assert other is not first and last["nf_tables"][1] is other


def test_refresh_cache_reuses_an_analysis_only_when_nothing_changed():
    cache, state = RefreshState(), decode(web_doc())
    addrs = (("eth0", "192.0.2.1"),)
    last: dict = {}

    def analyse(text: str):
        rs = parse_reusing(text, "ipv4", "nf_tables", last)
        rules = {"ipv4": FamilyRules("ipv4", (rs,)), "ipv6": FamilyRules("ipv6", ())}
        return cache.analyse(state, rules, addrs, None)

    first = analyse(BASE_G27)
    assert [p.verdict.state for p in first.ports if p.binding.family == "ipv4"] == ["ok"]
    assert analyse(BASE_G27) is first
    gone = analyse(without(BASE_G27, DNAT_LINE))
    assert gone is not first
    assert [p.verdict.state for p in gone.ports if p.binding.family == "ipv4"] != ["ok"]
    back = analyse(BASE_G27)
    assert back is not gone and [p.verdict.state for p in back.ports if
                                 p.binding.family == "ipv4"] == ["ok"]  # fmt: skip
    other_state = decode(web_doc(proxy=False))
    rules = {"ipv4": FamilyRules("ipv4", (last["nf_tables"][1],)), "ipv6": FamilyRules("ipv6", ())}
    assert cache.analyse(other_state, rules, addrs, None) is not back
    assert cache.analyse(other_state, rules, (("eth1", "198.51.100.1"),), None) is not back


def test_a_port_option_without_a_port_is_unknown_not_a_crash():
    # a garbled line ending in `--dport` used to raise IndexError in the matcher and the
    # stale-rule check, failing the whole refresh
    garbled = ACCEPT_LINE.split(" 80 -j")[0]
    text = BASE_G27.replace(ACCEPT_LINE, garbled)
    assert web_verdict(text).state == "unknown"
    lazy = parse_save_lazy(text, "ipv4", "nf_tables")
    (rule,) = [r for r in lazy.tables["filter"].chains["DOCKER"].rules if r.text == garbled]
    assert rule.conds[0].option == "?unparsed"
    assert "--dport without a port" in str(rule_errors(lazy)[0])


def _shuffled(text: str, seed: int) -> str:
    """The text with each table's rule lines in a random order (chains interleaved)."""
    rnd, out, rules = random.Random(seed), [], []
    for line in text.splitlines():
        if line.startswith("-A "):
            rules.append(line)
            continue
        if line == "COMMIT":
            rnd.shuffle(rules)
            out += rules
            rules = []
        out.append(line)
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("seed", range(4))
def test_a_chain_read_from_interleaved_or_bare_lines_is_the_eager_parsers(seed):
    """A chain's rules are found as one block when *-save prints them together, and line by
    line when not: lines of other chains among them, a bare `-A NAME`, a chain whose name
    starts another's (DOCKER, DOCKER-USER)."""
    text = BASE_G27 if seed < 2 else SAVES[seed % len(SAVES)].read_text()
    if seed % 2:
        nat = text.index("*nat\n")
        decl = text.index("\n:DOCKER ", nat) + 1
        text = text[:decl] + ":DOCKER-X - [0:0]\n" + text[decl:]
        text = text.replace(DNAT_LINE, f"{DNAT_LINE}\n-A DOCKER\n-A DOCKER-X -j RETURN")
    for t in (text, _shuffled(text, seed)):
        lazy = parse_save_lazy(t, "ipv4", "nf_tables")
        assert all(isinstance(tb.chains, LazyChains) for tb in lazy.tables.values())
        _same_as_eager(t)
