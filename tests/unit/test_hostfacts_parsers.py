"""Pure host-facts parsers on literal text and fixtures (no I/O beyond reading fixtures)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from support.hostroots import RHEL9_HEADER, RPM_STRING, encode_rpm_header

from exporter.hostfacts import (
    HostFactsError,
    InstalledPackage,
    IptablesVersion,
    SelfTestError,
    backend_from_link_target,
    decode_rpm_header,
    interpret_self_test,
    package_from_header,
    parse_apk_installed,
    parse_boot_time,
    parse_dpkg_status,
    parse_iptables_version,
    parse_pacman_desc,
    parse_pid_stat,
    parse_rpm_query,
    parse_systemd_timestamp,
    process_start_time,
    select_iptables_package,
    upstream_version,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hostfacts"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.mark.parametrize(
    ("text", "version", "backend"),
    [
        ("iptables v1.8.9 (nf_tables)\n", "1.8.9", "nf_tables"),
        ("iptables v1.8.9 (legacy)\n", "1.8.9", "legacy"),
        ("iptables v1.8.11 (nf_tables)", "1.8.11", "nf_tables"),
        ("iptables v1.6.1\n", "1.6.1", "legacy"),
        ("iptables v1.4.21\n", "1.4.21", "legacy"),
        ("\n  iptables v1.8.10 (nf_tables)  \n", "1.8.10", "nf_tables"),
    ],
)
def test_parse_iptables_version(text: str, version: str, backend: str) -> None:
    assert parse_iptables_version(text) == IptablesVersion(version, backend)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "bash: iptables: command not found",
        "ip6tables v1.8.9 (nf_tables)",
        "iptables v1.8.9 (bpfilter)",
        "iptables version 1.8.9",
        "iptables v(nf_tables)",
    ],
)
def test_parse_iptables_version_rejects_garbage(text: str) -> None:
    with pytest.raises(HostFactsError, match="unrecognised `iptables --version` output"):
        parse_iptables_version(text)


@pytest.mark.parametrize(
    ("target", "backend"),
    [
        ("/usr/sbin/iptables-nft", "nf_tables"),
        ("/usr/sbin/iptables-legacy", "legacy"),
        ("xtables-nft-multi", "nf_tables"),
        ("/sbin/xtables-legacy-multi", "legacy"),
        ("/etc/alternatives/iptables", ""),
        ("/usr/sbin/iptables-nftables-compat", ""),
    ],
)
def test_backend_from_link_target(target: str, backend: str) -> None:
    assert backend_from_link_target(target) == backend


@pytest.mark.parametrize(
    ("package_version", "upstream"),
    [
        ("1.8.11-1", "1.8.11"),
        ("1:1.8.11-2", "1.8.11"),
        ("1.8.10-11.el9", "1.8.10"),
        ("1.8.10-r3", "1.8.10"),
        ("1.8.9", "1.8.9"),
        ("", ""),
    ],
)
def test_upstream_version(package_version: str, upstream: str) -> None:
    assert upstream_version(package_version) == upstream


def test_dpkg_status_fixture() -> None:
    packages = parse_dpkg_status(fixture("dpkg-status"))
    assert packages == (
        InstalledPackage("libxtables12", "1.8.11-1", "amd64"),
        InstalledPackage("libxtables12", "1.8.11-1", "i386"),
        InstalledPackage("iptables", "1.8.11-1", "amd64"),
        InstalledPackage("nftables", "1.1.1-1", "amd64"),  # "hold ok installed" is installed
    )


def test_dpkg_status_rejects_malformed_line() -> None:
    text = "Package: iptables\nStatus: install ok installed\nthis is not a field\n"
    with pytest.raises(HostFactsError, match=r"status line 3: expected 'Field: value'"):
        parse_dpkg_status(text, "status")


def test_dpkg_installed_stanza_needs_version() -> None:
    with pytest.raises(HostFactsError, match="line 1: installed stanza without Package/Version"):
        parse_dpkg_status("Package: iptables\nStatus: install ok installed\n")


def test_apk_installed_fixture() -> None:
    assert parse_apk_installed(fixture("apk-installed")) == (
        InstalledPackage("musl", "1.2.5-r8", "x86_64"),
        InstalledPackage("iptables", "1.8.11-r1", "x86_64"),
        InstalledPackage("iptables-legacy", "1.8.11-r1", "x86_64"),
    )


def test_apk_installed_rejects_garbage() -> None:
    with pytest.raises(HostFactsError, match="line 2: expected 'X:value'"):
        parse_apk_installed("P:iptables\nVersion 1.8.11\n")
    with pytest.raises(HostFactsError, match="record without P: or V:"):
        parse_apk_installed("P:iptables\nA:x86_64\n")


def test_pacman_desc_fixture() -> None:
    package = parse_pacman_desc(fixture("pacman-iptables-nft-desc"))
    assert package == InstalledPackage("iptables-nft", "1:1.8.11-1", "x86_64")
    with pytest.raises(HostFactsError, match="without %NAME% or %VERSION%"):
        parse_pacman_desc("%NAME%\niptables\n")


def test_rpm_query_output() -> None:
    text = "package iptables is not installed\niptables-nft 1.8.10-11.el9\n"
    assert parse_rpm_query(text) == (InstalledPackage("iptables-nft", "1.8.10-11.el9"),)


@pytest.mark.parametrize(
    ("names", "backend", "chosen"),
    [
        (["iptables"], "nf_tables", "iptables"),
        (["iptables-nft", "iptables-legacy"], "nf_tables", "iptables-nft"),
        (["iptables-nft", "iptables-legacy"], "legacy", "iptables-legacy"),
        (["iptables", "iptables-legacy"], "legacy", "iptables-legacy"),
        (["iptables-legacy", "iptables"], "", "iptables"),
        (["iptables-libs"], "nf_tables", None),
    ],
)
def test_select_iptables_package(names: list[str], backend: str, chosen: str | None) -> None:
    packages = tuple(InstalledPackage(name, "1.8.10-1") for name in names)
    package, warnings = select_iptables_package(packages, backend)
    assert (package.name if package else None) == chosen
    assert warnings == ()


def test_select_iptables_package_warns_on_differing_versions() -> None:
    packages = (
        InstalledPackage("iptables", "1.8.9-2", "amd64"),
        InstalledPackage("iptables", "1.8.11-1", "i386"),
    )
    package, warnings = select_iptables_package(packages, "nf_tables")
    assert package == packages[0]
    assert warnings == (
        "several installed versions of iptables: 1.8.9-2 (amd64), 1.8.11-1 (i386); using the first",
    )


# --- RPM header blobs -------------------------------------------------------------------


def test_rpm_header_roundtrip() -> None:
    blob = encode_rpm_header(RHEL9_HEADER)
    assert package_from_header(blob) == InstalledPackage("iptables-nft", "1.8.10-11.el9", "x86_64")
    tags = decode_rpm_header(blob)
    assert tags[1004].startswith("Legacy tools")
    assert tags[1047] == "iptables-nft"  # first string of an array
    assert 1003 not in tags  # not a string


def test_rpm_header_with_magic_prefix() -> None:
    blob = b"\x8e\xad\xe8\x01\x00\x00\x00\x00" + encode_rpm_header(RHEL9_HEADER)
    assert package_from_header(blob).name == "iptables-nft"


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"\0\0\0", "rpm header too short"),
        (struct.pack(">II", 5, 10) + b"\0" * 20, "sizes do not fit the blob"),
        (encode_rpm_header(RHEL9_HEADER)[:-30], "sizes do not fit the blob"),
        (
            struct.pack(">II", 1, 4) + struct.pack(">iiii", 1000, 6, 99, 1) + b"abcd",
            "outside the data",
        ),
        (
            struct.pack(">II", 1, 4) + struct.pack(">iiii", 1000, 6, 0, 1) + b"abcd",
            "outside the data",
        ),
        (encode_rpm_header([(1000, RPM_STRING, "x")]), r"without tag\(s\) \[1001, 1002\]"),
    ],
)
def test_rpm_header_rejects_bad_blobs(blob: bytes, message: str) -> None:
    with pytest.raises(HostFactsError, match=message):
        package_from_header(blob)


# --- /proc and systemd times ------------------------------------------------------------


def test_boot_time_fixture() -> None:
    assert parse_boot_time(fixture("proc-stat")) == 1795691531.0
    with pytest.raises(HostFactsError, match="no 'btime <seconds>' line"):
        parse_boot_time("cpu 1 2 3\nbtime soon\n")


def test_pid_stat_with_spaces_and_parentheses_in_comm() -> None:
    assert parse_pid_stat(fixture("pid-stat-weird-comm")) == ("my (weird) cmd", 12345)
    assert process_start_time(1795691531.0, 12345, 100) == pytest.approx(1795691654.45)


@pytest.mark.parametrize(
    ("text", "message"),
    [("4242 S 1 2", r"without '\(comm\)'"), ("4242 (dockerd) S 1 2 3", "no numeric field 22")],
)
def test_pid_stat_rejects_garbage(text: str, message: str) -> None:
    with pytest.raises(HostFactsError, match=message):
        parse_pid_stat(text)


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("ActiveEnterTimestamp=Thu 2026-11-26 10:00:00 UTC\n", 1795687200.0),
        (fixture("systemctl-show-active"), 1795687200.0),
        ("ActiveEnterTimestamp=Thu 2026-11-26 10:00:00.250000 UTC", 1795687200.25),
        ("ActiveEnterTimestamp=Thu 2026-11-26 11:00:00 +0100", 1795687200.0),
        ("ActiveEnterTimestamp=Thu 2026-11-26 05:00:00 -05:00", 1795687200.0),
        ("ActiveEnterTimestamp=@1795687200", 1795687200.0),
    ],
)
def test_systemd_timestamp(text: str, epoch: float) -> None:
    assert parse_systemd_timestamp(text) == pytest.approx(epoch)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ActiveEnterTimestamp=\n", "unit has not been active"),
        ("ActiveEnterTimestamp=n/a\n", "unit has not been active"),
        ("ActiveEnterTimestamp=Thu 2026-11-26 11:00:00 CET", "time zones other than UTC"),
        ("ActiveEnterTimestamp=yesterday", "cannot read ActiveEnterTimestamp"),
        ("ActiveState=active\n", "no ActiveEnterTimestamp= line"),
    ],
)
def test_systemd_timestamp_rejects(text: str, message: str) -> None:
    with pytest.raises(HostFactsError, match=message):
        parse_systemd_timestamp(text)


# --- self-test verdict --------------------------------------------------------------------


def test_self_test_verdicts() -> None:
    assert interpret_self_test(0, "check-rc=0\n", "") is True
    assert interpret_self_test(0, "check-rc=1\n", "iptables: Bad rule") is False


@pytest.mark.parametrize(
    ("rc", "stdout", "stderr", "message"),
    [
        (1, "", "unshare: unshare failed: Operation not permitted", "needs CAP_SYS_ADMIN"),
        (
            0,
            "setup-failed: iptables -N t exited 4\n",
            "Permission denied (you must be root)",
            "setup failed",
        ),
        (0, "check-rc=2\n", "iptables v1.8.9: unknown option", "gave no verdict"),
        (0, "", "", "did not run"),
    ],
)
def test_self_test_inconclusive(rc: int, stdout: str, stderr: str, message: str) -> None:
    with pytest.raises(SelfTestError, match=message):
        interpret_self_test(rc, stdout, stderr)
