"""The container image, built from the Dockerfile and run against a real lab Docker host.

tests/support/imagebuild.py builds it with no registry (debootstrapped base, a build dockerd that
leaves the firewall alone, `docker build --network host`) and caches the saved image under
/var/cache/docker-nat-exporter-test by a hash of the build context. The image is loaded into a
lab daemon (tests/support/lab.py) and run there the way docs/deploy.md says: `--network host` (the
lab's host namespace, so it sees the lab's rules), `--pid host`, all capabilities dropped but
NET_ADMIN, NET_RAW and SYS_CHROOT, read-only, the lab's socket and the machine's / at /host.

Needs root, debootstrap, dockerd and the Debian mirror and PyPI (for a cold build); skips
without them, fails in CI. Step timings and the image size are printed (`pytest -s`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.imagebuild import REPO, Built, Steps, build_image, missing_requirements
from support.lab import Lab, LabError
from support.util import require_lab, require_or_skip

from exporter import __version__
from exporter.project import PROJECT_URL, doc_url

pytestmark = [pytest.mark.slow, pytest.mark.lab]

PORT = 18080
WEB = "web1"
LISTEN_PORT = 9841
FAKE_IPTABLES = ("1.8.11", "1.8.11-1")  # a known-bad Debian build (exporter/data/known_bad.toml)


@pytest.fixture(scope="module")
def built() -> Built:
    """The saved image, built or taken from the cache."""
    missing = missing_requirements()
    require_or_skip(not missing, "cannot build the image: " + "; ".join(missing))
    return build_image(__version__, Steps())


def load(lab: Lab, image: Built) -> str:
    with Steps().step(
        f"docker load into {lab.ident} ({'cached' if image.from_cache else 'fresh'})"
    ):
        lab.docker("load", "-i", str(image.tar), timeout=300)
    return image.tag


@pytest.fixture(scope="module")
def image(lab: Lab, built: Built) -> str:
    """The image, loaded into the module's lab daemon."""
    tag = load(lab, built)
    size = int(lab.docker("image", "inspect", "-f", "{{.Size}}", tag).stdout)
    print(f"[image] {tag} key {built.key}: {size / 1e6:.1f} MB", flush=True)
    return tag


@pytest.fixture(scope="module")
def web(lab: Lab) -> str:
    lab.run_web(WEB, PORT)
    return WEB


def run_args(
    lab: Lab, host_root: str | Path = "/", pid_host: bool = True, docker_host: str = ""
) -> list[str]:
    """`docker run` options of docs/deploy.md, against the lab (`,rslave` left out: the
    machine's / is a private mount here). With docker_host, no socket mount but that address."""
    args = ["--network", "host", "--cap-drop", "ALL", "--cap-add", "NET_ADMIN",
            "--cap-add", "NET_RAW", "--cap-add", "SYS_CHROOT", "--read-only",
            "--security-opt", "no-new-privileges", "-v", f"{host_root}:/host:ro"]  # fmt: skip
    if docker_host:
        args += ["-e", f"DOCKER_NAT_EXPORTER_DOCKER_HOST={docker_host}"]
    else:
        args += ["-v", f"{lab.socket}:/var/run/docker.sock:ro"]
    return [*args, "--pid", "host"] if pid_host else args


def run_check(lab: Lab, image: str, *check_args: str, **kwargs) -> subprocess.CompletedProcess:
    started = time.monotonic()
    p = lab.docker("run", "--rm", *run_args(lab, **kwargs), image, "check", *check_args,
                   check=False, timeout=120)  # fmt: skip
    print(f"[image] check {' '.join(check_args)}: {time.monotonic() - started:.1f}s", flush=True)
    assert p.returncode in (0, 1, 2), p.stderr
    return p


def check_json(lab: Lab, image: str, **kwargs) -> tuple[int, dict]:
    p = run_check(lab, image, "--json", **kwargs)
    try:
        return p.returncode, json.loads(p.stdout)
    except ValueError:
        pytest.fail(
            f"no JSON from check (exit {p.returncode}): {p.stdout[:500]} {p.stderr[-1500:]}"
        )


