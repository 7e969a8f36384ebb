"""The HTTP exporter through aiohttp's test client, with injected snapshot functions."""

from __future__ import annotations

import asyncio
import gzip
import subprocess
import sys
import threading
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from support.servicefix import fixture_snapshot, incident_rules

from exporter.config import COMMON, SERVE, ConfigError, env_defaults
from exporter.serve.collector import SnapshotCollector
from exporter.serve.refresh import RefreshOptions
from exporter.serve.service import ServeConfig, build_app, serve_config
from exporter.web.app import SLICE
from exporter.web.webconfig import WebConfig


def cfg(**kw) -> ServeConfig:
    base = dict(
        host="127.0.0.1",
        port=0,
        telemetry_path="/metrics",
        web=WebConfig(),
        max_requests=40,
        interval=3600.0,
        debounce=0.01,
        host_interval=3600.0,
        max_bindings=5000,
        log_level="info",
        log_format="logfmt",
    )
    return ServeConfig(**{**base, **kw})


async def client_for(aiohttp_client, snapshot_fn, **kw):
    app, holder, sched = build_app(
        cfg(**kw), RefreshOptions(host_facts=False), snapshot_fn, watch=False
    )
    client = await aiohttp_client(app)
    for _ in range(200):
        if holder.snapshot is not None:
            break
        await asyncio.sleep(0.01)
    return client, holder, sched


async def test_metrics_text_and_openmetrics(aiohttp_client):
    client, _, _ = await client_for(aiohttp_client, lambda opts: fixture_snapshot())
    r = await client.get("/metrics")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    body = await r.text()
    assert 'docker_nat_port_state{container="web"' in body
    r = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert r.headers["Content-Type"].startswith("application/openmetrics-text")
    om = await r.text()
    assert om.rstrip().endswith("# EOF") and "# TYPE docker_nat_docker info" in om


async def test_source_failure_is_data_not_an_error(aiohttp_client):
    client, _, _ = await client_for(aiohttp_client, lambda opts: fixture_snapshot(docker_up=False))
    r = await client.get("/metrics")
    assert r.status == 200
    body = await r.text()
    assert 'docker_nat_source_up{source="docker"} 0.0' in body
    assert 'docker_nat_refresh_errors_total{source="docker"} 1.0' in body
    assert "docker_nat_port_state{" not in body


async def test_ready_only_after_first_snapshot(aiohttp_client):
    release = threading.Event()

    def slow(opts):
        release.wait(10)
        return fixture_snapshot()

    app, holder, _ = build_app(cfg(), RefreshOptions(host_facts=False), slow, watch=False)
    client = await aiohttp_client(app)
    assert (await client.get("/-/ready")).status == 503
    assert (await client.get("/-/healthy")).status == 200
    assert (await client.get("/metrics")).status == 200  # self metrics only, never blocks
    release.set()
    for _ in range(200):
        if holder.snapshot is not None:
            break
        await asyncio.sleep(0.01)
    assert (await client.get("/-/ready")).status == 200


async def test_status_page_lists_broken_ports_escaped(aiohttp_client):
    def snap(opts):
        s = fixture_snapshot(incident_rules())
        ports = tuple(
            replace(p, binding=replace(p.binding, container="<script>x</script>"))
            if p.binding.container == "web"
            else p
            for p in s.ports
        )
        return replace(s, ports=ports)

    client, _, _ = await client_for(aiohttp_client, snap)
    page = await (await client.get("/")).text()
    assert "misrouted" in page and "172.17.0.9:80" in page
    assert "<script>x" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "Stale rules" in page


async def test_trigger_refreshes_and_swaps(aiohttp_client):
    texts = iter([None, incident_rules()])
    client, holder, sched = await client_for(
        aiohttp_client, lambda opts: fixture_snapshot(next(texts, incident_rules()))
    )
    first = holder.snapshot
    assert 'state="misrouted"} 1.0' not in await (await client.get("/metrics")).text()
    sched.trigger("test")
    for _ in range(300):
        if holder.snapshot is not first:
            break
        await asyncio.sleep(0.01)
    body = await (await client.get("/metrics")).text()
    assert 'host_port="18080",network="bridge",protocol="tcp",state="misrouted"} 1.0' in body


async def test_custom_telemetry_path_and_gzip(aiohttp_client):
    client, _, _ = await client_for(
        aiohttp_client, lambda o: fixture_snapshot(), telemetry_path="/m"
    )
    r = await client.get("/m", headers={"Accept-Encoding": "gzip"})
    assert r.status == 200 and r.headers.get("Content-Encoding") == "gzip"
    assert "docker_nat_port_state" in await r.text()  # the client decompresses
    assert (await client.get("/metrics")).status == 404


def many_ports(n: int):
    """The fixture snapshot with its ports repeated on `n` more host ports."""
    snap = fixture_snapshot()
    extra = tuple(
        replace(p, binding=replace(p.binding, host_port=40000 + i))
        for i in range(n)
        for p in snap.ports[:1]
    )
    return replace(snap, ports=snap.ports + extra)


