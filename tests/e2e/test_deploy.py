"""Deployment files: compose stack, swarm stack, Prometheus scrape configs, systemd unit.

Validated with the real tools, each given a file it must reject too (so a validator that checks
nothing would fail here):
- deploy/compose.yml: `docker-compose config` (Debian's docker-compose 1.29: the compose plugin
  is not packaged for bookworm), then the parsed result is checked against the repository
  (mounted files exist, Grafana and Prometheus find what they are pointed at).
- deploy/swarm/stack.yml: `docker stack config` (Docker CLI, validates against the stack schema
  without a daemon).
- Prometheus configs: `promtool check config` in a temporary folder laid out like the
  container's mounts, so the rule file paths must resolve.
- alerts/alertmanager.example.yml (what compose mounts): `amtool check-config`.
- The systemd unit: `systemd-analyze verify` on a copy whose ExecStart is /bin/true (verify
  insists the binary exists; the real one is only there after the install). Its capability set
  is then tried for real: the exporter runs as root under `setpriv` with exactly the unit's
  CapabilityBoundingSet and no-new-privs against a lab Docker host (tests/support/lab.py).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import trustme
import yaml
from support.lab import Lab
from support.util import require_or_skip

from exporter.config import COMMON, SERVE

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yml"
STACK = DEPLOY / "swarm" / "stack.yml"
UNIT = DEPLOY / "systemd" / "docker-nat-exporter.service"
DEFAULTS = DEPLOY / "systemd" / "docker-nat-exporter.default"
RULES = ROOT / "alerts" / "docker-nat.rules.yml"
SCRAPE_EXAMPLES = sorted((DEPLOY / "prometheus").glob("*.yml"))
TIMEOUT = 60
PORT = 18080


def tool(name: str) -> str:
    path = shutil.which(name)
    require_or_skip(path is not None, f"{name} not installed")
    return path


def run(args: list[str], cwd: Path | None = None, env: dict | None = None):
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def clean_env(tmp_path: Path) -> dict[str, str]:
    """Environment without the caller's Docker/Compose settings (they would change the result)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
    env.pop("GRAFANA_ADMIN_PASSWORD", None)
    return {**env, "DOCKER_CONFIG": str(tmp_path / "docker-config")}


def rule_count() -> int:
    return sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])


# ---- compose ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose(tmp_path_factory) -> dict:
    """deploy/compose.yml as docker-compose resolves it (relative paths made absolute)."""
    compose_bin = tool("docker-compose")
    env = clean_env(tmp_path_factory.mktemp("compose"))
    p = run([compose_bin, "-f", str(COMPOSE), "config"], env=env)
    assert p.returncode == 0, p.stderr
    return yaml.safe_load(p.stdout)


def binds(service: dict) -> dict[str, tuple[str, str]]:
    """container path -> (host source, options) of a service's short-syntax volumes."""
    out = {}
    for spec in service.get("volumes", []):
        source, target, *options = spec.split(":")
        out[target] = (source, options[0] if options else "")
    return out


def test_compose_rejects_an_invalid_file(tmp_path):
    bad = tmp_path / "compose.yml"
    bad.write_text("services:\n  x:\n    image: busybox\n    cap_add: NET_ADMIN\n    pid: [host]\n")
    p = run([tool("docker-compose"), "-f", str(bad), "config"], env=clean_env(tmp_path))
    assert p.returncode != 0
    assert "is invalid" in p.stderr


def test_compose_has_the_four_services_with_pinned_images(compose):
    services = compose["services"]
    assert set(services) == {"exporter", "prometheus", "alertmanager", "grafana"}
    for name in ("prometheus", "alertmanager", "grafana"):
        image = services[name]["image"]
        assert re.fullmatch(r"[a-z/]+:v?\d+\.\d+\.\d+", image), f"{name}: {image} is not pinned"
    assert services["exporter"]["build"]["context"] == str(ROOT)