def port_state(doc: dict, container: str, family: str = "ipv4") -> str:
    [port] = [p for p in doc["ports"] if p["container"] == container and p["family"] == family]
    assert port["host_port"] == PORT
    return port["state"]


def dpkg_version(package: str) -> str:
    require_or_skip(shutil.which("dpkg-query") is not None, "dpkg-query missing (not Debian?)")
    p = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                       capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    require_or_skip(p.returncode == 0 and p.stdout, f"{package} is not installed by dpkg")
    return p.stdout


def test_image_metadata(lab, image):
    config = json.loads(lab.docker("image", "inspect", image).stdout)[0]["Config"]
    assert config["Entrypoint"] == ["docker-nat-exporter"]
    assert config["Cmd"] == ["serve"]
    assert config["User"] in ("", "root")
    assert "DOCKER_NAT_EXPORTER_HOST_ROOT=/host" in config["Env"]
    assert config["Healthcheck"]["Test"][-1] == "/opt/docker-nat-exporter/healthcheck.py"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "docker-nat-exporter"
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.source"] == PROJECT_URL  # the build arg's default
    assert labels["org.opencontainers.image.documentation"] == doc_url("deploy.md")
    assert f"{LISTEN_PORT}/tcp" in config["ExposedPorts"]
    version = lab.docker("run", "--rm", image, "--version", timeout=60).stdout
    assert version.strip() == f"docker-nat-exporter {__version__}"


def test_image_holds_no_build_only_material(lab, image):
    history = lab.docker("history", "--no-trunc", image).stdout
    assert "BEGIN CERTIFICATE" not in history  # BUILD_CA_CERTS stays in the builder stage
    listing = lab.docker("run", "--rm", "--entrypoint", "sh", image, "-c",
                         "ls /opt/docker-nat-exporter/bin; ls /var/cache/apt/archives; "
                         "ls /var/lib/apt/lists; command -v gcc || true")  # fmt: skip
    names = listing.stdout.split()
    assert "docker-nat-exporter" in names
    assert "pip" not in names and not any(n.endswith(".deb") for n in names)
    assert "gcc" not in listing.stdout


def test_check_reports_a_healthy_port_as_ok(lab, image, web):
    code, doc = check_json(lab, image)
    assert {n: s["up"] for n, s in doc["sources"].items()} == dict.fromkeys(doc["sources"], True)
    assert port_state(doc, web) == "ok"
    assert doc["daemon"]["userland_proxy_source"] == "processes"  # docker-proxy seen: --pid host
    assert code == 0


def insert_stale_dnat(lab: Lab) -> None:
    """A DNAT for PORT to an address no container has, ahead of Docker's (the incident)."""
    bridge = ipaddress.ip_interface(f"{lab.network_gateway()}/24").network
    stale = str(bridge.broadcast_address - 1)
    assert stale != lab.container_ip(WEB)
    lab.iptables("-t", "nat", "-I", "DOCKER", "1", "!", "-i", "docker0", "-p", "tcp",
                 "--dport", str(PORT), "-j", "DNAT", "--to-destination", f"{stale}:80")  # fmt: skip


def test_check_sees_a_stale_dnat_as_misrouted(scratch_lab, image, web):
    insert_stale_dnat(scratch_lab)
    assert not scratch_lab.client_get(PORT).ok  # the lab agrees: remote clients are cut off
    code, doc = check_json(scratch_lab, image)
    assert port_state(doc, web) == "misrouted"
    assert code == 1


