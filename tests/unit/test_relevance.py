"""Which nf_tables changes cost a refresh (serve.relevance), and reading single chains again
instead of the whole ruleset (sources.chains, lazysave.patched)."""

from __future__ import annotations

import pytest
from support.corefix import BASE_G27, DNAT_LINE, decode, web_doc, without

from exporter.rules.family import FamilyRules
from exporter.rules.lazysave import looked_at, parse_save_lazy
from exporter.rules.nftevents import EVERYTHING, Change
from exporter.serve.relevance import relevant
from exporter.serve.state import RefreshState
from exporter.sources.chains import parse_listing, reread

ADDRS = (("eth0", "192.0.2.1"),)
F2B = "-A INPUT -s 198.51.100.7/32 -j DROP"


def analysed(text: str):
    """What a RefreshState keeps of one analysis of `text` (nf_tables, lazily parsed)."""
    rs = parse_save_lazy(text, "ipv4", "nf_tables")
    rules = {"ipv4": FamilyRules("ipv4", (rs,), nft_error=""),
             "ipv6": FamilyRules("ipv6", (), nft_error="")}  # fmt: skip
    state = RefreshState()
    analysis = state.analyse(decode(web_doc()), rules, ADDRS, None)
    return state.analysed_rules(), analysis, rs


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (Change("ip", "filter", "INPUT", "rule"), False),  # fail2ban: every port is DNATed
        (Change("ip", "filter", "f2b-sshd", "chain"), False),
        (Change("ip6", "filter", "INPUT", "rule"), True),  # a table that was not there
        (Change("ip", "nat", "DOCKER", "rule"), True),
        (Change("ip", "filter", "DOCKER-USER", "rule"), True),
        (Change("ip", "filter", "FORWARD", "chain"), True),
        (Change("ip", "filter", "", "set"), True),  # a set any rule looked at may use
        (Change("ip", "mangle", "", "table"), True),  # a table that was not there
        (Change("ip", "mangle", "PREROUTING", "chain", base=True), True),
        (Change("inet", "fw", "input", "rule"), False),  # a native table no path reads
        (Change("inet", "fw", "forward", "chain", base=True), True),  # now one may
        (EVERYTHING, True),
    ],
)
def test_a_change_is_relevant_when_the_last_analysis_looked_at_it(change, expected):
    rules, analysis, _ = analysed(BASE_G27)
    assert [p.verdict.state for p in analysis.ports if p.binding.family == "ipv4"] == ["ok"]
    assert relevant(change, rules) is expected


def test_once_a_port_falls_back_to_the_host_its_input_chain_matters():
    rules, analysis, _ = analysed(without(BASE_G27, DNAT_LINE))
    assert [p.verdict.state for p in analysis.ports if p.binding.family == "ipv4"] != ["ok"]
    assert relevant(Change("ip", "filter", "INPUT", "rule"), rules)


def test_before_any_analysis_and_for_native_tables_unread_everything_is_relevant():
    assert relevant(Change("ip", "filter", "INPUT", "rule"), None)
    rules, _, _ = analysed(BASE_G27)
    unread = {f: FamilyRules(f, fr.rulesets) for f, fr in rules.items()}  # nft_error set
    assert relevant(Change("inet", "fw", "input", "rule"), unread)


def test_a_listing_is_read_as_the_save_text_holds_it():
    assert parse_listing("-P INPUT DROP\n-A INPUT -j ACCEPT\n", "INPUT") == (
        "DROP",
        ("-A INPUT -j ACCEPT",),
    )
    assert parse_listing("-N DOCKER\n-A DOCKER\n", "DOCKER") == (None, ("-A DOCKER",))
    assert parse_listing("-N DOCKER\n", "DOCKER") == (None, ())
    for odd in ("", "-N OTHER\n", "-N DOCKER\n-A DOCKER-USER -j RETURN\n", "-P INPUT\n"):
        assert parse_listing(odd, "DOCKER" if "OTHER" in odd or "USER" in odd else "INPUT") is None


class Kernel:
    """Stands in for `iptables-nft -S`: the chain as a save text holds it now."""

    def __init__(self, text: str) -> None:
        self.rs, self.calls = parse_save_lazy(text, "ipv4", "nf_tables"), []

    def __call__(self, family, table, chain, timeout):
        self.calls.append((table, chain))
        c = self.rs.tables[table].chains.get(chain)
        return None if c is None else (c.policy, tuple(r.text for r in c.rules))


def test_only_changed_chains_that_were_looked_at_are_read_again():
    _, _, rs = analysed(BASE_G27)
    now = BASE_G27.replace(DNAT_LINE, DNAT_LINE + "\n-A DOCKER -p udp -j RETURN").replace(
        "-A DOCKER-USER -j RETURN", "-A DOCKER-USER -j RETURN\n" + F2B.replace("INPUT", "X")
    )
    kernel = Kernel(now)
    stale = {"nat": {"DOCKER"}, "filter": {"INPUT"}}
    again = reread(rs, stale, 1.0, read=kernel)
    assert kernel.calls == [("nat", "DOCKER")]  # filter INPUT: nothing looked at it
    assert not looked_at(again, "nat", "DOCKER")  # a new Ruleset: its analysis is to come
    assert stale == {"nat": set(), "filter": {"INPUT"}}
    assert [r.text for r in again.tables["nat"].chains["DOCKER"].rules][-1].endswith("RETURN")
    assert again.tables["filter"].chains["FORWARD"] is rs.tables["filter"].chains["FORWARD"]
    assert again.rule_count() == rs.rule_count() + 1
    assert reread(again, {"filter": {"INPUT"}}, 1.0, read=kernel) is again  # nothing to read


def test_a_chain_gone_or_a_table_unknown_or_a_failed_read_asks_for_a_whole_read():
    _, _, rs = analysed(BASE_G27)
    assert reread(rs, {"mangle": {"PREROUTING"}}, 1.0, read=Kernel(BASE_G27)) is None
    assert reread(rs, {"nat": {"DOCKER"}}, 1.0, read=lambda *a: None) is None
    gone = reread(rs, {}, 1.0, wanted={("nat", "DOCKER")},
                  read=lambda *a: (None, ()))  # fmt: skip
    assert gone.tables["nat"].chains["DOCKER"].rules == ()