def test_compose_exporter_runs_with_least_privilege_on_the_host(compose):
    exporter = compose["services"]["exporter"]
    assert exporter["network_mode"] == "host"
    assert exporter["pid"] == "host"
    assert exporter["cap_drop"] == ["ALL"]
    assert set(exporter["cap_add"]) == {"NET_ADMIN", "NET_RAW", "SYS_CHROOT"}
    assert exporter["read_only"] is True
    assert "privileged" not in exporter
    mounts = binds(exporter)
    assert mounts["/var/run/docker.sock"] == ("/var/run/docker.sock", "ro")
    assert mounts["/host"] == ("/", "ro,rslave")
    assert exporter["environment"]["DOCKER_NAT_EXPORTER_HOST_ROOT"] == "/host"


def test_compose_prometheus_loads_the_shipped_rules_and_scrapes_the_exporter(compose):
    prom = compose["services"]["prometheus"]
    mounts = binds(prom)
    config_source, _ = mounts["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(Path(config_source).read_text())
    rules_dir, _ = mounts["/etc/prometheus/alerts"]
    assert Path(rules_dir) == ROOT / "alerts"
    # rule_files are relative to the config's folder, /etc/prometheus, inside the container.
    for rule_file in config["rule_files"]:
        in_container = Path("/etc/prometheus") / rule_file
        relative = in_container.relative_to("/etc/prometheus/alerts")
        assert (Path(rules_dir) / relative).is_file(), rule_file
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "docker-nat"]
    assert job["static_configs"][0]["targets"] == ["host.docker.internal:9841"]
    assert "host.docker.internal:host-gateway" in prom["extra_hosts"]
    [am] = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am.split(":")[0] in compose["services"]


def test_compose_grafana_finds_datasource_and_dashboards(compose):
    mounts = binds(compose["services"]["grafana"])
    provisioning, _ = mounts["/etc/grafana/provisioning"]
    datasources = [
        ds
        for f in sorted(Path(provisioning, "datasources").glob("*.yml"))
        for ds in yaml.safe_load(f.read_text())["datasources"]
    ]
    assert [ds["url"] for ds in datasources] == ["http://prometheus:9090"]
    assert "9090:9090" in compose["services"]["prometheus"]["ports"][0]
    providers = [
        p
        for f in sorted(Path(provisioning, "dashboards").glob("*.yml"))
        for p in yaml.safe_load(f.read_text())["providers"]
    ]
    [path] = [p["options"]["path"] for p in providers]
    dashboards_source, _ = mounts[path]
    found = sorted(Path(dashboards_source).glob("*.json"))
    assert found == sorted((ROOT / "dashboards").glob("*.json")) and found
    for f in found:
        assert json.loads(f.read_text())["uid"]


def test_compose_alertmanager_config_passes_amtool(compose):
    source, _ = binds(compose["services"]["alertmanager"])["/etc/alertmanager/alertmanager.yml"]
    p = run([tool("amtool"), "check-config", source])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout


# ---- swarm ------------------------------------------------------------------------------------