def fake_host_root(folder: Path) -> Path:
    """A host root whose iptables is a known-bad Debian build: a static busybox as /bin/sh, an
    `iptables` script printing the version, and a dpkg status naming the package."""
    busybox = shutil.which("busybox")
    require_or_skip(busybox is not None, "busybox-static missing")
    for d in ("bin", "usr/sbin", "var/lib/dpkg", "etc/alternatives"):
        (folder / d).mkdir(parents=True)
    shutil.copy(busybox, folder / "bin" / "sh")
    script = folder / "usr/sbin/iptables"
    script.write_text(f"#!/bin/sh\necho 'iptables v{FAKE_IPTABLES[0]} (nf_tables)'\n")
    script.chmod(0o755)
    (folder / "etc/alternatives/iptables").symlink_to("/usr/sbin/iptables-nft")
    (folder / "var/lib/dpkg/status").write_text(
        "Package: iptables\nStatus: install ok installed\nArchitecture: amd64\n"
        f"Version: {FAKE_IPTABLES[1]}\n\n"
    )
    return folder


def test_the_mounted_host_root_decides_the_reported_build(lab, image, web, tmp_path):
    # The image's own iptables is Debian's 1.8.9-2: a report of 1.8.11-1 can only come from /host.
    root = fake_host_root(tmp_path / "hostroot")
    with serving(lab, image, host_root=root):
        text = scrape(lab)
    [info] = [ln for ln in text.splitlines() if ln.startswith("docker_nat_iptables_info{")]
    assert (
        f'version="{FAKE_IPTABLES[0]}"' in info and f'package_version="{FAKE_IPTABLES[1]}"' in info
    )
    assert 'package_manager="dpkg"' in info and 'backend="nf_tables"' in info
    assert sample(text, "docker_nat_iptables_known_bad") == 1


def test_without_host_pid_namespace_only_proxy_verdicts_become_unknown(lab, image, web):
    code, doc = check_json(lab, image, pid_host=False)
    # dockerd's command line and docker-proxy are out of sight: the proxy setting is unknown...
    assert doc["daemon"]["userland_proxy_source"] == "unknown"
    # ...which leaves the DNAT path's verdict alone, and turns the IPv6 binding (served by
    # docker-proxy alone: Docker 20.10 writes no ip6tables rules) into "unknown", not a false ok.
    assert port_state(doc, web, "ipv4") == "ok"
    assert port_state(doc, web, "ipv6") == "unknown"
    assert code == 1
    _, with_pid = check_json(lab, image)
    assert port_state(with_pid, web, "ipv6") == "ok"


def test_through_a_tcp_docker_api_the_proxy_setting_comes_from_daemon_json(
    make_lab, built, tmp_path
):
    # As behind a socket proxy: Docker over TCP, no socket mount (docs/deploy.md).
    tcp_lab = make_lab(daemon_args=["-H", "tcp://127.0.0.1:2375", "--tls=false"])
    image = load(tcp_lab, built)
    tcp_lab.run_web(WEB, PORT)
    root = tmp_path / "root"
    (root / "etc" / "docker").mkdir(parents=True)
    api = {"docker_host": "tcp://127.0.0.1:2375", "host_root": root}
    code, doc = check_json(tcp_lab, image, **api)
    assert doc["sources"]["docker"]["up"]
    assert doc["daemon"]["userland_proxy_source"] == "unknown"  # even with --pid host
    assert (port_state(doc, WEB, "ipv4"), port_state(doc, WEB, "ipv6")) == ("ok", "unknown")
    (root / "etc" / "docker" / "daemon.json").write_text('{"userland-proxy": true}\n')
    code, doc = check_json(tcp_lab, image, **api)
    assert doc["daemon"]["userland_proxy_source"] == "daemon.json"
    assert (port_state(doc, WEB, "ipv4"), port_state(doc, WEB, "ipv6")) == ("ok", "ok")
    assert code == 0


@pytest.fixture(scope="module")
def legacy_lab(built) -> Iterator[tuple[Lab, str]]:
    """A lab whose dockerd writes its rules with iptables-legacy, with the image and web1."""
    require_lab("legacy")
    with Lab(backend="legacy") as the_lab:
        tag = load(the_lab, built)
        the_lab.run_web(WEB, PORT)
        yield the_lab, tag


def without(args: list[str], cap: str) -> list[str]:
    i = args.index(cap)
    assert args[i - 1] == "--cap-add"
    return args[: i - 1] + args[i + 1 :]


