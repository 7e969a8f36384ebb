"""The host's network read is reused only while the rtnetlink feed runs and has told of
nothing since (sources.netwatch via serve.state.RefreshState): a refresh sees what a fresh
read would, whatever the order of changes, feed starts and stops."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.netstate import NetState
from exporter.rules.family import FamilyRules
from exporter.serve import refresh
from exporter.serve.state import RefreshState
from exporter.sources.ipset import IpsetRead
from exporter.sources.iptables import RuleRead
from exporter.sources.netwatch import NetWatch
from exporter.sources.nft import NativeRead
from exporter.sources.watch import NetEvents

OPTS = refresh.RefreshOptions(host_facts=False)


class Host:
    """A stand-in host: `version` changes tell the feed (when it runs), `switch` (a forwarding
    sysctl) does not."""

    def __init__(self, state: RefreshState) -> None:
        self.state, self.version, self.switch, self.reads = state, 0, 0, 0
        self.during: list = []  # changes made while the next read runs

    def addrs(self, *args):
        self.reads += 1
        got = (("eth0", f"192.0.2.{self.version}"),)
        for change in self.during:
            change()
        self.during = []
        return got

    def net(self, *args):
        return NetState({f"v{self.version}": True}, {}, {}, {"ipv4": {"all": self.switch % 2}})

    def forwarding(self, net):
        return replace(net, forwarding={"ipv4": {"all": self.switch % 2}})

    def change(self) -> None:
        self.version += 1
        self.state.net.changed()  # the feed tells, if it runs (a bump either way)


def patched(monkeypatch, host: Host) -> None:
    fns = {
        "read_docker": lambda *a: "raw",
        "read_family": lambda f, *a: RuleRead(FamilyRules(f, ()), {}, ()),
        "read_ipsets": lambda *a: IpsetRead((), ""),
        "host_addresses": host.addrs,
        "read_netstate": host.net,
        "with_forwarding": host.forwarding,
        "read_native": lambda *a: NativeRead({}, "", ()),
    }
    for name, fn in fns.items():
        monkeypatch.setattr(refresh, name, fn)


STEPS = st.lists(st.sampled_from(["start", "stop", "change", "during", "switch", "read"]),
                 max_size=25)  # fmt: skip


@settings(max_examples=200, deadline=None, database=None)
@given(STEPS)
def test_a_refresh_sees_the_host_as_a_fresh_read_would(steps) -> None:
    import pytest

    with pytest.MonkeyPatch.context() as mp:
        state = RefreshState()
        host = Host(state)
        patched(mp, host)
        for step in [*steps, "read", "read"]:
            if step == "start":
                state.net.started()
            elif step == "stop":
                state.net.stopped()
            elif step == "change":
                host.change()
            elif step == "switch":
                host.switch += 1
            elif step == "during":  # told while a read runs: that read may miss it
                host.during.append(host.change)
            else:
                pending, version = bool(host.during), host.version
                r = refresh.read_host(OPTS, state)
                if not pending:
                    assert r.host_addrs == (("eth0", f"192.0.2.{version}"),)
                    assert set(r.net.links) == {f"v{version}"}
                assert r.net.forwarding["ipv4"] == {"all": host.switch % 2}


def test_reads_are_reused_only_while_the_feed_runs_and_is_quiet(monkeypatch) -> None:
    state = RefreshState()
    host = Host(state)
    patched(monkeypatch, host)
    refresh.read_host(OPTS, state)
    refresh.read_host(OPTS, state)
    assert host.reads == 2  # no feed: every refresh reads
    state.net.started()
    refresh.read_host(OPTS, state)
    r = refresh.read_host(OPTS, state)
    assert host.reads == 3 and "host_net" not in r.timings
    host.change()
    assert refresh.read_host(OPTS, state).host_addrs == (("eth0", "192.0.2.1"),)
    assert host.reads == 4
    state.net.stopped()
    refresh.read_host(OPTS, state)
    assert host.reads == 5


def test_net_events_tell_the_watch_of_every_batch_and_of_their_start_and_end() -> None:
    watch = NetWatch()
    told: list[str] = []
    feed = NetEvents(told.append, watch)
    feed.link_states = lambda: {}
    assert watch.token() is None
    feed.opened(False)
    first = watch.token()
    feed.received(b"")  # a batch that changes no verdict still changes what a read gives
    assert watch.token() not in (None, first) and told == []
    second = watch.token()
    feed.lost()
    assert watch.token() != second
    feed.ended()
    assert watch.token() is None