def stack_config(path: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    docker = tool("docker")
    has_stack = run([docker, "stack", "config", "--help"], env=clean_env(tmp_path))
    require_or_skip(has_stack.returncode == 0, "this docker CLI has no `stack config` (< 20.10)")
    return run([docker, "stack", "config", "-c", str(path)], env={**clean_env(tmp_path), **env})


def test_swarm_stack_validates_as_global_host_network_service(tmp_path):
    p = stack_config(STACK, tmp_path)
    assert p.returncode == 0, p.stderr
    exporter = yaml.safe_load(p.stdout)["services"]["exporter"]
    assert exporter["deploy"]["mode"] == "global"
    assert exporter["image"] == "docker-nat-exporter:latest"
    [net] = exporter["networks"]
    assert yaml.safe_load(p.stdout)["networks"][net] == {"name": "host", "external": True}
    assert set(exporter["cap_add"]) == {"NET_ADMIN", "NET_RAW", "SYS_CHROOT"}
    assert exporter["cap_drop"] == ["ALL"]
    volumes = {v["target"]: v for v in exporter["volumes"]}
    assert volumes["/var/run/docker.sock"]["source"] == "/var/run/docker.sock"
    assert volumes["/host"]["source"] == "/" and volumes["/host"]["read_only"] is True
    assert exporter["environment"]["DOCKER_NAT_EXPORTER_WEB_LISTEN_ADDRESS"] == ":9841"


def test_swarm_stack_takes_image_and_socket_from_the_environment(tmp_path):
    p = stack_config(
        STACK, tmp_path, EXPORTER_IMAGE="registry.example.org/dne:1.2", DOCKER_SOCKET="/run/d.sock"
    )
    assert p.returncode == 0, p.stderr
    exporter = yaml.safe_load(p.stdout)["services"]["exporter"]
    assert exporter["image"] == "registry.example.org/dne:1.2"
    assert {v["target"]: v["source"] for v in exporter["volumes"]}["/var/run/docker.sock"] == (
        "/run/d.sock"
    )


def test_swarm_stack_validator_rejects_an_invalid_file(tmp_path):
    bad = tmp_path / "stack.yml"
    bad.write_text('version: "3.9"\nservices:\n  x:\n    image: b\n    cap_add: NET_ADMIN\n')
    p = stack_config(bad, tmp_path)
    assert p.returncode != 0
    assert "cap_add must be a list" in p.stderr


# ---- Prometheus -------------------------------------------------------------------------------


def promtool_check(config: Path, layout: dict[str, Path], tmp_path: Path):
    """`promtool check config` on a copy of `config` with `layout` (relative path -> source)
    copied beside it, as the config will find them where it is deployed."""
    work = tmp_path / "prom"
    work.mkdir()
    shutil.copy(config, work / config.name)
    for rel, source in layout.items():
        dest = work / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, dest)
        else:
            shutil.copy(source, dest)
    return run([tool("promtool"), "check", "config", config.name], cwd=work)


