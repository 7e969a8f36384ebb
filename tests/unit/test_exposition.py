"""serve.exposition renders exactly what prometheus_client's encoders render, in both formats,
and renders a port's lines again only when what they show changed."""

from __future__ import annotations

import gzip
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics
from support.servicefix import StaticHolder, fixture_snapshot, incident_rules

from exporter.serve.collector import SnapshotCollector
from exporter.serve.exposition import Exposition, ServeRegistry, write_port

ENCODERS = [
    generate_latest,
    openmetrics,
    choose_encoder("application/openmetrics-text; version=1.0.0")[0],  # a new partial each time
    choose_encoder("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8")[0],
]


def both(snapshot, max_bindings=5000, errors=None):
    """(what the encoder makes of the collector, the Exposition of the same collector)."""
    collector = SnapshotCollector(StaticHolder(snapshot, errors), max_bindings)
    plain = CollectorRegistry(auto_describe=False)
    plain.register(collector)
    return plain, ServeRegistry(collector).exposition


def odd(snapshot):
    """The snapshot with labels that need escaping: quotes, backslashes, newlines, non-ASCII."""
    ports = []
    for i, p in enumerate(snapshot.ports):
        name = ['we"b', "back\\slash", "new\nline", "ünï", p.binding.container][i % 5]
        ports.append(replace(p, binding=replace(p.binding, container=name)))
    return replace(snapshot, ports=tuple(ports))


@pytest.mark.parametrize("encoder", ENCODERS, ids=["text", "om", "om-negotiated", "om-utf8"])
@pytest.mark.parametrize(
    ("snapshot", "max_bindings"),
    [
        (None, 5000),
        (fixture_snapshot(), 5000),
        (fixture_snapshot(incident_rules()), 5000),
        (fixture_snapshot(incident_rules()), 1),  # capped: the broken ports only
        (odd(fixture_snapshot(incident_rules())), 5000),
        (fixture_snapshot(docker_up=False), 5000),  # no ports: the families' headers alone
    ],
)
def test_the_same_bytes_as_the_encoder(encoder, snapshot, max_bindings):
    plain, fast = both(snapshot, max_bindings, {"docker": 2, "iptables": 0})
    assert fast(encoder) == encoder(plain)
    assert fast(encoder) == encoder(plain)  # again, from the lines kept
    assert gzip.decompress(fast(encoder, True)) == encoder(plain)


def test_an_encoder_writing_otherwise_gets_every_port_through_itself():
    snap = fixture_snapshot(incident_rules())
    plain, fast = both(snap)

    def shouting(registry):
        return generate_latest(registry).replace(b" 1.0\n", b" 1\n")

    assert fast(shouting) == shouting(plain)


def test_a_port_is_written_again_only_when_what_it_shows_changed():
    snap = fixture_snapshot(incident_rules())
    holder, written = StaticHolder(snap), []

    def write(p):
        written.append(p.binding)
        return write_port(p)

    fast = Exposition(SnapshotCollector(holder, 5000), write)
    fast(generate_latest)
    assert len(written) == len(snap.ports) + 1  # each port, and one to compare with the encoder
    written.clear()
    holder.snapshot = replace(snap, taken_at=snap.taken_at + 1)
    fast(generate_latest)
    assert written == []  # a new snapshot whose ports show the same: every line kept
    broken = next(i for i, p in enumerate(snap.ports) if p.verdict.state != "ok")
    ports = list(snap.ports)
    ports[broken] = replace(ports[broken], verdict=replace(ports[broken].verdict, state="ok"))
    holder.snapshot = replace(snap, ports=tuple(ports), taken_at=snap.taken_at + 2)
    body = fast(generate_latest)
    assert written == [ports[broken].binding]
    plain = CollectorRegistry(auto_describe=False)
    plain.register(SnapshotCollector(holder, 5000))
    assert body == generate_latest(plain)


def many(snapshot, copies: int):
    """The snapshot's ports `copies` times over, each copy on other host ports."""
    ports = [replace(p, binding=replace(p.binding, host_port=p.binding.host_port + 1000 * i))
             for i in range(copies) for p in snapshot.ports]  # fmt: skip
    return replace(snapshot, ports=tuple(ports))


@pytest.mark.parametrize("encoder", ENCODERS[:2], ids=["text", "om"])
def test_kept_lines_and_blocks_follow_every_change(encoder):
    """Ports changed, gone, added, in runs kept or not; the families after the ports when only
    the rest of the snapshot changed: each body, plain and gzipped, is the encoder's."""
    snap = many(fixture_snapshot(incident_rules()), 60)
    holder = StaticHolder(snap)
    fast = Exposition(SnapshotCollector(holder, 5000))
    plain = CollectorRegistry(auto_describe=False)
    plain.register(SnapshotCollector(holder, 5000))
    ports = list(snap.ports)
    ok = replace(ports[7].verdict, state="ok", code="ok")
    steps = [
        lambda s: replace(s, taken_at=s.taken_at + 1),  # the same port objects
        lambda s: replace(s, ports=tuple(replace(p) for p in s.ports)),  # equal, not the same
        lambda s: replace(s, ports=(*s.ports[:7], replace(s.ports[7], verdict=ok), *s.ports[8:])),
        lambda s: replace(s, ports=s.ports[:300] + s.ports[301:]),
        lambda s: replace(s, ports=(s.ports[-1], *s.ports)),
        lambda s: replace(s, jumps=s.jumps[1:]),  # only what comes after the ports
        lambda s: replace(s, containers=s.containers[:1], stale=()),
        lambda s: replace(s, ports=s.ports[:3]),
        lambda s: replace(s, ports=()),
        lambda s: snap,
    ]
    for step in steps:
        holder.snapshot = step(holder.snapshot)
        want = encoder(plain)
        assert fast(encoder) == want
        assert gzip.decompress(fast(encoder, True)) == want
