"""Frozen data types for host facts (iptables build, boot and dockerd start times)."""

from __future__ import annotations

from dataclasses import dataclass


class HostFactsError(ValueError):
    """Input that a host-facts parser cannot interpret; the message says what and why."""


@dataclass(frozen=True)
class IptablesVersion:
    """Parsed `iptables --version` output: upstream version and backend."""

    version: str  # "1.8.9"
    backend: str  # "nf_tables" or "legacy"


@dataclass(frozen=True)
class InstalledPackage:
    """One installed package as a distro package database records it."""

    name: str
    version: str  # full distro version: "1.8.11-1", "1.8.10-11.el9", "1.8.10-r3"
    arch: str = ""


@dataclass(frozen=True)
class KnownBad:
    """The known-bad entry (exporter/data/known_bad.toml) the host's iptables build matched."""

    id: str
    reason: str
    urls: tuple[str, ...]


@dataclass(frozen=True)
class IptablesFacts:
    """What is known about the host's iptables build; "" means unknown.

    `version`/`backend` come from the host binary's `iptables --version`; when it cannot
    run they fall back to the package version's upstream part and the alternatives link.
    `check_command_broken` is None when the self-test was off or inconclusive.
    """

    version: str = ""
    backend: str = ""
    package_name: str = ""
    package_version: str = ""
    package_manager: str = ""  # "dpkg", "rpm", "apk", "pacman" or ""
    alternative: str = ""  # target of <root>/etc/alternatives/iptables (or of the iptables link)
    known_bad: KnownBad | None = None
    check_command_broken: bool | None = None
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostFacts:
    """Host facts for the snapshot; each value is None/"" when unknown and `errors` says why."""

    iptables: IptablesFacts
    boot_time_seconds: float | None = None
    daemon_start_time_seconds: float | None = None
    daemon_start_source: str = ""  # "proc", "pidfile", "systemd" or ""
    errors: tuple[str, ...] = ()
