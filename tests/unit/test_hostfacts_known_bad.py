"""The known-bad data file and its matching rules."""

from __future__ import annotations

import pytest

from exporter.hostfacts import (
    HostFactsError,
    InstalledPackage,
    IptablesFacts,
    IptablesVersion,
    assemble_iptables_facts,
    match_known_bad,
    parse_known_bad,
)
from exporter.sources.host import load_known_bad

ENTRIES = load_known_bad()
DEBIAN = "debian-iptables-1.8.11-1-check-ignores-interfaces"
ARCH = "arch-iptables-nft-1.8.11-1-check-ignores-interfaces"
UPSTREAM = "upstream-iptables-1.8.11-check-ignores-interfaces"


def facts(version="1.8.11", backend="nf_tables", manager="", name="", package="") -> IptablesFacts:
    return IptablesFacts(
        version=version,
        backend=backend,
        package_manager=manager,
        package_name=name,
        package_version=package,
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (facts(manager="dpkg", name="iptables", package="1.8.11-1"), DEBIAN),
        (facts(manager="dpkg", name="iptables", package="1.8.11-2"), None),
        (facts(manager="dpkg", name="iptables", package="1.8.11-3+b1"), None),
        (facts("1.8.9", manager="dpkg", name="iptables", package="1.8.9-2"), None),
        (facts("1.8.10", manager="dpkg", name="iptables", package="1.8.10-4+b1"), None),
        (facts(manager="dpkg", name="iptables", package="1.8.11-1", backend="legacy"), None),
        (facts(manager="pacman", name="iptables-nft", package="1:1.8.11-1"), ARCH),
        (facts(manager="pacman", name="iptables-nft", package="1.8.11-1"), ARCH),
        (facts(manager="pacman", name="iptables-nft", package="1:1.8.11-2"), None),
        (facts(), UPSTREAM),  # upstream 1.8.11, no package revision known
        (facts(backend="legacy"), None),
        (facts(backend=""), UPSTREAM),  # unknown backend: possibly affected
        (facts(manager="rpm", name="iptables-nft", package="1.8.11-1.fc42"), UPSTREAM),
        (facts(manager="apk", name="iptables", package="1.8.11-r1"), UPSTREAM),
        (facts("1.8.12", manager="apk", name="iptables", package="1.8.12-r0"), None),
        # binary 1.8.11 but the package says 1.8.9: the package does not describe the binary
        (facts(manager="dpkg", name="iptables", package="1.8.9-2"), UPSTREAM),
        # no binary version: the package's upstream part counts
        (facts("", manager="dpkg", name="iptables", package="1.8.11-1"), DEBIAN),
        (facts("", manager="dpkg", name="iptables", package="1.8.11-2"), None),
        (facts(""), None),
    ],
)
def test_match_known_bad_table(case: IptablesFacts, expected: str | None) -> None:
    result = match_known_bad(case, ENTRIES)
    assert (result.id if result else None) == expected


def test_known_bad_result_carries_reason_and_urls() -> None:
    result = match_known_bad(facts(manager="dpkg", name="iptables", package="1.8.11-1"), ENTRIES)
    assert result is not None
    assert "https://bugs.debian.org/cgi-bin/bugreport.cgi?bug=1087210" in result.urls
    assert "1.8.11-2" in result.reason
    arch = match_known_bad(
        facts(manager="pacman", name="iptables-nft", package="1:1.8.11-1"), ENTRIES
    )
    assert arch is not None and "https://github.com/moby/moby/issues/49667" in arch.urls


def test_assemble_from_package_and_alternative_only() -> None:
    """No runnable binary: version from the package, backend from the alternatives link."""
    result = assemble_iptables_facts(
        version=None,
        packages=(
            InstalledPackage("libxtables12", "1.8.11-1"),
            InstalledPackage("iptables", "1.8.11-1"),
        ),
        package_manager="dpkg",
        alternative="/usr/sbin/iptables-nft",
        entries=ENTRIES,
        errors=("chroot failed",),
    )
    assert (result.version, result.backend, result.package_version) == (
        "1.8.11",
        "nf_tables",
        "1.8.11-1",
    )
    assert result.known_bad is not None and result.known_bad.id == DEBIAN
    assert result.errors == ("chroot failed",)


def test_assemble_legacy_alternative_is_not_bad() -> None:
    result = assemble_iptables_facts(
        version=IptablesVersion("1.8.11", "legacy"),
        packages=(InstalledPackage("iptables", "1.8.11-1"),),
        package_manager="dpkg",
        alternative="/usr/sbin/iptables-legacy",
        entries=ENTRIES,
    )
    assert result.known_bad is None and result.backend == "legacy"


def test_assemble_reports_missing_package() -> None:
    result = assemble_iptables_facts(
        version=IptablesVersion("1.8.9", "nf_tables"),
        packages=(InstalledPackage("nftables", "1.0.6-2"),),
        package_manager="dpkg",
        alternative="",
        entries=ENTRIES,
    )
    assert result.package_manager == "" and result.package_version == ""
    assert result.errors == (
        "dpkg lists none of the packages iptables, iptables-nft, iptables-legacy",
    )


VALID = """
schema = 1
[[entry]]
id = "x"
reason = "r"
urls = ["https://example.org/x"]
upstream_version = "1.8.11"
backends = ["nf_tables"]
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("schema = 1\n[[entry]\n", "not valid TOML"),
        ("schema = 2\n", "expected 'schema = 1'"),
        (VALID + 'colour = "red"\n', r"unknown key\(s\) \['colour'\]"),
        (VALID.replace('reason = "r"\n', ""), r"missing key\(s\) \['reason'\]"),
        (VALID + 'package_manager = "dpkg"\n', "a package rule needs all of"),
        (VALID.replace('"nf_tables"', '"bpfilter"'), "needs urls and backends"),
        (VALID.replace('urls = ["https://example.org/x"]', "urls = []"), "needs urls and backends"),
        (VALID.replace('id = "x"', "id = 3"), "id must be a non-empty string"),
        (
            VALID + 'package_manager = "yum"\npackage_names = ["iptables"]\nbad_revisions = []\n',
            "package_manager must be one of",
        ),
        (VALID + VALID.replace("schema = 1", ""), r"duplicate entry id\(s\) \['x'\]"),
    ],
)
def test_parse_known_bad_rejects(text: str, message: str) -> None:
    with pytest.raises(HostFactsError, match=message):
        parse_known_bad(text)


def test_empty_bad_revisions_vouches_for_a_distro() -> None:
    text = VALID + VALID.replace('id = "x"', 'id = "alpine-fixed"').replace("schema = 1", "")
    text += 'package_manager = "apk"\npackage_names = ["iptables"]\nbad_revisions = []\n'
    entries = parse_known_bad(text)
    assert (
        match_known_bad(facts(manager="apk", name="iptables", package="1.8.11-r1"), entries) is None
    )
    assert (
        match_known_bad(facts(manager="rpm", name="iptables", package="1.8.11-1"), entries).id
        == "x"
    )
