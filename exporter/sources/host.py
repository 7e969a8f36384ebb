"""Reads host facts: the host's iptables build, boot time, dockerd start time. Never raises.

With host_root != "/" (the host's / mounted into the container), every path is resolved
inside host_root (symlinks included) and the host's own binaries run via `chroot host_root`
(CAP_SYS_CHROOT); the container's own iptables is never reported as the host's.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import shutil
import signal
import sqlite3
import subprocess
import urllib.parse

from exporter import hostfacts as hf
from exporter.hostfacts import HostFacts, HostFactsError, InstalledPackage, IptablesFacts

_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C",
    "TZ": "UTC",
}
_RPM_SQLITE = ("var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite")
_RPM_OTHER = (
    "var/lib/rpm/Packages",
    "usr/lib/sysimage/rpm/Packages",
    "usr/lib/sysimage/rpm/Packages.db",
)
_IPTABLES_LINKS = (
    "etc/alternatives/iptables",
    "usr/sbin/iptables",
    "sbin/iptables",
    "usr/bin/iptables",
)
_RPM_FORMAT = "%{NAME} %{VERSION}-%{RELEASE}\\n"
_PID_NS_HINT = "run the exporter in the host PID namespace (--pid=host)"


def read_host_facts(
    host_root: str = "/",
    dockerd_pid: int | None = None,
    proc_root: str = "/proc",
    self_test: bool = False,
    timeout: float = 5.0,
    known_bad: tuple[hf.KnownBadEntry, ...] | None = None,
) -> HostFacts:
    """All host facts; problems end up in the `errors` tuples, never as exceptions."""
    iptables = read_iptables_facts(host_root, self_test, timeout, known_bad)
    errors: list[str] = []
    boot = _try(errors, lambda: hf.parse_boot_time(_read(os.path.join(proc_root, "stat"))))
    start, source = _daemon_start(host_root, proc_root, dockerd_pid, boot, timeout, errors)
    return HostFacts(iptables, boot, start, source, tuple(errors))


def load_known_bad() -> tuple[hf.KnownBadEntry, ...]:
    """The packaged exporter/data/known_bad.toml, validated (raises HostFactsError)."""
    try:
        text = importlib.resources.files("exporter").joinpath("data/known_bad.toml").read_text()
    except OSError as exc:
        raise HostFactsError(f"cannot read the packaged known_bad.toml: {exc}") from None
    return hf.parse_known_bad(text, "exporter/data/known_bad.toml")


def read_iptables_facts(
    host_root: str = "/",
    self_test: bool = False,
    timeout: float = 5.0,
    known_bad: tuple[hf.KnownBadEntry, ...] | None = None,
) -> IptablesFacts:
    """The iptables part of read_host_facts; `known_bad=None` loads the packaged data file."""
    errors: list[str] = []
    entries = known_bad if known_bad is not None else _try(errors, load_known_bad) or ()
    version = _try(errors, lambda: _iptables_version(host_root, timeout))
    manager, packages = _read_packages(host_root, timeout, errors)
    broken = None
    if self_test:
        broken = _try(errors, lambda: iptables_check_command_broken("iptables", timeout, host_root))
    return hf.assemble_iptables_facts(
        version=version,
        packages=packages,
        package_manager=manager,
        alternative=_iptables_link(host_root),
        entries=entries,
        check_command_broken=broken,
        errors=tuple(errors),
    )


def iptables_check_command_broken(
    iptables: str = "iptables", timeout: float = 5.0, host_root: str = "/"
) -> bool:
    """Opt-in self-test in a private network namespace (`unshare --net`, CAP_SYS_ADMIN).

    True when `iptables -C` ignores interface names (the 1.8.11 bug). The namespace has no
    name and dies with its last process, which is killed on timeout; the host's rules are
    never touched. Raises SelfTestError when it cannot run or gives no verdict.
    """
    unshare = shutil.which("unshare", path=_ENV["PATH"])
    if not unshare:
        raise hf.SelfTestError("self-test needs `unshare` (util-linux), which is not installed")
    chroot = ["chroot", host_root] if host_root != "/" else []
    argv = [unshare, "--net", "--", *chroot, "sh", "-c", hf.SELF_TEST_SCRIPT, "sh", iptables]
    try:
        returncode, stdout, stderr = _run(argv, timeout)
    except HostFactsError as exc:
        raise hf.SelfTestError(f"self-test: {exc}") from None
    return hf.interpret_self_test(returncode, stdout, stderr)


def _try(errors: list[str], func):
    """func(), or None with its error appended; OSError covers races on a live host root."""
    try:
        return func()
    except (HostFactsError, OSError) as exc:
        errors.append(str(exc))
        return None


def _run(argv: list[str], timeout: float) -> tuple[int, str, str]:
    """Run with a timeout in a new session; on timeout kill the whole process group."""
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_ENV,
            start_new_session=True,
        )
    except OSError as exc:
        raise HostFactsError(f"cannot run `{argv[0]}`: {exc.strerror}") from None
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise HostFactsError(f"`{' '.join(argv[:4])}` timed out after {timeout:g}s") from None
    return proc.returncode, stdout, stderr


def _tail(stderr: str) -> str:
    """The end of a command's stderr on one line, for an error message."""
    return "; ".join(line.strip() for line in stderr.strip().splitlines())[-240:] or "(no stderr)"


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError as exc:
        raise HostFactsError(f"cannot read {path}: {exc.strerror}") from None