def test_compose_prometheus_config_passes_promtool(tmp_path):
    # compose mounts ../alerts at /etc/prometheus/alerts beside /etc/prometheus/prometheus.yml
    p = promtool_check(DEPLOY / "prometheus.yml", {"alerts": ROOT / "alerts"}, tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"SUCCESS: {rule_count()} rules found" in p.stdout


def test_promtool_fails_when_the_rule_file_is_not_where_the_config_says(tmp_path):
    p = promtool_check(DEPLOY / "prometheus.yml", {"docker-nat.rules.yml": RULES}, tmp_path)
    assert p.returncode != 0


@pytest.mark.parametrize("example", SCRAPE_EXAMPLES, ids=[p.name for p in SCRAPE_EXAMPLES])
def test_scrape_example_passes_promtool(example, tmp_path):
    layout = {"docker-nat.rules.yml": RULES, "targets": DEPLOY / "prometheus" / "targets"}
    p = promtool_check(example, layout, tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "WARNING" not in p.stdout + p.stderr
    assert f"SUCCESS: {rule_count()} rules found" in p.stdout
    jobs = [j["job_name"] for j in yaml.safe_load(example.read_text())["scrape_configs"]]
    assert "docker-nat" in jobs  # the shipped alerts select job="docker-nat"


def test_scrape_examples_cover_static_file_and_swarm_discovery():
    kinds = set()
    for example in SCRAPE_EXAMPLES:
        for job in yaml.safe_load(example.read_text())["scrape_configs"]:
            kinds |= {k for k in job if k.endswith("_configs") and k != "relabel_configs"}
    assert kinds == {"static_configs", "file_sd_configs", "dockerswarm_sd_configs"}


def test_file_sd_targets_are_host_port_groups():
    for f in sorted((DEPLOY / "prometheus" / "targets").glob("*.yml")):
        groups = yaml.safe_load(f.read_text())
        assert groups, f
        for group in groups:
            assert set(group) <= {"targets", "labels"}
            for target in group["targets"]:
                assert re.fullmatch(r"[a-z0-9.-]+:\d+", target), target


# ---- systemd ----------------------------------------------------------------------------------


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def verify_unit(text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """systemd-analyze verify on a copy of the unit whose ExecStart binary is /bin/true."""
    exe = unit_settings(text)["ExecStart"][0].split()[0]
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={exe}", "ExecStart=/bin/true"))
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "info", "SYSTEMD_LOG_COLOR": "0"}
    return run([tool("systemd-analyze"), "verify", "--man=no", str(copy)], env=env)


def test_systemd_unit_verifies(tmp_path):
    p = verify_unit(UNIT.read_text(), tmp_path)
    assert p.returncode == 0, p.stderr
    assert UNIT.name not in p.stdout + p.stderr, p.stdout + p.stderr


def test_systemd_verify_reports_a_misspelt_setting(tmp_path):
    text = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict")
    p = verify_unit(text, tmp_path)
    assert "ProtectSytem" in p.stdout + p.stderr


def test_systemd_unit_is_hardened_without_hiding_what_the_exporter_reads():
    s = unit_settings(UNIT.read_text())
    assert s["ExecStart"][0].startswith("/opt/docker-nat-exporter/bin/docker-nat-exporter serve")
    assert set(s["CapabilityBoundingSet"][0].split()) == {"CAP_NET_ADMIN", "CAP_NET_RAW"}
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "ProtectHome": "yes", "PrivateTmp": "yes"}.items():  # fmt: skip
        assert s[key] == [value], key
    families = set(s["RestrictAddressFamilies"][0].split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    for breaks in ("PrivateNetwork", "ProcSubset", "ProtectProc", "PrivateUsers", "IPAddressDeny"):
        assert breaks not in s, f"{breaks} hides what the exporter must read"
    assert s["EnvironmentFile"] == ["-/etc/default/docker-nat-exporter"]


def test_defaults_file_names_only_real_flags():
    known = {f.env for f in COMMON + SERVE}
    names = re.findall(r"^#?\s*(DOCKER_NAT_EXPORTER_\w+)=", DEFAULTS.read_text(), re.M)
    assert names
    assert set(names) <= known, set(names) - known


# ---- the unit's capabilities, for real ---------------------------------------------------------


def setpriv_args() -> list[str]:
    """setpriv emulating the unit: uid 0 whose bounding set is CapabilityBoundingSet, no
    inheritable or ambient capabilities, no_new_privs."""
    caps = unit_settings(UNIT.read_text())["CapabilityBoundingSet"][0].split()
    bounding = ",".join(["-all", *(f"+{c.removeprefix('CAP_').lower()}" for c in caps)])
    return ["setpriv", f"--bounding-set={bounding}", "--inh-caps=-all", "--no-new-privs"]


def check_json(lab: Lab, privileges: list[str]) -> tuple[int, dict]:
    argv = [*privileges, sys.executable, "-m", "exporter", "check", "--json",
            f"--docker.host={lab.docker_host}"]  # fmt: skip
    p = lab.nsexec(argv, check=False, timeout=60)
    try:
        return p.returncode, json.loads(p.stdout)
    except ValueError:
        pytest.fail(f"check printed no JSON (exit {p.returncode}): {p.stderr[-2000:]}")


@pytest.fixture(scope="module")
def web(lab: Lab) -> str:
    lab.run_web("web1", PORT)
    return "web1"


@pytest.mark.lab
def test_unit_capabilities_are_enough_to_read_everything(lab, web):
    tool("setpriv")
    code, doc = check_json(lab, setpriv_args())
    assert {name: s["up"] for name, s in doc["sources"].items()} == dict.fromkeys(
        doc["sources"], True
    ), doc["sources"]
    [port] = [p for p in doc["ports"] if p["container"] == web and p["family"] == "ipv4"]
    assert (port["host_port"], port["state"]) == (PORT, "ok")
    assert code == 0


@pytest.mark.lab
def test_without_the_units_capabilities_the_rules_cannot_be_read(lab, web):
    tool("setpriv")
    code, doc = check_json(lab, ["setpriv", "--bounding-set=-all", "--inh-caps=-all"])
    assert code == 2  # unreadable
    assert not doc["sources"]["iptables"]["up"]
    assert "Permission denied" in doc["sources"]["iptables"]["error"]
    assert {p["state"] for p in doc["ports"] if p["container"] == web} == {"unknown"}


# ---- the image's HEALTHCHECK script -----------------------------------------------------------

HEALTHCHECK = DEPLOY / "container" / "healthcheck.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthcheck(port: int) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", ""),
           "DOCKER_NAT_EXPORTER_WEB_LISTEN_ADDRESS": f"127.0.0.1:{port}"}  # fmt: skip
    return run([sys.executable, str(HEALTHCHECK)], env=env)


