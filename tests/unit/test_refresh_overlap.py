"""A refresh's reads overlap (serve.overlap): they all run at once, and one that fails or is
slow still leaves its error while the others give their results."""

from __future__ import annotations

import threading

import pytest

from exporter.netstate import NetState
from exporter.path.evidence import RULED
from exporter.rules.family import FamilyRules
from exporter.serve import refresh
from exporter.serve.overlap import Started
from exporter.serve.state import RefreshState
from exporter.sources.docker_api import DockerError
from exporter.sources.ipset import IpsetRead
from exporter.sources.iptables import RuleRead
from exporter.sources.nft import NativeRead

OPTS = refresh.RefreshOptions(host_facts=False)


def _patch(monkeypatch, meet: threading.Barrier | None = None, **fns):
    """Stand-ins for every source; with `meet`, each waits there for all the others, which
    only works when they run at the same time (sequential reads break the barrier)."""

    def met(fn):
        def wait_then(*args):
            if meet is not None:
                meet.wait()
            return fn(*args)

        return wait_then

    base = {
        "read_docker": lambda *a: "raw",
        "read_family": lambda f, *a: RuleRead(FamilyRules(f, ()), {}, (f"{f} warned",)),
        "read_ipsets": lambda *a: IpsetRead((), "ipset contents not read: no"),
        "host_addresses": lambda *a: (("eth0", "192.0.2.1"),),
        "read_netstate": lambda *a: NetState({}, {}, {}, errors=("route not read",)),
    }
    for name, fn in {**base, **fns}.items():
        monkeypatch.setattr(refresh, name, met(fn))
    monkeypatch.setattr(refresh, "read_native", lambda *a: NativeRead({}, "", ()))


def test_the_reads_run_at_the_same_time(monkeypatch):
    # docker, two families, ipsets, addresses, netstate: six at once or the barrier times out
    _patch(monkeypatch, threading.Barrier(6, timeout=20))
    r = refresh.read_host(OPTS, RefreshState())
    assert r.docker == "raw" and r.host_addrs == (("eth0", "192.0.2.1"),)
    assert set(r.rules) == {"ipv4", "ipv6"}
    assert list(r.timings) == ["docker", "prewarm", "rules_ipv4", "rules_ipv6", "rules_nft", "ipsets",
                               "host_addresses", "host_net"]  # fmt: skip


def test_a_failing_read_leaves_its_error_and_the_others_their_results(monkeypatch):
    gate = threading.Event()

    def down(*args):
        gate.wait(20)  # still running when the others have finished
        raise DockerError("Docker API unreachable")

    def ipv4(family, *args):
        gate.set()
        return RuleRead(FamilyRules(family, (), "no iptables-nft-save on PATH"), {}, ())

    _patch(monkeypatch, read_docker=down,
           read_family=lambda f, *a: ipv4(f) if f == "ipv4" else
           RuleRead(FamilyRules(f, ()), {}, ("ipv6 warned",)))  # fmt: skip
    r = refresh.read_host(OPTS, RefreshState())
    assert r.docker is None and r.docker_error == "Docker API unreachable"
    assert r.rules["ipv4"].error == "no iptables-nft-save on PATH"
    assert r.rules["ipv6"].error == "" and "ipv6 warned" in r.warnings
    assert "route not read" in r.warnings and r.host_addrs == (("eth0", "192.0.2.1"),)


def test_an_unexpected_exception_reaches_the_caller(monkeypatch):
    def broken(*args):
        raise RuntimeError("bug")

    _patch(monkeypatch, read_netstate=broken)
    with pytest.raises(RuntimeError, match="bug"):
        refresh.read_host(OPTS, RefreshState())


def test_started_returns_what_the_function_returned_and_how_long_it_ran():
    job = Started(lambda a, b: a + b, 2, 3)
    assert job.result() == 5 and job.seconds >= 0.0


def test_glibc_takes_the_one_arena_limit():
    import platform

    from exporter.sources.arenas import one_malloc_arena

    assert one_malloc_arena() is (platform.libc_ver()[0] == "glibc")


def _saved(name: str):
    from pathlib import Path

    from exporter.docker.raw import load_state

    text = (Path(__file__).parent.parent / "fixtures" / name).read_text()
    return load_state(text)[0]


def test_docker_is_decoded_and_its_expected_rules_built_while_the_rules_are_read():
    from exporter.expect import layouts
    from exporter.expect import model as expected

    raw, state = _saved("d28_state.json"), RefreshState()
    expected.make.cache_clear()
    refresh._prewarm(Started.here(lambda: (raw, "")), state)
    made = expected.make.cache_info()
    assert state.decoded is not None and made.currsize > 0
    decoded = state.decoded[1]
    # the analysis then meets the same state and every rule it expects already made
    assert state.decode(raw.containers, raw.networks, raw.info, raw.version, raw.hints) is decoded
    nets = {n.id: n for n in decoded.networks}
    for b in decoded.bindings:
        if b.design in RULED:  # the bindings Docker writes per-port rules for
            layouts.for_binding(b, decoded.daemon, nets.get(b.network_id))
    assert expected.make.cache_info().misses == made.misses


def test_a_docker_answer_that_cannot_be_decoded_is_left_for_the_analysis():
    raw, state = _saved("d28_state.json"), RefreshState()
    broken = type(raw)({"not": "a list"}, raw.networks, raw.info, raw.version, raw.hints)
    refresh._prewarm(Started.here(lambda: (broken, "")), state)  # no exception here
    assert state.decoded is None
    snap = refresh.assess(
        refresh.Readings(0.0, broken, "", {}, (), None, "", (), {}, 0.0, None), None,
        state.analyse, state.decode,
    )  # fmt: skip
    assert not snap.source_up("docker") and not snap.ports


def test_the_same_answers_again_build_nothing():
    from exporter.expect import model as expected

    raw, state = _saved("d28_state.json"), RefreshState()
    refresh._prewarm(Started.here(lambda: (raw, "")), state)
    expected.make.cache_clear()  # were the rules built again, make would count them
    refresh._prewarm(Started.here(lambda: (raw, "")), state)
    assert expected.make.cache_info().misses == 0 and state.decoded is not None
