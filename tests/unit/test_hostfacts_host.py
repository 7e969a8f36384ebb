"""exporter.sources.host against this machine and simulated host roots (real files,
real processes, real sqlite/rpm databases, real chroot and read-only bind mounts)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.hostroots import debian_root, rhel_header, write_rpmdb
from support.util import require_or_skip

from exporter.hostfacts import InstalledPackage, parse_dpkg_status, parse_iptables_version
from exporter.sources.daemonstart import read_daemon_start
from exporter.sources.host import read_host_facts, read_iptables_facts
from exporter.sources.hostpkg import rpm_tool_packages
from exporter.sources.hostroot import HOST_ENV

REPO = Path(__file__).resolve().parents[2]
DEBIAN_BAD = "debian-iptables-1.8.11-1-check-ignores-interfaces"
UPSTREAM_BAD = "upstream-iptables-1.8.11-check-ignores-interfaces"


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True, **kwargs)


def not_runnable(error: str) -> bool:
    """The host root's iptables could not run: missing there (127, as root) or no chroot at all
    (125 and a clear word, as an ordinary user)."""
    return "exited 127" in error or ("exited 125" in error and "needs CAP_SYS_CHROOT" in error)


# --- this machine --------------------------------------------------------------------


def test_real_dpkg_database_equals_dpkg_query() -> None:
    require_or_skip(shutil.which("dpkg-query") is not None, "needs dpkg-query (Debian host)")
    packages = parse_dpkg_status(Path("/var/lib/dpkg/status").read_text())
    iptables = [p.version for p in packages if p.name == "iptables"]
    expected = run(["dpkg-query", "-W", "-f=${Version}", "iptables"]).stdout
    assert iptables == [expected]
    # Every installed package, not just iptables, agrees with dpkg's own view.
    listing = run(
        ["dpkg-query", "-W", "-f=${db:Status-Abbrev}|${Package}|${Architecture}|${Version}\n"]
    )
    installed = set()
    for line in listing.stdout.splitlines():
        abbrev, name, arch, version = line.split("|")
        if abbrev[1] in "itW" and abbrev[2] == " ":
            installed.add(InstalledPackage(name, version, arch))
    assert set(packages) == installed
    assert len(installed) > 50


def test_read_host_facts_on_this_machine() -> None:
    require_or_skip(shutil.which("iptables") is not None, "needs iptables")
    require_or_skip(shutil.which("dpkg-query") is not None, "needs dpkg-query (Debian host)")
    facts = read_host_facts()
    binary = parse_iptables_version(run(["iptables", "--version"]).stdout)
    package = run(["dpkg-query", "-W", "-f=${Version}", "iptables"]).stdout
    ipt = facts.iptables
    assert (ipt.version, ipt.backend) == (binary.version, binary.backend)
    assert (ipt.package_manager, ipt.package_name, ipt.package_version) == (
        "dpkg",
        "iptables",
        package,
    )
    assert ipt.alternative == os.readlink("/etc/alternatives/iptables")
    assert (ipt.known_bad is not None) == (package == "1.8.11-1" and binary.backend == "nf_tables")
    assert ipt.check_command_broken is None  # self-test is opt-in
    assert ipt.errors == ()


def test_boot_time_agrees_with_uptime() -> None:
    require_or_skip(shutil.which("uptime") is not None, "needs uptime (procps)")
    since = run(["uptime", "-s"], env={"TZ": "UTC", "PATH": os.environ["PATH"]}).stdout.strip()
    expected = datetime.strptime(since, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
    facts = read_host_facts(host_root="/nonexistent-host-root")
    assert facts.boot_time_seconds is not None
    assert abs(facts.boot_time_seconds - expected) <= 2  # both truncate to whole seconds


# --- dockerd start time --------------------------------------------------------------


@pytest.fixture
def fake_dockerd(tmp_path: Path):
    """A real process whose comm is "dockerd" (a copy of sleep), with spawn-time bounds."""
    binary = tmp_path / "dockerd"
    shutil.copy(shutil.which("sleep"), binary)
    before = time.time()
    proc = subprocess.Popen([str(binary), "300"])
    after = time.time()
    try:
        yield proc.pid, before, after
    finally:
        proc.kill()
        proc.wait()


def assert_started_between(start: float | None, before: float, after: float) -> None:
    # btime is whole seconds (truncated) and starttime is in clock ticks: allow 2 s.
    assert start is not None
    assert before - 2 <= start <= after + 2


def test_daemon_start_from_pid(fake_dockerd, tmp_path: Path) -> None:
    pid, before, after = fake_dockerd
    facts = read_host_facts(host_root=str(tmp_path / "empty-root"), dockerd_pid=pid)
    assert facts.daemon_start_source == "proc"
    assert_started_between(facts.daemon_start_time_seconds, before, after)
    assert not [e for e in facts.errors if "dockerd" in e]


def test_daemon_start_from_pidfile_through_absolute_var_run_link(
    fake_dockerd, tmp_path: Path
) -> None:
    pid, before, after = fake_dockerd
    root = tmp_path / "host"
    (root / "run").mkdir(parents=True)
    (root / "var").mkdir()
    (root / "var" / "run").symlink_to("/run")  # as on a real host: resolved inside the root
    (root / "run" / "docker.pid").write_text(f"{pid}\n")
    facts = read_host_facts(host_root=str(root))
    assert facts.daemon_start_source == "pidfile"
    assert_started_between(facts.daemon_start_time_seconds, before, after)


def test_daemon_pid_that_is_not_dockerd_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run" / "systemd" / "system").mkdir(parents=True)  # systemd, but no systemctl
    proc = subprocess.Popen(["sleep", "300"])
    try:
        facts = read_host_facts(host_root=str(tmp_path), dockerd_pid=proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert facts.daemon_start_time_seconds is None and facts.daemon_start_source == ""
    assert (
        f"pid {proc.pid} (from the Docker socket peer) is 'sleep', not dockerd" in facts.errors[0]
    )
    assert (
        facts.errors[-1]
        == "dockerd start time unknown: no usable pid or docker.pid, and no systemctl"
    )


def test_daemon_pid_not_visible_says_pid_host(tmp_path: Path) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()  # reaped: this pid no longer exists
    facts = read_host_facts(host_root=str(tmp_path), dockerd_pid=proc.pid)
    assert facts.daemon_start_time_seconds is None
    assert "run the exporter in the host PID namespace (--pid=host)" in facts.errors[0]


# --- simulated host roots ------------------------------------------------------------


def test_host_root_without_runnable_binary_uses_package_and_alternative(tmp_path: Path) -> None:
    root = debian_root(tmp_path / "host")
    ipt = read_iptables_facts(host_root=str(root))
    assert (ipt.version, ipt.backend) == ("1.8.11", "nf_tables")  # never this container's 1.8.9
    assert (ipt.package_manager, ipt.package_version, ipt.alternative) == (
        "dpkg",
        "1.8.11-1",
        "/usr/sbin/iptables-nft",
    )
    assert ipt.known_bad is not None and ipt.known_bad.id == DEBIAN_BAD
    assert len(ipt.errors) == 1 and ipt.errors[0].startswith(f"`chroot {root} iptables --version`")
    assert not_runnable(ipt.errors[0])


def test_host_root_fixed_debian_revision_is_not_bad(tmp_path: Path) -> None:
    ipt = read_iptables_facts(host_root=str(debian_root(tmp_path / "host", "1.8.11-2")))
    assert ipt.package_version == "1.8.11-2" and ipt.known_bad is None


def test_host_root_rpm_sqlite_fedora_layout(tmp_path: Path) -> None:
    root = tmp_path / "host"
    db = root / "usr" / "lib" / "sysimage" / "rpm" / "rpmdb.sqlite"
    headers = [
        rhel_header("glibc", "2.40", "1.fc42"),
        rhel_header("iptables-nft", "1.8.11", "1.fc42"),
    ]
    write_rpmdb(db, headers)
    (root / "var" / "lib").mkdir(parents=True)
    (root / "var" / "lib" / "rpm").symlink_to("../../usr/lib/sysimage/rpm")
    ipt = read_iptables_facts(host_root=str(root))
    assert (ipt.package_manager, ipt.package_name, ipt.package_version) == (
        "rpm",
        "iptables-nft",
        "1.8.11-1.fc42",
    )
    assert ipt.known_bad is not None and ipt.known_bad.id == UPSTREAM_BAD  # no Fedora rule
    assert len(ipt.errors) == 1 and "iptables --version` exited" in ipt.errors[0]
    assert not_runnable(ipt.errors[0])


def test_host_root_apk_and_pacman(tmp_path: Path) -> None:
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "hostfacts"
    alpine = tmp_path / "alpine"
    (alpine / "lib" / "apk" / "db").mkdir(parents=True)
    shutil.copy(fixtures / "apk-installed", alpine / "lib" / "apk" / "db" / "installed")
    (alpine / "sbin").mkdir()
    (alpine / "sbin" / "iptables").symlink_to("xtables-nft-multi")
    ipt = read_iptables_facts(host_root=str(alpine))
    assert (ipt.package_manager, ipt.package_name, ipt.package_version) == (
        "apk",
        "iptables",
        "1.8.11-r1",
    )
    assert (ipt.backend, ipt.alternative) == ("nf_tables", "xtables-nft-multi")
    arch = tmp_path / "arch"
    desc = arch / "var" / "lib" / "pacman" / "local" / "iptables-nft-1:1.8.11-1" / "desc"
    desc.parent.mkdir(parents=True)
    shutil.copy(fixtures / "pacman-iptables-nft-desc", desc)
    ipt = read_iptables_facts(host_root=str(arch))
    assert (ipt.package_manager, ipt.package_name, ipt.package_version) == (
        "pacman",
        "iptables-nft",
        "1:1.8.11-1",
    )
    assert ipt.known_bad is not None and ipt.known_bad.id.startswith("arch-")


def test_host_root_without_any_package_database(tmp_path: Path) -> None:
    ipt = read_iptables_facts(host_root=str(tmp_path))
    assert ipt.package_manager == "" and ipt.version == "" and ipt.known_bad is None
    assert (
        ipt.errors[-1] == f"no package database found under {tmp_path} (dpkg, apk, pacman or rpm)"
    )


def test_berkeley_rpmdb_without_rpm_tool_says_so(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "var" / "lib" / "rpm").mkdir(parents=True)
    (tmp_path / "var" / "lib" / "rpm" / "Packages").write_bytes(b"\0" * 4096)
    monkeypatch.setitem(HOST_ENV, "PATH", str(tmp_path / "no-binaries-here"))
    ipt = read_iptables_facts(host_root=str(tmp_path))
    assert any(
        "BerkeleyDB/ndb rpm database; reading it needs the `rpm` tool" in e for e in ipt.errors
    )


def test_berkeley_rpmdb_with_rpm_tool_reports_rpm_error(tmp_path: Path) -> None:
    require_or_skip(shutil.which("rpm") is not None, "needs the rpm tool (Debian package rpm)")
    (tmp_path / "var" / "lib" / "rpm").mkdir(parents=True)
    (tmp_path / "var" / "lib" / "rpm" / "Packages").write_bytes(b"\0" * 4096)
    ipt = read_iptables_facts(host_root=str(tmp_path))
    assert ipt.package_manager == ""
    assert any(
        e.startswith(f"`rpm --root {tmp_path} --dbpath /var/lib/rpm -q` exited") for e in ipt.errors
    )


SPEC = """Name: iptables-nft
Version: 1.8.10
Release: 11.el9
Summary: dummy package standing in for RHEL 9's iptables-nft
License: GPL
BuildArch: noarch
%description
dummy
%files
"""


@pytest.fixture
def real_rpm_root(tmp_path: Path) -> Path:
    """A host root whose rpmdb.sqlite was written by the real rpm tool."""
    for tool in ("rpm", "rpmbuild"):
        require_or_skip(shutil.which(tool) is not None, f"needs {tool} (Debian package rpm)")
    (tmp_path / "SPECS").mkdir()
    (tmp_path / "SPECS" / "t.spec").write_text(SPEC)
    run(["rpmbuild", "--define", f"_topdir {tmp_path}", "-bb", str(tmp_path / "SPECS" / "t.spec")])
    root = tmp_path / "host"
    sqlite = ["--root", str(root), "--dbpath", "/var/lib/rpm", "--define", "_db_backend sqlite"]
    run(["rpm", *sqlite, "--initdb"])
    package = next((tmp_path / "RPMS" / "noarch").glob("*.rpm"))
    run(["rpm", *sqlite, "--nodeps", "--noscripts", "-i", str(package)])
    return root


def test_rpm_database_written_by_real_rpm(real_rpm_root: Path) -> None:
    ipt = read_iptables_facts(host_root=str(real_rpm_root))
    query = [
        "rpm",
        "--root",
        str(real_rpm_root),
        "--dbpath",
        "/var/lib/rpm",
        "-q",
        "--qf",
        "%{VERSION}-%{RELEASE}",
        "iptables-nft",
    ]
    assert (ipt.package_manager, ipt.package_name) == ("rpm", "iptables-nft")
    assert ipt.package_version == run(query).stdout == "1.8.10-11.el9"
    assert ipt.known_bad is None


def test_rpm_tool_fallback_reads_real_database(real_rpm_root: Path) -> None:
    path = real_rpm_root / "var" / "lib" / "rpm" / "Packages"
    packages = rpm_tool_packages(str(path), str(real_rpm_root), 10.0)
    assert packages == (InstalledPackage("iptables-nft", "1.8.10-11.el9"),)


def test_garbage_host_root_never_raises_and_explains(tmp_path: Path) -> None:
    root = tmp_path / "host"
    (root / "var" / "lib" / "dpkg").mkdir(parents=True)
    (root / "var" / "lib" / "dpkg" / "status").write_bytes(b"Package: x\n\x00\xff garbage\n")
    (root / "var" / "lib" / "rpm").mkdir(parents=True)
    (root / "var" / "lib" / "rpm" / "rpmdb.sqlite").write_bytes(b"not a database" * 100)
    (root / "run" / "systemd" / "system").mkdir(parents=True)  # systemd, but no systemctl
    (root / "run" / "docker.pid").write_text("dockerd\n")
    (root / "etc").symlink_to("/etc")  # a loop once resolved inside the root
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "stat").write_text("cpu 1 2 3\n")
    facts = read_host_facts(host_root=str(root), proc_root=str(proc), dockerd_pid=0)
    errors = facts.errors + facts.iptables.errors
    expected = [
        "var/lib/dpkg/status line 2: expected 'Field: value'",
        "rpmdb.sqlite: file is not a database",
        "/proc/stat has no 'btime <seconds>' line",
        "dockerd pid from the Docker socket peer is 0: not visible, run the exporter in the host "
        "PID namespace (--pid=host)",
        "run/docker.pid does not hold a pid: 'dockerd'",
        "dockerd start time unknown: no usable pid or docker.pid, and no systemctl",
    ]
    for fragment in expected:
        assert [e for e in errors if fragment in e], (fragment, errors)
    assert facts.iptables.alternative == "" and facts.iptables.package_manager == ""
    assert facts.boot_time_seconds is None and facts.daemon_start_time_seconds is None


def test_no_systemd_probe_and_no_note_where_systemd_is_not_init(tmp_path: Path) -> None:
    """Issue 15 item 4: in a container or on a host whose PID 1 is not systemd, the systemd
    fallback is not tried, so `systemctl`'s "not booted with systemd" never reaches the user."""
    bin_dir = tmp_path / "usr" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "systemctl").write_text("")  # there, so only systemd's absence stops the probe
    boot, start, source, errors = read_daemon_start(host_root=str(tmp_path), dockerd_pid=None)
    assert (start, source) == (None, "") and boot is not None
    assert errors == ()
    (tmp_path / "run" / "systemd" / "system").mkdir(parents=True)  # now systemd is init
    _, _, _, errors = read_daemon_start(host_root=str(tmp_path), dockerd_pid=None)
    assert [e for e in errors if "`systemctl show docker.service` exited" in e], errors