@contextlib.contextmanager
def exporter_serving(tmp_path: Path, *flags: str) -> Iterator[int]:
    """The real exporter (`python -m exporter serve`) on a free loopback port. Docker is
    deliberately unreachable: liveness must not depend on it."""
    port = free_port()
    argv = [sys.executable, "-m", "exporter", "serve", f"--web.listen-address=127.0.0.1:{port}",
            f"--docker.host=unix://{tmp_path}/no-docker.sock", *flags]  # fmt: skip
    log = open(tmp_path / "exporter.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"exporter did not listen: {(tmp_path / 'exporter.log').read_text()}")
            time.sleep(0.1)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        log.close()


def test_healthcheck_passes_on_plain_http_and_fails_when_nothing_listens(tmp_path):
    with exporter_serving(tmp_path) as port:
        p = healthcheck(port)
        assert p.returncode == 0, p.stderr
    p = healthcheck(port)
    assert p.returncode == 1
    assert f"not healthy on 127.0.0.1:{port}" in p.stderr


def test_healthcheck_passes_behind_tls_and_basic_auth(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    web_yml = tmp_path / "web.yml"
    web_yml.write_text(
        f"tls_server_config:\n  cert_file: {tmp_path}/cert.pem\n  key_file: {tmp_path}/key.pem\n"
        f"basic_auth_users:\n  prometheus: {hashed}\n"
    )
    with exporter_serving(tmp_path, f"--web.config.file={web_yml}") as port:
        p = healthcheck(port)
        assert p.returncode == 0, p.stderr


# ---- the documented `docker run` line ----------------------------------------------------------


def documented_run_line(text: str) -> list[str]:
    """The `docker run -d --name docker-nat-exporter ...` command of a text, as argv."""
    joined = re.sub(r"\\\n\s*", " ", text)
    [line] = [ln for ln in joined.splitlines() if "docker run -d --name docker-nat-exporter" in ln]
    return shlex.split(line.split("docker run", 1)[1].lstrip("# "))


@pytest.mark.parametrize("source", ["docs/deploy.md", "Dockerfile"])
def test_documented_docker_run_matches_the_compose_service(source, compose):
    argv = documented_run_line((ROOT / source).read_text())
    options = list(itertools.pairwise(argv))
    exporter = compose["services"]["exporter"]
    assert ("--network", exporter["network_mode"]) in options
    assert ("--pid", exporter["pid"]) in options
    assert {v for k, v in options if k == "--cap-drop"} == set(exporter["cap_drop"])
    assert {v for k, v in options if k == "--cap-add"} == set(exporter["cap_add"])
    assert {v for k, v in options if k == "-v"} == set(exporter["volumes"])
    assert "--read-only" in argv
    assert argv[-1] == "docker-nat-exporter:latest" == exporter["image"]
