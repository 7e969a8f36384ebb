"""A real Docker host in a throwaway network namespace, for tests (the recipe: docs/testing.md).

`Lab` creates two network namespaces joined by a veth pair: the Docker host (192.0.2.1,
2001:db8:1::1) runs its own dockerd, and the client (192.0.2.2, 2001:db8:1::2) plays the
outside world. Traffic only ever goes to these documentation-range lab addresses.

Every resource is named after an ident `dne<creator pid>x<n>`: namespaces `<ident>h`/`<ident>c`
(also the veth names, both <= 15 chars), the directory /tmp/<ident> (data root, exec root,
socket, pidfile, log) and the container cgroup parent /<ident>. `teardown_ident()` can therefore
remove everything of a lab from its ident alone, and `sweep_stale()` reaps the labs of crashed
runs whose creating pid is dead, never those of a live parallel run.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import difflib
import io
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from support import netns
from support.netns import NetnsError

IMAGE = "dnetest/busybox:latest"
# "20.10": the system's docker.io; "26" and "28": Debian's docker.io 26.1.5 and 28.5.2 that
# tools/fetch-engines unpacks into ENGINE_CACHE (docs/testing.md).
ENGINES = ("20.10", "26", "28")
SYSTEM_ENGINE = "20.10"
ENGINE_CACHE = Path(os.environ.get("DNE_ENGINES") or "/var/cache/dne-engines")
_ENGINE_BINARIES = ("dockerd", "docker-proxy", "containerd", "containerd-shim-runc-v2")
HOST_ADDR, CLIENT_ADDR = "192.0.2.1", "192.0.2.2"
HOST_ADDR6, CLIENT_ADDR6 = "2001:db8:1::1", "2001:db8:1::2"
WEB_PATH = "/cgi-bin/who"
BACKENDS = ("nft", "legacy")

_IDENT_RE = re.compile(r"^(dne(\d+)x\d+)[hc]?$")
_TMP = Path("/tmp")
_NETNS_DIR = netns.NETNS_DIR
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_COUNTER = itertools.count(1)
_OPEN: weakref.WeakSet[Lab] = weakref.WeakSet()
_REQUIRED_BINARIES = (
    "ip", "nsenter", "dockerd", "docker", "containerd", "runc", "curl", "busybox",
    "iptables-nft", "iptables-nft-save", "iptables-nft-restore",
)  # fmt: skip

# The web container's CGI script: the body names the container and the client it saw.
_CGI = """#!/bin/sh
printf "Content-Type: text/plain\\r\\n\\r\\n%s %s\\n" "$DNE_NAME" "$REMOTE_ADDR"
"""
# PID 1 ignores SIGTERM unless trapped; trapping it lets `docker stop` and daemon shutdown
# finish at once instead of waiting out the 10 s stop timeout.
_WEB_SCRIPT = """mkdir -p /www/cgi-bin
printf '%s\\n' "$DNE_CGI" > /www/cgi-bin/who
chmod 755 /www/cgi-bin/who
trap 'exit 0' TERM INT
httpd -f -p "$DNE_PORT" -h /www &
wait
"""


class LabError(RuntimeError):
    """The lab could not be set up, driven, or fully torn down."""


@dataclass(frozen=True)
class ClientResult:
    """What an HTTP client saw. `answered_by` is the container name, `seen_client` the
    source address that container saw (the client's own, or a gateway when proxied)."""

    ok: bool
    answered_by: str | None
    seen_client: str | None
    error: str | None
    http_status: int | None = None


@dataclass(frozen=True)
class RuleSnapshot:
    """iptables-save text per (backend, family), plus the nft table names ("ip nat")."""

    saves: Mapping[tuple[str, int], str]
    nft_tables: frozenset[str] | None


# ---------------------------------------------------------------- small helpers


def run(
    args: Sequence[str],
    *,
    timeout: float = 30,
    check: bool = True,
    input: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command with a timeout; stdout and stderr are captured apart and decoded.

    Raises LabError (with stderr) on timeout, a missing binary, or, with check, a non-zero exit.
    """
    data = input.encode() if isinstance(input, str) else input
    try:
        p = subprocess.run(
            list(args), input=data, capture_output=True, timeout=timeout,
            env=dict(env) if env is not None else None,
            stdin=None if data is not None else subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired as e:
        raise LabError(f"timed out after {timeout}s: {' '.join(args)}") from e
    except OSError as e:
        raise LabError(f"cannot run {args[0]}: {e}") from e
    out = p.stdout.decode(errors="replace")
    err = p.stderr.decode(errors="replace")
    if check and p.returncode != 0:
        raise LabError(f"exit {p.returncode}: {' '.join(args)}\n{err.strip()}")
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def engine_bin(engine: str) -> Path | None:
    """The folder whose dockerd, containerd... an engine runs (None: the system's, on PATH)."""
    if engine not in ENGINES:
        raise LabError(f"engine must be one of {ENGINES}, not {engine!r}")
    return None if engine == SYSTEM_ENGINE else ENGINE_CACHE / f"bin{engine}"


def missing_requirements(backend: str = "nft", engine: str = SYSTEM_ENGINE) -> list[str]:
    """Reasons this machine cannot run a lab (empty when it can)."""
    missing = [] if os.geteuid() == 0 else ["needs root"]
    binaries = _REQUIRED_BINARIES + (("iptables-legacy",) if backend == "legacy" else ())
    folder = engine_bin(engine)
    if folder is not None:
        binaries = tuple(b for b in binaries if b not in _ENGINE_BINARIES)
        missing += [
            f"no {folder / b} (engine {engine}: run tools/fetch-engines)"
            for b in _ENGINE_BINARIES
            if not os.access(folder / b, os.X_OK)
        ]
    missing += [f"no {b} on PATH" for b in binaries if shutil.which(b) is None]
    return missing


def pid_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (pid 1 here may never reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def wait_dead(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait until all pids are gone; return those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if pid_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if pid_alive(p)]
    return alive


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _busybox_tar() -> bytes:
    """A root filesystem with a static busybox and a symlink per applet, as a tar."""
    busybox = Path(shutil.which("busybox") or "/bin/busybox").resolve()
    if b"ld-linux" in busybox.read_bytes()[:4096]:
        raise LabError(f"{busybox} is dynamically linked; install busybox-static")
    applets = run([str(busybox), "--list"]).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d, mode in (("bin", 0o755), ("etc", 0o755), ("www", 0o755), ("tmp", 0o1777)):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(str(busybox), arcname="bin/busybox")
        for name in applets:
            if name != "busybox":
                info = tarfile.TarInfo(f"bin/{name}")
                info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(info)
    return buf.getvalue()


def _tool(backend: str, family: int, suffix: str = "") -> str:
    """iptables binary for a backend: _tool("legacy", 6, "-save") == "ip6tables-legacy-save"."""
    if backend not in BACKENDS or family not in (4, 6):
        raise LabError(f"unknown backend/family {backend!r}/{family!r}")
    return f"{'ip6tables' if family == 6 else 'iptables'}-{backend}{suffix}"


def _tables(save_text: str) -> set[str]:
    return {line[1:].strip() for line in save_text.splitlines() if line.startswith("*")}


def _emptied_tables(save_text: str, keep: set[str]) -> str:
    """iptables-restore input that empties every table of save_text not in keep
    (built-in chains back to ACCEPT, rules and user chains gone)."""
    sections, table = [], None
    for line in save_text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            if table not in keep:
                sections.append(line)
        elif table not in keep and line.startswith(":") and line.split()[1] != "-":
            sections.append(f"{line.split()[0]} ACCEPT [0:0]")
        elif table not in keep and line == "COMMIT":
            sections.append(line)
    return "".join(f"{s}\n" for s in sections)


def _normalise_save(save_text: str) -> list[str]:
    """iptables-save lines without comments or counters, dropping tables that are empty
    (no rules, no user chains, ACCEPT policies): a flushed legacy table cannot be unloaded."""
    out: list[str] = []
    table: list[str] = []
    for raw in save_text.splitlines():
        line = re.sub(r"\s*\[\d+:\d+\]", "", raw).rstrip()
        if not line or line.startswith("#"):
            continue
        table.append(line)
        if line == "COMMIT":
            if any(not (ln.startswith(("*", "COMMIT")) or ln.endswith(" ACCEPT")) for ln in table):
                out += table
            table = []
    return out + table


def docker_ping(sock: Path) -> bool:
    """Whether a dockerd answers GET /_ping on this unix socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect(str(sock))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in s.recv(256).split(b"\r\n", 1)[0] + b" "
    except OSError:
        return False


def log_tail(path: Path, tail: int = 40) -> str:
    """The last lines of a log file ("" when it cannot be read)."""
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-tail:])
    return ""


# ---------------------------------------------------------------- finding and removing a lab


def _ident_dir(ident: str) -> Path:
    return _TMP / ident


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below path in our mount namespace, deepest first."""
    prefix = str(path)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return sorted(set(found), key=len, reverse=True)


def cgroup_dirs(ident: str) -> list[Path]:
    """The lab's container cgroup parents, one per cgroup v1 hierarchy (or the v2 one)."""
    return [p for p in [_CGROUP_ROOT / ident, *_CGROUP_ROOT.glob(f"*/{ident}")] if p.is_dir()]


def _ident_pids(ident: str) -> set[int]:
    """Processes of a lab: in its namespaces or container cgroups, or naming its directory."""
    ns_ids = set()
    ns_files = [_NETNS_DIR / f"{ident}h", _NETNS_DIR / f"{ident}c"]
    ns_files += (_ident_dir(ident) / "exec" / "netns").glob("*")
    for f in ns_files:
        with contextlib.suppress(OSError):
            st = os.stat(f)
            ns_ids.add((st.st_dev, st.st_ino))
    # Never treat the machine's own namespace (or ours) as a lab's: a daemon started in the
    # root namespace records it under exec/netns/default, and killing "its" processes would
    # kill everything on the machine.
    for own in ("/proc/1/ns/net", "/proc/self/ns/net", f"/proc/{os.getppid()}/ns/net"):
        with contextlib.suppress(OSError):
            st = os.stat(own)
            ns_ids.discard((st.st_dev, st.st_ino))
    pids = set()
    for cg in cgroup_dirs(ident):
        for procs in cg.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(x) for x in procs.read_text().split())
    mention = re.compile(rf"/tmp/{ident}(?![0-9])")
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            st = os.stat(f"/proc/{entry}/ns/net")
            if (st.st_dev, st.st_ino) in ns_ids:
                pids.add(int(entry))
                continue
        if mention.search(_cmdline(int(entry))):
            pids.add(int(entry))
    return {p for p in pids if p != os.getpid() and pid_alive(p)}


def leftovers(ident: str) -> list[str]:
    """Everything of a lab still present on the machine (empty when fully removed)."""
    found = [f"netns {n}" for n in (f"{ident}h", f"{ident}c") if (_NETNS_DIR / n).exists()]
    found += [f"mount {m}" for m in mounts_under(_ident_dir(ident))]
    found += [f"process {p}: {_cmdline(p)[:80]}" for p in sorted(_ident_pids(ident))]
    found += [f"cgroup {c}" for c in cgroup_dirs(ident)]
    if _ident_dir(ident).exists():
        found.append(f"directory {_ident_dir(ident)}")
    return found


def _stop_dockerd_by_pidfile(ident: str, timeout: float) -> None:
    with contextlib.suppress(OSError, ValueError):
        pid = int((_ident_dir(ident) / "docker.pid").read_text().strip())
        if pid_alive(pid) and str(_ident_dir(ident)) in _cmdline(pid):
            _signal(pid, signal.SIGTERM)
            if wait_dead([pid], timeout):
                _signal(pid, signal.SIGKILL)
                wait_dead([pid], 5)


def unmount_all(path: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for _ in range(3):
        points = mounts_under(path)
        if not points:
            return
        for point in points:
            libc.umount2(point.encode(), 2)  # MNT_DETACH: lazy, like umount -l


def remove_cgroups(ident: str) -> None:
    """Remove a lab's (or build daemon's) container cgroup parents, deepest first."""
    for cg in cgroup_dirs(ident):
        for d in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            cg.rmdir()


def teardown_ident(ident: str, dockerd_timeout: float = 15) -> list[str]:
    """Forcefully remove every trace of a lab; return what could not be removed.

    Stops its dockerd (SIGTERM, then SIGKILL), kills any process left in its namespaces,
    cgroups or directory, removes its cgroups, unmounts everything under its directory,
    deletes both namespaces and the directory. Safe to call on a lab that never existed.
    """
    _stop_dockerd_by_pidfile(ident, dockerd_timeout)
    pids = _ident_pids(ident)
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    wait_dead(pids, 10)
    remove_cgroups(ident)
    unmount_all(_ident_dir(ident))
    for ns in (f"{ident}h", f"{ident}c"):
        with contextlib.suppress(NetnsError):
            netns.delete(ns)
    if _ident_dir(ident).exists() and not mounts_under(_ident_dir(ident)):
        shutil.rmtree(_ident_dir(ident), ignore_errors=True)
    return leftovers(ident)


def _lab_idents() -> set[str]:
    """Idents of every lab with something left on this machine."""
    names = []
    for folder in (_NETNS_DIR, _TMP, _CGROUP_ROOT, *_CGROUP_ROOT.glob("*")):
        with contextlib.suppress(OSError):
            names += os.listdir(folder)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            names += re.findall(r"/tmp/(dne\d+x\d+)(?![0-9])", _cmdline(int(entry)))
    return {m.group(1) for m in map(_IDENT_RE.match, names) if m}


def sweep_stale() -> list[str]:
    """Tear down labs left by dead runs (creating pid gone); return the idents reaped.

    A lab carrying this process's pid but not open here is also stale (an earlier run
    that had the same pid). Labs of live parallel runs are left alone.
    """
    open_idents = {lab.ident for lab in _OPEN}
    reaped = []
    for ident in sorted(_lab_idents()):
        pid = int(_IDENT_RE.match(ident).group(2))
        mine = pid == os.getpid()
        if (mine and ident not in open_idents) or (not mine and not pid_alive(pid)):
            teardown_ident(ident, dockerd_timeout=5)
            reaped.append(ident)
    return reaped


# ---------------------------------------------------------------- the lab


class Lab:
    """A dockerd in its own network namespace with an external client namespace.

    Use as a context manager (or call close()); teardown always runs, even when the body or
    the setup fails. `engine` picks the Docker engine (ENGINES); `backend` the iptables backend
    dockerd uses ("nft" or "legacy"); `daemon_args` are extra dockerd flags; with `start=False` the namespaces exist but dockerd
    is not started yet (to load rules before Docker sees them).
    """

    _busybox_tar_cache: bytes | None = None

    def __init__(
        self,
        *,
        engine: str = SYSTEM_ENGINE,
        backend: str = "nft",
        daemon_args: Sequence[str] = (),
        ipv6: bool = True,
        start: bool = True,
        start_timeout: float = 60,
    ) -> None:
        if backend not in BACKENDS:
            raise LabError(f"backend must be one of {BACKENDS}, not {backend!r}")
        self.ident = f"dne{os.getpid()}x{next(_COUNTER)}"
        self.engine, self.engine_bin = engine, engine_bin(engine)
        self.backend = backend
        self.daemon_args = tuple(daemon_args)
        self.start_timeout = start_timeout
        self.host_ns, self.client_ns = f"{self.ident}h", f"{self.ident}c"
        self.host_addr, self.client_addr = HOST_ADDR, CLIENT_ADDR
        self.host_addr6 = HOST_ADDR6 if ipv6 else None
        self.client_addr6 = CLIENT_ADDR6 if ipv6 else None
        self.dir = _ident_dir(self.ident)
        self.data_root, self.exec_root = self.dir / "data", self.dir / "exec"
        self.pidfile, self.socket = self.dir / "docker.pid", self.dir / "docker.sock"
        self.log_path, self.bin_dir = self.dir / "dockerd.log", self.dir / "bin"
        self.docker_host = f"unix://{self.socket}"
        self.last_start_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False
        if len(self.host_ns) > 15 or len(str(self.socket)) > 107:
            raise LabError(f"lab names too long: {self.host_ns}, {self.socket}")
        teardown_ident(self.ident)  # leftovers of an earlier run with the same name
        _OPEN.add(self)
        try:
            self._create_namespaces()
            self._prepare_dir()
            if start:
                self.start_daemon()
        except BaseException as e:
            try:
                self.close()
            except LabError as cleanup:
                e.add_note(f"lab teardown also failed: {cleanup}")
            raise

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.close()
        except LabError as e:
            if exc is None:
                raise
            exc.add_note(f"lab teardown also failed: {e}")

    def __repr__(self) -> str:
        return (f"<Lab {self.ident} engine={self.engine} backend={self.backend} "
                f"args={list(self.daemon_args)}>")  # fmt: skip

    # ---- setup

    def _create_namespaces(self) -> None:
        for ns in (self.host_ns, self.client_ns):
            netns.create(ns)
        # Docker sets FORWARD policy DROP only when it turns forwarding on itself.
        self.nsexec(["sysctl", "-q", "-w", "net.ipv4.ip_forward=0"])
        run(["ip", "link", "add", self.host_ns, "netns", self.host_ns, "type", "veth",
             "peer", "name", self.client_ns, "netns", self.client_ns])  # fmt: skip
        ends = ((self.host_ns, self.host_addr, self.host_addr6),
                (self.client_ns, self.client_addr, self.client_addr6))  # fmt: skip
        for ns, addr, addr6 in ends:
            run(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", ns])
            if addr6:
                run(["ip", "-n", ns, "addr", "add", f"{addr6}/64", "dev", ns, "nodad"])
            run(["ip", "-n", ns, "link", "set", ns, "up"])

    def _prepare_dir(self) -> None:
        for d in (self.data_root, self.exec_root, self.bin_dir, self.dir / "cli"):
            d.mkdir(parents=True, exist_ok=True)
        (self.dir / "daemon.json").write_text("{}\n")  # never read the host's /etc/docker
        # dockerd finds iptables on PATH: pin the backend with symlinks in a folder first on it.
        for family in (4, 6):
            for suffix in ("", "-save", "-restore"):
                target = shutil.which(_tool(self.backend, family, suffix)) or ""
                link = self.bin_dir / f"{'ip6tables' if family == 6 else 'iptables'}{suffix}"
                if target and not link.exists():
                    link.symlink_to(target)

    # ---- running commands

    def nsexec(
        self,
        args: Sequence[str],
        ns: str | None = None,
        check: bool = True,
        timeout: float = 30,
        input: str | bytes | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in a lab namespace (default: the Docker host's) with nsenter --net."""
        target = ns or self.host_ns
        return run(["nsenter", f"--net={_NETNS_DIR / target}", *args],
                   check=check, timeout=timeout, input=input)  # fmt: skip

    def docker(
        self, *args: str, check: bool = True, timeout: float = 60, input: str | bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this lab's daemon."""
        env = {**os.environ, "DOCKER_CONFIG": str(self.dir / "cli"), "DOCKER_CLI_HINTS": "false"}
        env.pop("DOCKER_CONTEXT", None)
        return run(["docker", "-H", self.docker_host, *args],
                   check=check, timeout=timeout, input=input, env=env)  # fmt: skip

    def iptables(
        self, *args: str, family: int = 4, backend: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run iptables/ip6tables in the Docker host namespace (default: the lab's backend)."""
        tool = _tool(backend or self.backend, family)
        return self.nsexec([tool, "-w", "5", *args], check=check)

    def iptables_save(
        self, family: int = 4, backend: str | None = None, table: str | None = None
    ) -> str:
        """iptables-save output of the Docker host namespace (default: the lab's backend)."""
        extra = ["-t", table] if table else []
        return self.nsexec([_tool(backend or self.backend, family, "-save"), *extra]).stdout

    def iptables_restore(
        self, text: str, family: int = 4, backend: str | None = None, noflush: bool = False
    ) -> None:
        """Load iptables-restore input into the Docker host namespace."""
        tool = _tool(backend or self.backend, family, "-restore")
        self.nsexec([tool, "-w", "5", *(["--noflush"] if noflush else [])], input=text)

    def _nft_tables(self) -> frozenset[str] | None:
        if shutil.which("nft") is None:
            return None
        out = self.nsexec(["nft", "list", "tables"]).stdout
        return frozenset(ln.split(" ", 1)[1] for ln in out.splitlines() if ln.startswith("table "))

    def snapshot_rules(self) -> RuleSnapshot:
        """Save the host namespace's rules: both families, every backend installed."""
        backends = [b for b in BACKENDS if shutil.which(_tool(b, 4, "-save"))]
        saves = {(b, f): self.iptables_save(f, b) for b in backends for f in (4, 6)}
        return RuleSnapshot(saves=saves, nft_tables=self._nft_tables())

    def restore_rules(self, snap: RuleSnapshot) -> None:
        """Put the rules back as in `snap`; tables created since are emptied or removed.

        Raises LabError if iptables-save afterwards differs from the snapshot (counters aside).
        """
        for (backend, family), text in snap.saves.items():
            payload = text
            if backend == "legacy":  # a legacy table cannot be unloaded: empty it instead
                payload += _emptied_tables(self.iptables_save(family, backend), _tables(text))
            if payload.strip():
                self.iptables_restore(payload, family, backend)
        if snap.nft_tables is not None:
            for table in sorted((self._nft_tables() or frozenset()) - snap.nft_tables):
                self.nsexec(["nft", "delete", "table", *table.split()])
        for (backend, family), text in snap.saves.items():
            want, now = _normalise_save(text), _normalise_save(self.iptables_save(family, backend))
            if now != want:
                diff = "\n".join(difflib.unified_diff(want, now, "snapshot", "now", lineterm=""))
                raise LabError(f"restore_rules: {backend} IPv{family} differs:\n{diff}")

    # ---- the daemon

    def _daemon_env(self) -> dict[str, str]:
        # The engine's folder goes before the system's: a system docker.io has dockerd,
        # containerd, docker-proxy... under the same names. runc stays the system's.
        path = os.environ.get("PATH", "/usr/bin:/bin")
        engine = f"{self.engine_bin}:" if self.engine_bin else ""
        return {**os.environ, "PATH": f"{self.bin_dir}:{engine}{path}:/usr/sbin:/sbin"}

    @property
    def dockerd_pid(self) -> int | None:
        """Pid of the running dockerd (from its pidfile), or None."""
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pidfile.read_text().strip())
            if pid_alive(pid) and str(self.dir) in _cmdline(pid):
                return pid
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        return None

    def _ping(self) -> bool:
        return docker_ping(self.socket)

    def daemon_log(self, tail: int = 40) -> str:
        """The last lines of the dockerd log."""
        return log_tail(self.log_path, tail)

    def start_daemon(self, extra_args: Sequence[str] | None = None) -> None:
        """Start dockerd (`extra_args`, if given, replace daemon_args); wait until it answers."""
        if self.dockerd_pid is not None:
            raise LabError(f"{self.ident}: dockerd already running (pid {self.dockerd_pid})")
        if extra_args is not None:
            self.daemon_args = tuple(extra_args)
        args = ["dockerd", "--data-root", str(self.data_root), "--exec-root", str(self.exec_root),
                "--pidfile", str(self.pidfile), "-H", self.docker_host,
                "--config-file", str(self.dir / "daemon.json"),
                "--cgroup-parent", f"/{self.ident}", *self.daemon_args]  # fmt: skip
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            # nsenter execs dockerd, so the Popen pid is the daemon's own.
            self._proc = subprocess.Popen(
                ["nsenter", f"--net={_NETNS_DIR / self.host_ns}", *args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self._daemon_env(), start_new_session=True,
            )  # fmt: skip
        deadline = started + self.start_timeout
        while not self._ping():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                why = "exited" if self._proc.poll() is not None else "did not answer in time"
                raise LabError(f"{self.ident}: dockerd {why}; log:\n{self.daemon_log()}")
            time.sleep(0.1)
        self.last_start_seconds = time.monotonic() - started
        self._ensure_image()

    def _ensure_image(self) -> None:
        if self.docker("image", "inspect", IMAGE, check=False).returncode == 0:
            return
        if Lab._busybox_tar_cache is None:
            Lab._busybox_tar_cache = _busybox_tar()
        self.docker("import", "-", IMAGE, input=Lab._busybox_tar_cache, timeout=120)

    def stop_daemon(self, timeout: float = 20) -> None:
        """Stop dockerd by its pidfile pid: SIGTERM, wait for exit, SIGKILL after `timeout`."""
        pid = self.dockerd_pid
        if pid is not None:
            _signal(pid, signal.SIGTERM)
            if wait_dead([pid], timeout):
                _signal(pid, signal.SIGKILL)
                if wait_dead([pid], 5):
                    raise LabError(f"{self.ident}: dockerd {pid} survived SIGKILL")
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            self._proc = None

    def restart_daemon(self, extra_args: Sequence[str] | None = None) -> None:
        """Stop and start dockerd on the same data root; `--restart always` containers return."""
        self.stop_daemon()
        self.start_daemon(extra_args)

    # ---- containers and clients

    def run_web(
        self,
        name: str,
        host_port: int | str,
        container_port: int = 80,
        network: str | None = None,
        extra: Sequence[str] = (),
        wait: bool = True,
        start: bool = True,
    ) -> str:
        """Start a busybox httpd container publishing host_port -> container_port.

        GET /cgi-bin/who answers "<name> <client address it saw>". `host_port` may also be
        an "IP:PORT" string. Returns the container id once the server answers (if wait).
        With start=False the container is only created (`docker start` it, then wait_web).
        """
        wait = wait and start
        args = ["run", "-d"] if start else ["create"]
        args += ["--name", name, "-p", f"{host_port}:{container_port}",
                "-e", f"DNE_NAME={name}", "-e", f"DNE_PORT={container_port}",
                "-e", f"DNE_CGI={_CGI}"]  # fmt: skip
        if network:
            args += ["--network", network]
        cid = self.docker(*args, *extra, IMAGE, "sh", "-c", _WEB_SCRIPT).stdout.strip()
        if wait:
            self.wait_web(name, container_port)
        return cid

    def wait_web(self, name: str, container_port: int = 80, timeout: float = 20) -> None:
        """Wait until the web container `name` answers inside itself (e.g. after a restart)."""
        url = f"http://127.0.0.1:{container_port}{WEB_PATH}"
        deadline = time.monotonic() + timeout
        while True:
            # (busybox wget -T segfaults; the exec's own timeout bounds it instead)
            p = self.docker("exec", name, "wget", "-q", "-O", "-", url, check=False, timeout=10)
            if p.returncode == 0 and p.stdout.startswith(name):
                return
            if time.monotonic() > deadline:
                logs = self.docker("logs", "--tail", "20", name, check=False)
                raise LabError(f"web container {name} not answering: {p.stderr.strip()}\n"
                               f"{logs.stdout}{logs.stderr}")  # fmt: skip
            time.sleep(0.2)

    def _curl(self, ns: str, host: str, port: int, path: str, timeout: float) -> ClientResult:
        url = f"http://{f'[{host}]' if ':' in host else host}:{port}{path}"
        args = ["curl", "-sS", "-g", "-m", str(timeout), "-w", "\n%{http_code}", url]
        p = self.nsexec(args, ns=ns, check=False, timeout=timeout + 10)
        if p.returncode != 0:
            return ClientResult(False, None, None, f"curl exit {p.returncode}: {p.stderr.strip()}")
        body, _, status = p.stdout.rpartition("\n")
        code = int(status) if status.isdigit() else None
        words = body.split()
        if code != 200 or len(words) != 2:
            return ClientResult(False, None, None, f"HTTP {status}: {body[:200]!r}", code)
        seen = words[1].strip("[]").removeprefix("::ffff:")  # httpd: "[::ffff:a.b.c.d]"
        return ClientResult(True, words[0], seen, None, code)

    def client_get(
        self, port: int, path: str = WEB_PATH, timeout: float = 3, family: int = 4
    ) -> ClientResult:
        """GET http://<host address>:port/path from the external client namespace."""
        host = self.host_addr6 if family == 6 else self.host_addr
        if host is None:
            raise LabError("this lab was created with ipv6=False")
        return self._curl(self.client_ns, host, port, path, timeout)

    def local_get(self, port: int, path: str = WEB_PATH, timeout: float = 3) -> ClientResult:
        """GET http://127.0.0.1:port/path from the Docker host itself (a local client)."""
        return self._curl(self.host_ns, "127.0.0.1", port, path, timeout)

    def container_ip(self, name: str, network: str | None = None, family: int = 4) -> str:
        """IPv4 (IPv6) address of a container on `network` (default: its only network)."""
        nets = json.loads(
            self.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", name).stdout
        )
        if network is None and len(nets) != 1:
            raise LabError(f"{name} is on networks {sorted(nets)}; say which")
        return nets[network or next(iter(nets))][
            "GlobalIPv6Address" if family == 6 else "IPAddress"
        ]

    def network_gateway(self, network: str = "bridge") -> str:
        """IPv4 gateway (bridge address) of a Docker network: where docker-proxy connects from."""
        info = json.loads(self.docker("network", "inspect", network).stdout)[0]
        gateways = [c.get("Gateway", "") for c in info["IPAM"]["Config"] or []]
        v4 = [g.split("/")[0] for g in gateways if g and ":" not in g]
        if v4:
            return v4[0]
        # Docker 20.10 leaves the default bridge's Gateway empty: read the bridge itself.
        bridge = info["Options"].get("com.docker.network.bridge.name") or f"br-{info['Id'][:12]}"
        out = self.nsexec(["ip", "-4", "-o", "addr", "show", "dev", bridge]).stdout.split()
        if "inet" not in out:
            raise LabError(f"network {network} ({bridge}) has no IPv4 address")
        return out[out.index("inet") + 1].split("/")[0]

    def remove_all_containers(self) -> None:
        """Remove every container of this daemon (docker rm -f)."""
        ids = self.docker("ps", "-aq").stdout.split()
        if ids:
            self.docker("rm", "-f", *ids, timeout=60)

    # ---- teardown

    def close(self) -> None:
        """Tear everything down: containers, dockerd, leftover processes, mounts, namespaces,
        the directory. Always runs to the end; raises LabError if anything is left behind."""
        if self._closed:
            return
        self._closed = True
        problems = []
        try:
            if self._ping():
                self.remove_all_containers()
            self.stop_daemon()
        except LabError as e:
            problems.append(str(e))
        finally:
            problems += teardown_ident(self.ident)
            _OPEN.discard(self)
        if problems:
            raise LabError(f"{self.ident}: left behind after close: {problems}")


@atexit.register
def _close_open_labs() -> None:
    for lab in list(_OPEN):
        with contextlib.suppress(Exception):
            lab.close()