def _host_path(root: str, rel: str) -> str:
    """`rel` inside `root`, following symlinks as if `root` were `/` (absolute ones included)."""
    root = os.path.abspath(root)
    if root == "/":
        return "/" + rel.lstrip("/")
    current, parts, hops = root, [p for p in rel.split("/") if p], 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current if current == root else os.path.dirname(current)
            continue
        candidate = os.path.join(current, part)
        if part == "." or not os.path.islink(candidate):
            current = candidate if part != "." else current
            continue
        hops += 1
        if hops > 40:
            raise HostFactsError(f"too many symlinks resolving {rel} under {root}")
        target = os.readlink(candidate)
        current = root if target.startswith("/") else current
        parts = [p for p in target.split("/") if p] + parts
    return current


def _iptables_version(host_root: str, timeout: float) -> hf.IptablesVersion:
    argv = (
        ["iptables", "--version"]
        if host_root == "/"
        else ["chroot", host_root, "iptables", "--version"]
    )
    returncode, stdout, stderr = _run(argv, timeout)
    if returncode != 0:
        hint = " (chroot needs CAP_SYS_CHROOT)" if "Operation not permitted" in stderr else ""
        raise HostFactsError(f"`{' '.join(argv)}` exited {returncode}: {_tail(stderr)}{hint}")
    return hf.parse_iptables_version(stdout)


def _iptables_link(root: str) -> str:
    """Target of the alternatives link (or of an iptables symlink naming a backend), or ""."""
    for number, rel in enumerate(_IPTABLES_LINKS):
        directory, name = os.path.split(rel)
        try:
            target = os.readlink(os.path.join(_host_path(root, directory), name))
        except (OSError, HostFactsError):
            continue
        if number == 0 or hf.backend_from_link_target(target):
            return target
    return ""


def _read_packages(
    root: str, timeout: float, errors: list[str]
) -> tuple[str, tuple[InstalledPackage, ...]]:
    """(package manager, its installed packages): the first database that lists iptables."""
    readers = (
        ("dpkg", "var/lib/dpkg/status", lambda p: hf.parse_dpkg_status(_read(p), p)),
        ("apk", "lib/apk/db/installed", lambda p: hf.parse_apk_installed(_read(p), p)),
        ("pacman", "var/lib/pacman/local", _pacman_packages),
        *(("rpm", rel, _rpm_sqlite_packages) for rel in _RPM_SQLITE),
        *(("rpm", rel, lambda p: _rpm_tool_packages(p, root, timeout)) for rel in _RPM_OTHER),
    )
    before = len(errors)
    found: list[tuple[str, tuple[InstalledPackage, ...]]] = []
    for manager, rel, reader in readers:
        path = _try(errors, lambda rel=rel: _host_path(root, rel))
        # Fedora links var/lib/rpm to usr/lib/sysimage/rpm: read one rpm database only.
        if not path or not os.path.exists(path) or any(m == "rpm" == manager for m, _ in found):
            continue
        packages = _try(errors, lambda reader=reader, path=path: reader(path))
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
    return tuple(hf.parse_pacman_desc(_read(path), path) for path in paths)


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