async def test_a_body_larger_than_a_slice_arrives_whole(aiohttp_client):
    """Bodies are sent as views of the cached bytes, SLICE at a time: all of them, in order."""
    snap = many_ports(300)
    client, holder, _ = await client_for(aiohttp_client, lambda o: snap)
    plain = CollectorRegistry(auto_describe=False)
    plain.register(SnapshotCollector(holder, 5000))
    want = generate_latest(plain)
    assert len(want) > 2 * SLICE
    for encoding in ("identity", "gzip"):
        r = await client.get(
            "/metrics", headers={"Accept-Encoding": encoding}, auto_decompress=False
        )
        raw = await asyncio.wait_for(r.read(), 30)  # a short body would leave it waiting
        assert int(r.headers["Content-Length"]) == len(raw)
        assert (gzip.decompress(raw) if encoding == "gzip" else raw) == want
    r = await client.head("/metrics")
    assert r.status == 200 and await r.read() == b""


def test_the_exporter_does_not_import_what_it_never_uses():
    """A serving exporter with the docker SDK loaded holds no YAML writer for the `alerts`
    command and none of requests' character-set guessers (3.5 MiB)."""
    code = (
        "import sys; from exporter.cli import main; from exporter.serve import service; "
        "from exporter.sources.docker_api import client\n"
        "try: client('unix:///nonexistent.sock', 1)\n"
        "except Exception: pass\n"
        "print(sorted({'docker', 'requests'} - set(sys.modules)), "
        "[m for m in ('exporter.alerts', 'charset_normalizer', 'chardet') if sys.modules.get(m)])"
    )
    out = subprocess.run([sys.executable, "-W", "error::Warning", "-c", code],
                         capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    assert out.stdout.strip() == "[] []", out.stderr


def serve_values(**over):
    v = env_defaults(COMMON + SERVE, environ={})
    v.update(over)
    return v


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("web.listen-address", "9841", "is not [host]:port"),
        ("web.listen-address", "bad host!:1", "is not a host name or address"),
        ("web.telemetry-path", "metrics", "must be a path"),
        ("refresh.interval", "15", "is not a duration"),
        ("refresh.interval", "0s", "greater than zero"),
        ("max-bindings", "-1", "non-negative whole number"),
        ("web.config.file", "/nonexistent/web.yml", "cannot read file"),
        ("log.level", "verbose", "is not allowed"),
    ],
)
def test_bad_serve_flags_rejected_with_message(flag, value, message):
    with pytest.raises(ConfigError) as exc:
        serve_config(serve_values(**{flag: value}))
    assert f"--{flag}" in str(exc.value) and message in str(exc.value)


def test_environment_supplies_flags():
    v = env_defaults(SERVE, environ={"DOCKER_NAT_EXPORTER_WEB_LISTEN_ADDRESS": "127.0.0.1:1234"})
    assert serve_config({**serve_values(), **v}).port == 1234


def _nft_snapshot_with_stale_dnat():
    """Docker 29's nftables backend (tests/fixtures/nft/proxy.*) plus a DNAT for a port no
    container publishes, in Docker's own nat chain: a stale native rule."""
    import json

    from support.corefix import raw
    from support.servicefix import FIX

    from exporter.readings import Readings
    from exporter.rules.family import FamilyRules
    from exporter.serve.snapshot import assess
    from exporter.sources.nft import from_ruleset_json, with_native

    doc = json.loads((FIX / "nft" / "proxy.ruleset.json").read_text())
    stale = {"rule": {"family": "ip", "table": "docker-bridges",
             "chain": "nat-prerouting-and-output", "expr": [
                 {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                            "right": 9099}},
                 {"dnat": {"addr": "192.0.2.9", "port": 80}}]}}  # fmt: skip
    doc["nftables"].append(stale)
    native = from_ruleset_json(json.dumps(doc))
    state = json.loads((FIX / "nft" / "proxy.state.json").read_text())
    rules = {f: with_native(FamilyRules(f, ()), native) for f in ("ipv4", "ipv6")}
    addrs = tuple(tuple(a) for a in state["host_addresses"])
    return assess(Readings(0.0, raw(state), "", rules, addrs))


async def test_stale_native_rule_reaches_metrics(aiohttp_client):
    snap = _nft_snapshot_with_stale_dnat()
    assert [(s.table, s.chain) for s in snap.stale] == [
        ("ip docker-bridges", "nat-prerouting-and-output")
    ]
    client, _, _ = await client_for(aiohttp_client, lambda opts: snap)
    body = await (await client.get("/metrics")).text()
    series = [ln for ln in body.splitlines() if ln.startswith("docker_nat_stale_rules{")]
    assert series == [
        'docker_nat_stale_rules{chain="nat-prerouting-and-output",family="ipv4",'
        'table="ip docker-bridges"} 1.0'
    ]
