"""Readings and their assessment: the saved Docker state round-trips, host facts are re-read on
their interval, and rule errors found during the analysis are collected once."""

from __future__ import annotations

import json

import pytest
from support.corefix import ACCEPT_LINE, BASE_G27, raw, web_doc

from exporter.docker.raw import SavedStateError, dump_state, load_state
from exporter.readings import Readings
from exporter.rules.family import FamilyRules
from exporter.rules.lazysave import parse_save_lazy, rule_errors
from exporter.serve.snapshot import assess
from exporter.serve.state import RefreshState

ADDRS = (("eth0", "192.0.2.1"), ("eth0", "2001:db8::1"))


def test_saved_state_round_trips():
    r = raw(web_doc())
    text = dump_state(r, ADDRS, 1700000000.5)
    doc = json.loads(text)
    assert doc["saved_at"] == 1700000000.5 and doc["host_addresses"] == [list(a) for a in ADDRS]
    back, addrs = load_state(text)
    assert back == r and addrs == ADDRS


def test_saved_state_without_host_addresses_says_unknown():
    back, addrs = load_state(dump_state(raw(web_doc()), None, 0.0))
    assert addrs is None and back.hints == raw(web_doc()).hints


@pytest.mark.parametrize("text", ["[]", "{", '{"containers": []}'])
def test_not_a_saved_state(text):
    with pytest.raises(SavedStateError):
        load_state(text)


def test_host_facts_are_due_first_then_every_interval():
    now = [1000.0]
    s = RefreshState(host_interval=60.0, clock=lambda: now[0])
    assert s.host_due()
    s.host_read("facts")
    now[0] += 59.0
    assert not s.host_due() and s.host == "facts"
    now[0] += 1.0
    assert s.host_due()


def test_a_rule_found_unreadable_during_analysis_is_counted_and_warned_once():
    text = BASE_G27.replace(ACCEPT_LINE, ACCEPT_LINE + ' -m comment --comment "unterminated')
    rs = parse_save_lazy(text, "ipv4", "nf_tables")
    assert rs.errors == () and rule_errors(rs) == ()  # found only when the chain is read
    rules = {"ipv4": FamilyRules("ipv4", (rs,)), "ipv6": FamilyRules("ipv6", ())}
    s = assess(Readings(0.0, raw(web_doc()), "", rules, ADDRS))
    assert s.parse_errors == (("nf_tables", "ipv4", 1),)
    late = [w for w in s.warnings if "unbalanced quoting" in w]
    assert len(late) == 1 and late[0].startswith("ipv4 nf_tables: line 20 (filter/DOCKER)")


def test_daemon_start_is_read_every_refresh_iptables_facts_on_their_interval(monkeypatch):
    """Issue 15 item 1: a daemon restart shows at the next refresh; only the expensive facts
    (package databases, the self-test) wait for --refresh.host-facts-interval."""
    import exporter.sources.host as host
    from exporter.rules.family import FamilyRules as FR
    from exporter.serve import refresh
    from exporter.sources.docker_api import DockerError
    from exporter.sources.iptables import RuleRead
    from exporter.sources.nft import NativeRead

    def no_docker(*args):
        raise DockerError("down")

    monkeypatch.setattr(refresh, "read_docker", no_docker)
    monkeypatch.setattr(refresh, "read_family", lambda f, *a: RuleRead(FR(f, ()), {}, ()))
    monkeypatch.setattr(refresh, "read_native", lambda *a: NativeRead({}, "not read", ()))
    monkeypatch.setattr(refresh, "host_addresses", lambda *a: ())
    reads, starts = [], iter([1000.0, 2000.0])
    monkeypatch.setattr(host, "read_iptables_facts", lambda **kw: reads.append(kw) or "ipt")
    monkeypatch.setattr(refresh, "read_daemon_start",
                        lambda *a: (10.0, next(starts), "proc", ()))  # fmt: skip
    state = RefreshState(host_interval=3600.0)
    first = refresh.read_host(refresh.RefreshOptions(), state).host
    second = refresh.read_host(refresh.RefreshOptions(), state).host
    assert len(reads) == 1  # the interval has not passed
    assert first.iptables == second.iptables == "ipt"
    assert (first.daemon_start_time_seconds, second.daemon_start_time_seconds) == (1000.0, 2000.0)