def _rpm_tool_packages(path: str, root: str, timeout: float) -> tuple[InstalledPackage, ...]:
    """BerkeleyDB/ndb rpmdb: only the rpm tool can read it."""
    if not shutil.which("rpm", path=_ENV["PATH"]):
        raise HostFactsError(
            f"{path} is a BerkeleyDB/ndb rpm database; reading it needs the `rpm` tool, "
            "which is not installed here"
        )
    dbpath = (
        "/" + os.path.relpath(os.path.dirname(path), root) if root != "/" else os.path.dirname(path)
    )
    query = ["rpm", "--root", root, "--dbpath", dbpath, "-q", "--qf", _RPM_FORMAT]
    returncode, stdout, stderr = _run([*query, *hf.IPTABLES_PACKAGES], timeout)
    packages = hf.parse_rpm_query(stdout)
    if not packages and returncode != 0 and stderr.strip():
        raise HostFactsError(
            f"`rpm --root {root} --dbpath {dbpath} -q` exited {returncode}: {_tail(stderr)}"
        )
    return packages


def _daemon_start(
    root: str,
    proc_root: str,
    pid: int | None,
    boot: float | None,
    timeout: float,
    errors: list[str],
) -> tuple[float | None, str]:
    """dockerd's start time and its source: the given pid, the pidfile, then systemd."""
    if pid is not None:
        start = _try(errors, lambda: _dockerd_start(proc_root, pid, boot, "the Docker socket peer"))
        if start is not None:
            return start, "proc"
    for rel in ("run/docker.pid", "var/run/docker.pid"):
        path = _try(errors, lambda rel=rel: _host_path(root, rel))
        if path and os.path.exists(path):
            start = _try(errors, lambda path=path: _pidfile_start(path, proc_root, boot))
            if start is not None:
                return start, "pidfile"
            break
    start = _try(errors, lambda: _systemd_start(root, timeout))
    return (start, "systemd") if start is not None else (None, "")


def _pidfile_start(path: str, proc_root: str, boot: float | None) -> float:
    text = _read(path).strip()
    if not text.isdigit():
        raise HostFactsError(f"{path} does not hold a pid: {text[:40]!r}")
    return _dockerd_start(proc_root, int(text), boot, path)


def _dockerd_start(proc_root: str, pid: int, boot: float | None, origin: str) -> float:
    if pid <= 0:
        raise HostFactsError(f"dockerd pid from {origin} is {pid}: not visible, {_PID_NS_HINT}")
    stat_path = os.path.join(proc_root, str(pid), "stat")
    if not os.path.exists(stat_path):
        raise HostFactsError(f"dockerd pid {pid} not visible in {proc_root}: {_PID_NS_HINT}")
    comm, ticks = hf.parse_pid_stat(_read(stat_path))
    if comm != "dockerd":
        raise HostFactsError(
            f"pid {pid} (from {origin}) is {comm!r}, not dockerd: a socket proxy, or another PID "
            f"namespace ({_PID_NS_HINT})"
        )
    if boot is None:
        raise HostFactsError("dockerd start time needs the boot time, which is unknown")
    return hf.process_start_time(boot, ticks, os.sysconf("SC_CLK_TCK"))


def _systemd_start(root: str, timeout: float) -> float:
    if root == "/":
        argv = [] if shutil.which("systemctl", path=_ENV["PATH"]) else None
    else:
        present = any(
            os.path.exists(_host_path(root, b)) for b in ("usr/bin/systemctl", "bin/systemctl")
        )
        argv = ["chroot", root] if present else None
    if argv is None:
        raise HostFactsError(
            "dockerd start time unknown: no usable pid or docker.pid, and no systemctl"
        )
    argv += ["systemctl", "show", "docker.service", "-p", "ActiveState"]
    argv += ["-p", "ActiveEnterTimestamp"]
    returncode, stdout, stderr = _run(argv, timeout)
    if returncode != 0:
        raise HostFactsError(
            f"`systemctl show docker.service` exited {returncode}: {_tail(stderr)}"
        )
    if "ActiveState=active" not in stdout.splitlines():
        raise HostFactsError("docker.service is not active according to systemd")
    return hf.parse_systemd_timestamp(stdout)