def test_legacy_backend_host_is_read_with_net_raw(legacy_lab):
    lab, image = legacy_lab
    code, doc = check_json(lab, image)
    legacy = [b for b in doc["backend_rules"] if b["backend"] == "legacy" and b["rules"] > 0]
    assert [b["family"] for b in legacy] == ["ipv4"]  # Docker's rules, read from legacy
    assert port_state(doc, WEB, "ipv4") == "ok"
    assert code == 0


def test_legacy_backend_without_net_raw_is_an_error_not_a_verdict(legacy_lab):
    lab, image = legacy_lab
    p = lab.docker("run", "--rm", *without(run_args(lab), "NET_RAW"), image, "check", "--json",
                   check=False, timeout=120)  # fmt: skip
    doc = json.loads(p.stdout)
    assert not doc["sources"]["iptables"]["up"]
    assert port_state(doc, WEB, "ipv4") == "unknown"
    assert p.returncode == 2


def wait_for(lab: Lab, name: str, what: str, ready, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            logs = lab.docker("logs", "--tail", "30", name, check=False)
            raise LabError(f"{name}: not {what} after {timeout}s:\n{logs.stdout}{logs.stderr}")
        time.sleep(0.5)


def http_status(lab: Lab, path: str) -> str:
    url = f"http://127.0.0.1:{LISTEN_PORT}{path}"
    args = ["curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", url]
    return lab.nsexec(args, check=False, timeout=15).stdout


@contextlib.contextmanager
def serving(lab: Lab, image: str, **kwargs) -> Iterator[str]:
    """The image's default command (serve) running detached, healthy and ready; removed after."""
    name = f"dne-exporter-{os.getpid()}"
    lab.docker("rm", "-f", name, check=False)
    started = time.monotonic()
    lab.docker("run", "-d", "--name", name, *run_args(lab, **kwargs),
               "--health-interval", "1s", "--health-start-period", "60s", image)  # fmt: skip
    try:
        health = "{{.State.Health.Status}}"
        inspect = lambda: lab.docker("inspect", "-f", health, name).stdout.strip()  # noqa: E731
        wait_for(lab, name, "healthy", lambda: inspect() == "healthy")
        print(f"[image] serve healthy after {time.monotonic() - started:.1f}s", flush=True)
        wait_for(lab, name, "ready", lambda: http_status(lab, "/-/ready") == "200")
        yield name
    finally:
        lab.docker("rm", "-f", name, check=False, timeout=60)


def scrape(lab: Lab) -> str:
    p = lab.nsexec(["curl", "-sS", "-m", "10", f"http://127.0.0.1:{LISTEN_PORT}/metrics"],
                   check=False, timeout=20)  # fmt: skip
    assert p.returncode == 0, p.stderr
    return p.stdout


def sample(text: str, name: str, **labels: str) -> float | None:
    """Value of the one series of `name` whose labels include `labels` (None if absent)."""
    found = []
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        ours = series == name or series.startswith(name + "{")
        if ours and all(f'{k}="{v}"' in series for k, v in labels.items()):
            found.append(float(value))
    assert len(found) <= 1, f"{name} {labels}: {len(found)} series"
    return found[0] if found else None


def test_serve_becomes_healthy_and_exports_the_hosts_build_and_the_lab(lab, image, web):
    assert http_status(lab, "/-/healthy") == "000"  # nothing listens before the container
    with serving(lab, image):
        text = scrape(lab)
    labels = {"container": web, "family": "ipv4", "host_port": str(PORT)}
    assert sample(text, "docker_nat_port_state", **labels, state="ok") == 1
    assert sample(text, "docker_nat_port_state", **labels, state="misrouted") == 0
    version = dpkg_version("iptables")  # this machine's: / is mounted as /host
    assert sample(text, "docker_nat_iptables_info", package_version=version) == 1
    assert http_status(lab, "/-/healthy") == "000"  # and the container is gone


# ---- Swarm: the real stack file, scraped through the real dockerswarm_sd example ---------------

STACK = REPO / "deploy" / "swarm" / "stack.yml"
SWARM_SD = REPO / "deploy" / "prometheus" / "dockerswarm_sd.yml"


@contextlib.contextmanager
def shared_root_bind(lab: Lab) -> Iterator[Path]:
    """A non-recursive bind of / made shared, inside the lab's folder: the stack's rslave mount
    needs a shared source, and this machine's / is a private mount."""
    point = lab.dir / "hostroot"
    point.mkdir()
    subprocess.run(["mount", "--bind", "/", str(point)], check=True, timeout=30)
    try:
        subprocess.run(["mount", "--make-shared", str(point)], check=True, timeout=30)
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False, timeout=30)


