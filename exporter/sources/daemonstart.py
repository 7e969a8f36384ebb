"""dockerd's start time: from its pid (the Docker socket's peer), its pidfile, or systemd.

Cheap (a /proc read, or one `systemctl show`), so the exporter reads it on every refresh:
a restart shows in docker_nat_docker_daemon_start_time_seconds at the next one.
"""

from __future__ import annotations

import os
import shutil

from exporter import hostfacts as hf
from exporter.hostfacts import HostFactsError
from exporter.sources.hostroot import (
    HOST_ENV,
    attempt,
    host_path,
    read_text,
    run_host,
    stderr_tail,
)

PID_NS_HINT = "run the exporter in the host PID namespace (--pid=host)"


def read_daemon_start(
    host_root: str = "/",
    dockerd_pid: int | None = None,
    proc_root: str = "/proc",
    timeout: float = 5.0,
) -> tuple[float | None, float | None, str, tuple[str, ...]]:
    """(boot time, dockerd start time, its source, errors), never raising."""
    errors: list[str] = []
    boot = attempt(errors, lambda: hf.parse_boot_time(read_text(os.path.join(proc_root, "stat"))))
    start, source = daemon_start(host_root, proc_root, dockerd_pid, boot, timeout, errors)
    return boot, start, source, tuple(errors)


def daemon_start(
    root: str,
    proc_root: str,
    pid: int | None,
    boot: float | None,
    timeout: float,
    errors: list[str],
) -> tuple[float | None, str]:
    """dockerd's start time and its source: the given pid, the pidfile, then systemd."""
    if pid is not None:
        start = attempt(
            errors, lambda: _dockerd_start(proc_root, pid, boot, "the Docker socket peer")
        )
        if start is not None:
            return start, "proc"
    for rel in ("run/docker.pid", "var/run/docker.pid"):
        path = attempt(errors, lambda rel=rel: host_path(root, rel))
        if path and os.path.exists(path):
            start = attempt(errors, lambda path=path: _pidfile_start(path, proc_root, boot))
            if start is not None:
                return start, "pidfile"
            break
    if not systemd_booted(root):  # nothing to ask, and nothing the user should be told
        return None, ""
    start = attempt(errors, lambda: _systemd_start(root, timeout))
    return (start, "systemd") if start is not None else (None, "")


def systemd_booted(root: str) -> bool:
    """Whether systemd is the host's init system (sd_booted(3): /run/systemd/system exists)."""
    try:
        return os.path.isdir(host_path(root, "run/systemd/system"))
    except HostFactsError:
        return False


def _pidfile_start(path: str, proc_root: str, boot: float | None) -> float:
    text = read_text(path).strip()
    if not text.isdigit():
        raise HostFactsError(f"{path} does not hold a pid: {text[:40]!r}")
    return _dockerd_start(proc_root, int(text), boot, path)


def _dockerd_start(proc_root: str, pid: int, boot: float | None, origin: str) -> float:
    if pid <= 0:
        raise HostFactsError(f"dockerd pid from {origin} is {pid}: not visible, {PID_NS_HINT}")
    stat_path = os.path.join(proc_root, str(pid), "stat")
    if not os.path.exists(stat_path):
        raise HostFactsError(f"dockerd pid {pid} not visible in {proc_root}: {PID_NS_HINT}")
    comm, ticks = hf.parse_pid_stat(read_text(stat_path))
    if comm != "dockerd":
        raise HostFactsError(
            f"pid {pid} (from {origin}) is {comm!r}, not dockerd: a socket proxy, or another PID "
            f"namespace ({PID_NS_HINT})"
        )
    if boot is None:
        raise HostFactsError("dockerd start time needs the boot time, which is unknown")
    return hf.process_start_time(boot, ticks, os.sysconf("SC_CLK_TCK"))


def _systemd_start(root: str, timeout: float) -> float:
    if root == "/":
        argv = [] if shutil.which("systemctl", path=HOST_ENV["PATH"]) else None
    else:
        present = any(
            os.path.exists(host_path(root, b)) for b in ("usr/bin/systemctl", "bin/systemctl")
        )
        argv = ["chroot", root] if present else None
    if argv is None:
        raise HostFactsError(
            "dockerd start time unknown: no usable pid or docker.pid, and no systemctl"
        )
    argv += ["systemctl", "show", "docker.service", "-p", "ActiveState"]
    argv += ["-p", "ActiveEnterTimestamp"]
    returncode, stdout, stderr = run_host(argv, timeout)
    if returncode != 0:
        raise HostFactsError(
            f"`systemctl show docker.service` exited {returncode}: {stderr_tail(stderr)}"
        )
    if "ActiveState=active" not in stdout.splitlines():
        raise HostFactsError("docker.service is not active according to systemd")
    return hf.parse_systemd_timestamp(stdout)
