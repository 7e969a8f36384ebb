"""The host's installed packages, from the first package database that lists iptables:
dpkg, apk, pacman, rpm's sqlite database (read directly), or BerkeleyDB/ndb through `rpm`."""

from __future__ import annotations

import os
import shutil
import sqlite3
import urllib.parse

from exporter import hostfacts as hf
from exporter.hostfacts import HostFactsError, InstalledPackage
from exporter.sources.hostroot import (
    HOST_ENV,
    attempt,
    host_path,
    read_text,
    run_host,
    stderr_tail,
)

_RPM_SQLITE = ("var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite")
_RPM_OTHER = (
    "var/lib/rpm/Packages",
    "usr/lib/sysimage/rpm/Packages",
    "usr/lib/sysimage/rpm/Packages.db",
)
_RPM_FORMAT = "%{NAME} %{VERSION}-%{RELEASE}\\n"


def read_packages(
    root: str, timeout: float, errors: list[str]
) -> tuple[str, tuple[InstalledPackage, ...]]:
    """(package manager, its installed packages): the first database that lists iptables."""
    readers = (
        ("dpkg", "var/lib/dpkg/status", lambda p: hf.parse_dpkg_status(read_text(p), p)),
        ("apk", "lib/apk/db/installed", lambda p: hf.parse_apk_installed(read_text(p), p)),
        ("pacman", "var/lib/pacman/local", _pacman_packages),
        *(("rpm", rel, _rpm_sqlite_packages) for rel in _RPM_SQLITE),
        *(("rpm", rel, lambda p: rpm_tool_packages(p, root, timeout)) for rel in _RPM_OTHER),
    )
    before = len(errors)
    found: list[tuple[str, tuple[InstalledPackage, ...]]] = []
    for manager, rel, reader in readers:
        path = attempt(errors, lambda rel=rel: host_path(root, rel))
        # Fedora links var/lib/rpm to usr/lib/sysimage/rpm: read one rpm database only.
        if not path or not os.path.exists(path) or any(m == "rpm" == manager for m, _ in found):
            continue
        packages = attempt(errors, lambda reader=reader, path=path: reader(path))
        if packages is not None:
            found.append((manager, packages))
    for manager, packages in found:
        if any(p.name in hf.IPTABLES_PACKAGES for p in packages):
            return manager, packages
    if not found and len(errors) == before:
        errors.append(f"no package database found under {root} (dpkg, apk, pacman or rpm)")
    return found[0] if found else ("", ())


def _pacman_packages(local: str) -> tuple[InstalledPackage, ...]:
    try:
        names = sorted(n for n in os.listdir(local) if n.startswith("iptables"))
    except OSError as exc:
        raise HostFactsError(f"cannot list {local}: {exc.strerror}") from None
    paths = [os.path.join(local, name, "desc") for name in names]
    return tuple(hf.parse_pacman_desc(read_text(path), path) for path in paths)


def _rpm_sqlite_packages(path: str) -> tuple[InstalledPackage, ...]:
    # immutable=1: no locks, no journal, no WAL replay, so a read-only mount is fine.
    # Only the iptables headers are decoded, found through rpm's Name index table.
    uri = f"file:{urllib.parse.quote(path)}?mode=ro&immutable=1"
    names = hf.IPTABLES_PACKAGES
    query = "SELECT blob FROM Packages WHERE hnum IN (SELECT hnum FROM Name WHERE key IN (?,?,?))"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=1)
        try:
            blobs = [row[0] for row in db.execute(query, names)]
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise HostFactsError(f"cannot read rpm database {path}: {exc}") from None
    if not all(isinstance(blob, bytes) for blob in blobs):
        raise HostFactsError(f"rpm database {path}: Packages.blob holds something not a blob")
    return tuple(hf.package_from_header(blob) for blob in blobs)


def rpm_tool_packages(path: str, root: str, timeout: float) -> tuple[InstalledPackage, ...]:
    """BerkeleyDB/ndb rpmdb: only the rpm tool can read it."""
    if not shutil.which("rpm", path=HOST_ENV["PATH"]):
        raise HostFactsError(
            f"{path} is a BerkeleyDB/ndb rpm database; reading it needs the `rpm` tool, "
            "which is not installed here"
        )
    dbpath = (
        "/" + os.path.relpath(os.path.dirname(path), root) if root != "/" else os.path.dirname(path)
    )
    query = ["rpm", "--root", root, "--dbpath", dbpath, "-q", "--qf", _RPM_FORMAT]
    returncode, stdout, stderr = run_host([*query, *hf.IPTABLES_PACKAGES], timeout)
    packages = hf.parse_rpm_query(stdout)
    if not packages and returncode != 0 and stderr.strip():
        raise HostFactsError(
            f"`rpm --root {root} --dbpath {dbpath} -q` exited {returncode}: {stderr_tail(stderr)}"
        )
    return packages
