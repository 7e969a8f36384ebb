"""Read Docker state: one container list, one network list, /info, /version per refresh.

Also what the API does not say: the daemon's pid (peer credentials of its unix socket), its
command line and daemon.json (userland proxy, --iptables), and its docker-proxy children.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import struct
import sys
import warnings

from exporter.docker.decode import DaemonHints
from exporter.docker.raw import DockerRaw

DEFAULT_HOST = "unix:///var/run/docker.sock"


class DockerError(Exception):
    pass


def client(base_url: str, timeout: float):
    return _docker().APIClient(base_url=base_url, timeout=timeout, version="auto")


def _docker():
    """The SDK, imported here: it is slow to import and only the edges need it. Without the
    character-set guessers requests imports (charset_normalizer or chardet: 3.5 MiB of a
    running exporter's memory): requests uses them only to guess the encoding of a text body
    that names none, and every answer read here is JSON (decoded as UTF-8 without them)."""
    for name in ("charset_normalizer", "chardet"):
        sys.modules.setdefault(name, None)  # an import of it raises ImportError
    _quiet()
    import docker  # under the import lock: a second thread waits for the first's import

    return docker


@functools.cache
def _quiet() -> None:
    warnings.filterwarnings("ignore", "Unable to find acceptable character detection")


def read_docker(base_url: str, timeout: float, host_root: str = "/", proc: str = "/proc"):
    try:
        api = client(base_url, timeout)
        try:
            raw = (api.containers(), api.networks(), api.info(), api.version())
        finally:
            api.close()
    except Exception as exc:  # the SDK raises many types; all mean "Docker unreadable"
        raise DockerError(_explain(base_url, exc)) from None
    pid = socket_peer_pid(base_url)
    hints = daemon_hints(pid, host_root, proc)
    return DockerRaw(*raw, hints)


def _explain(base_url: str, exc: Exception) -> str:
    text = str(exc)
    path = base_url.removeprefix("unix://")
    if base_url.startswith("unix://") and not os.path.exists(path):
        return f"Docker socket {path} does not exist (dockerd not running, or not mounted?)"
    if "Permission denied" in text:
        return f"permission denied on {path} (run as root or in the docker group)"
    if "Connection refused" in text:
        return f"Docker at {base_url} refused the connection (daemon stopped?)"
    return f"Docker at {base_url}: {text.splitlines()[0][:200] if text else type(exc).__name__}"


def socket_peer_pid(base_url: str) -> int | None:
    """The pid of the process serving a unix socket (SO_PEERCRED); None if not visible."""
    if not base_url.startswith("unix://"):
        return None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(2)
        s.connect(base_url.removeprefix("unix://"))
        pid, _, _ = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        return pid or None
    except OSError:
        return None
    finally:
        s.close()


def daemon_hints(pid: int | None, host_root: str, proc: str) -> DaemonHints:
    if pid is None:
        return DaemonHints(None, None, _daemon_json(host_root, None), None)
    cmdline = _cmdline(proc, pid)
    return DaemonHints(pid, cmdline, _daemon_json(host_root, cmdline), _proxies(proc, pid))


def _cmdline(proc: str, pid: int) -> tuple[str, ...] | None:
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as f:
            return tuple(a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a)
    except OSError:
        return None


def _daemon_json(host_root: str, cmdline) -> dict | None:
    path = "/etc/docker/daemon.json"
    for i, arg in enumerate(cmdline or ()):
        if arg.startswith("--config-file="):
            path = arg.split("=", 1)[1]
        elif arg == "--config-file" and i + 1 < len(cmdline):
            path = cmdline[i + 1]
    try:
        with open(os.path.join(host_root, path.lstrip("/"))) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _proxies(proc: str, ppid: int) -> tuple[tuple[str, ...], ...] | None:
    """argv of every docker-proxy whose parent is the daemon; None if /proc hides processes."""
    found = []
    try:
        entries = [e for e in os.listdir(proc) if e.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            with open(f"{proc}/{entry}/stat", "rb") as f:
                stat = f.read()
            if b"(docker-proxy)" not in stat:
                continue
            if int(stat.rsplit(b")", 1)[1].split()[1]) != ppid:
                continue
            argv = _cmdline(proc, int(entry))
        except (OSError, ValueError, IndexError):
            continue
        if argv:
            found.append(argv)
    return tuple(found)
