"""Pure parsers for distro package databases, and the choice of the iptables package."""

from __future__ import annotations

import re

from exporter.hostfacts.model import HostFactsError, InstalledPackage

# Package names that carry the iptables binaries: Debian/RHEL 8/Alpine "iptables",
# RHEL 9/Fedora/Arch "iptables-nft" (nf_tables) and "iptables-legacy" (legacy).
IPTABLES_PACKAGES = ("iptables", "iptables-nft", "iptables-legacy")

# dpkg states in which the package's files are unpacked and configured ("hold" and
# "install" are both wants; a held package is as installed as any other).
_DPKG_INSTALLED = {"installed", "triggers-pending", "triggers-awaited"}


def _stanzas(text: str) -> list[list[tuple[int, str]]]:
    stanzas: list[list[tuple[int, str]]] = [[]]
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            stanzas[-1].append((number, line))
        elif stanzas[-1]:
            stanzas.append([])
    return [stanza for stanza in stanzas if stanza]


def _dpkg_fields(stanza: list[tuple[int, str]], source: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = ""
    for number, line in stanza:
        if line[0] in " \t":
            if not key:
                raise HostFactsError(f"{source} line {number}: continuation line before any field")
            fields[key] += "\n" + line.strip()
            continue
        key, sep, value = line.partition(":")
        if not sep or not key or " " in key:
            raise HostFactsError(f"{source} line {number}: expected 'Field: value', got {line!r}")
        fields[key.lower()] = value.strip()
        key = key.lower()
    return fields


def parse_dpkg_status(
    text: str, source: str = "var/lib/dpkg/status"
) -> tuple[InstalledPackage, ...]:
    """Installed packages in a dpkg status file, in file order (one per architecture)."""
    packages = []
    for stanza in _stanzas(text):
        fields = _dpkg_fields(stanza, source)
        status = fields.get("status", "").split()
        if len(status) != 3 or status[1] != "ok" or status[2] not in _DPKG_INSTALLED:
            continue
        if not fields.get("package") or not fields.get("version"):
            line = stanza[0][0]
            raise HostFactsError(f"{source} line {line}: installed stanza without Package/Version")
        packages.append(
            InstalledPackage(fields["package"], fields["version"], fields.get("architecture", ""))
        )
    return tuple(packages)


def parse_apk_installed(
    text: str, source: str = "lib/apk/db/installed"
) -> tuple[InstalledPackage, ...]:
    """Installed packages in Alpine's `lib/apk/db/installed` (`P:` name, `V:` version)."""
    packages = []
    for stanza in _stanzas(text):
        fields: dict[str, str] = {}
        for number, line in stanza:
            if not re.match(r"^[A-Za-z]:", line):
                raise HostFactsError(f"{source} line {number}: expected 'X:value', got {line!r}")
            fields.setdefault(line[0], line[2:].strip())
        if "P" not in fields or "V" not in fields:
            raise HostFactsError(f"{source} line {stanza[0][0]}: record without P: or V:")
        packages.append(InstalledPackage(fields["P"], fields["V"], fields.get("A", "")))
    return tuple(packages)


def parse_pacman_desc(text: str, source: str = "desc") -> InstalledPackage:
    """One package from Arch's `var/lib/pacman/local/<name>-<version>/desc`."""
    fields: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if re.fullmatch(r"%[A-Z0-9]+%", line.strip()):
            key = line.strip()
        elif line.strip() and key and key not in fields:
            fields[key] = line.strip()
    if "%NAME%" not in fields or "%VERSION%" not in fields:
        raise HostFactsError(f"{source}: pacman desc without %NAME% or %VERSION%")
    return InstalledPackage(fields["%NAME%"], fields["%VERSION%"], fields.get("%ARCH%", ""))


def parse_rpm_query(text: str) -> tuple[InstalledPackage, ...]:
    """Output of `rpm -q --qf '%{NAME} %{VERSION}-%{RELEASE}\\n' NAME...`.

    "package X is not installed" lines are skipped.
    """
    packages = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and not line.startswith("package "):
            packages.append(InstalledPackage(parts[0], parts[1]))
    return tuple(packages)


def select_iptables_package(
    packages: tuple[InstalledPackage, ...], backend: str = ""
) -> tuple[InstalledPackage | None, tuple[str, ...]]:
    """The package that most likely holds the host's `iptables`, plus warnings.

    nf_tables prefers `iptables-nft`, legacy prefers `iptables-legacy`; `iptables` is the
    fallback for both. Several versions of the chosen name (multi-arch) give a warning.
    """
    order = {
        "nf_tables": ("iptables-nft", "iptables"),
        "legacy": ("iptables-legacy", "iptables"),
    }.get(backend, IPTABLES_PACKAGES)
    for name in order:
        found = [package for package in packages if package.name == name]
        if not found:
            continue
        versions = sorted({package.version for package in found})
        warnings = ()
        if len(versions) > 1:
            listed = ", ".join(f"{p.version} ({p.arch or '?'})" for p in found)
            warnings = (f"several installed versions of {name}: {listed}; using the first",)
        return found[0], warnings
    return None, ()
