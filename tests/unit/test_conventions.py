"""Docker's and Prometheus exporters' conventions (issue 15, items 3 and 7): DOCKER_HOST, boolean
switches as kingpin has them, "listening on" only once bound, and `name[]` filtering."""

from __future__ import annotations

import re
import socket
import time

import pytest
from prometheus_client import CollectorRegistry
from support.exporterproc import ExporterProc, run_exporter
from support.servicefix import fixture_snapshot

from exporter.cli.main import build_parser, refresh_options
from exporter.config import COMMON, ConfigError, env_defaults
from exporter.serve.collector import SnapshotCollector
from exporter.serve.scheduler import Holder
from exporter.web.app import make_app
from exporter.web.webconfig import WebConfig

NO_DOCKER = "unix:///nonexistent/docker.sock"


# ---------------------------------------------------------------- DOCKER_HOST


@pytest.mark.parametrize(
    ("environ", "want"),
    [
        ({}, "unix:///var/run/docker.sock"),
        ({"DOCKER_HOST": "tcp://10.0.0.1:2375"}, "tcp://10.0.0.1:2375"),
        ({"DOCKER_HOST": ""}, "unix:///var/run/docker.sock"),
        (
            {"DOCKER_HOST": "tcp://10.0.0.1:2375", "DOCKER_NAT_EXPORTER_DOCKER_HOST": "unix:///x"},
            "unix:///x",
        ),
    ],
)
def test_docker_host_falls_back_to_docker_host(environ, want):
    assert env_defaults(COMMON, environ)["docker.host"] == want


def test_docker_host_flag_beats_docker_host(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.1:2375")
    monkeypatch.delenv("DOCKER_NAT_EXPORTER_DOCKER_HOST", raising=False)
    ns = build_parser().parse_args(["check"])
    assert refresh_options(ns).docker_host == "tcp://10.0.0.1:2375"
    ns = build_parser().parse_args(["check", "--docker.host", "unix:///run/d.sock"])
    assert refresh_options(ns).docker_host == "unix:///run/d.sock"


def test_bad_docker_host_names_where_it_may_come_from(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "/var/run/docker.sock")
    monkeypatch.delenv("DOCKER_NAT_EXPORTER_DOCKER_HOST", raising=False)
    with pytest.raises(ConfigError, match="DOCKER_HOST"):
        refresh_options(build_parser().parse_args(["check"]))


# ---------------------------------------------------------------- boolean switches


@pytest.mark.parametrize(
    ("args", "env", "want"),
    [
        ([], None, False),
        (["--iptables.self-test"], None, True),
        (["--iptables.self-test=false"], None, False),
        (["--iptables.self-test", "true"], None, True),  # the older spelling still works
        (["--no-iptables.self-test"], "true", False),
        ([], "true", True),
        (["--iptables.self-test", "--no-iptables.self-test"], None, False),  # the last one wins
    ],
)
def test_boolean_switches_work_bare_and_negated(monkeypatch, args, env, want):
    if env is None:
        monkeypatch.delenv("DOCKER_NAT_EXPORTER_IPTABLES_SELF_TEST", raising=False)
    else:
        monkeypatch.setenv("DOCKER_NAT_EXPORTER_IPTABLES_SELF_TEST", env)
    for command in ("serve", "check"):
        ns = build_parser().parse_args([command, *args])
        assert refresh_options(ns).self_test is want, (command, args)


# ---------------------------------------------------------------- listening on


def test_port_in_use_never_logs_listening():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        p = run_exporter(["--web.listen-address", f"127.0.0.1:{port}", "--docker.host", NO_DOCKER])
    assert p.returncode == 2, p.stderr
    assert "cannot listen" in p.stderr and "Traceback" not in p.stderr
    assert "listening on" not in p.stderr, p.stderr


def test_listening_is_logged_once_bound_with_the_bound_address():
    with ExporterProc(None, "--docker.host", NO_DOCKER, "--refresh.interval", "1h") as exp:
        deadline = time.monotonic() + 30
        while "listening on" not in exp.stderr() and time.monotonic() < deadline:
            assert exp.alive, exp.stderr()
            time.sleep(0.02)
        line = next(ln for ln in exp.stderr().splitlines() if "listening on" in ln)
        assert f"listening on 127.0.0.1:{exp.port} " in line, line
        with socket.create_connection(("127.0.0.1", exp.port), timeout=5):
            pass  # bound and accepting the moment it says so
        assert exp.stop() == 0  # SIGTERM: a clean exit


# ---------------------------------------------------------------- name[] filtering


async def test_metrics_honours_name_filter(aiohttp_client):
    holder = Holder()
    holder.snapshot = fixture_snapshot()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(holder))
    client = await aiohttp_client(make_app(holder, registry, WebConfig()))
    names = ("docker_nat_port_state", "docker_nat_source_up")
    r = await client.get("/metrics", params=[("name[]", n) for n in names])
    assert r.status == 200
    got = set(re.findall(r"^([a-z_]+)[{ ]", await r.text(), re.M))
    assert got == set(names)
    r = await client.get("/metrics", params={"name[]": "no_such_metric"})
    assert (r.status, await r.text()) == (200, "")
    whole = await (await client.get("/metrics")).text()  # the filtered answers were not cached
    assert "docker_nat_port_info{" in whole and "docker_nat_bindings " in whole
