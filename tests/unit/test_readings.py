"""The saved Docker state round-trips, and a RefreshState re-reads host facts on its interval."""

from __future__ import annotations

import json

import pytest
from support.corefix import raw, web_doc

from exporter.docker.raw import SavedStateError, dump_state, load_state
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