@contextlib.contextmanager
def prometheus_in(lab: Lab, config: Path, folder: Path) -> Iterator[str]:
    """Debian's prometheus in the lab's host namespace; yields its base URL there."""
    require_or_skip(shutil.which("prometheus") is not None, "prometheus not installed")
    port = 19090
    argv = ["nsenter", f"--net=/run/netns/{lab.host_ns}", "prometheus",
            f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    with open(folder / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def prom_query(lab: Lab, base: str, query: str) -> list[dict]:
    url = f"{base}/api/v1/query"
    p = lab.nsexec(["curl", "-sS", "-m", "5", "-G", url, "--data-urlencode", f"query={query}"],
                   check=False, timeout=15)  # fmt: skip
    if p.returncode != 0:
        return []
    return json.loads(p.stdout)["data"]["result"]


def test_swarm_stack_runs_globally_and_dockerswarm_sd_scrapes_it(
    make_lab, built, tmp_path, monkeypatch
):
    lab = make_lab()
    image = load(lab, built)
    lab.run_web(WEB, PORT)
    steps = Steps()
    with shared_root_bind(lab) as root:
        with steps.step("swarm init + stack deploy"):
            lab.docker("swarm", "init", "--advertise-addr", lab.host_addr)
            for name, value in (("EXPORTER_IMAGE", image), ("DOCKER_SOCKET", str(lab.socket)),
                                ("HOST_ROOT", str(root))):  # fmt: skip
                monkeypatch.setenv(name, value)
            lab.docker("stack", "deploy", "-c", str(STACK), "dne", timeout=120)
        try:
            with steps.step("exporter task ready"):
                wait_for(
                    lab, "dne_exporter", "ready", lambda: http_status(lab, "/-/ready") == "200"
                )
            config = tmp_path / SWARM_SD.name
            text = SWARM_SD.read_text().replace("unix:///var/run/docker.sock", lab.docker_host)
            config.write_text(text)
            shutil.copy(REPO / "alerts" / "docker-nat.rules.yml", tmp_path)
            with prometheus_in(lab, config, tmp_path) as base, steps.step("first scrape"):
                query = 'docker_nat_port_state{job="docker-nat",container="web1"} == 1'
                deadline = time.monotonic() + 90
                while not (found := prom_query(lab, base, query)):
                    if time.monotonic() > deadline:
                        log = (tmp_path / "prometheus.log").read_text()[-2000:]
                        pytest.fail(f"no scrape of the swarm task in 90s; prometheus log:\n{log}")
                    time.sleep(1)
                [up] = prom_query(lab, base, 'up{job="docker-nat"}')
        finally:
            lab.docker("stack", "rm", "dne", check=False, timeout=60)
            lab.docker("swarm", "leave", "--force", check=False, timeout=60)
    # No --pid host in Swarm: the IPv6 binding, which only docker-proxy serves, is "unknown"
    # (docs/deploy.md); the DNAT path's verdict is unaffected.
    states = {r["metric"]["family"]: r["metric"]["state"] for r in found}
    assert states == {"ipv4": "ok", "ipv6": "unknown"}
    assert up["value"][1] == "1"
    assert up["metric"]["instance"] == os.uname().nodename  # the node's host name
