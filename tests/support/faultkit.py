"""Fault injection for the reliability tests (issue 8): fakes, wrappers, namespaces, records.

- `record(...)`: one JSON line per finding appended to $RELIABILITY_OUT (tools/reliability_table.py
  turns the file into the table of docs/reliability.md); a no-op when the variable is unset.
- `FakeDocker`: an Engine API on a unix socket serving the Docker 20.10 fixtures (or any JSON),
  whose `mode` can be switched while the exporter runs: serve, stall, close; /events streams.
- `fake_bin(...)`: executable shell scripts put first on the exporter's PATH.
- `Overlay`: runs a command in a private mount namespace where /usr/sbin is a tmpfs of symlinks
  to the real /usr/sbin, with chosen names replaced (wrappers) or removed (missing tools), and
  /run/xtables.lock optionally bound to a private file. Only that command and its children
  see it: the lab's dockerd and every other process keep the real binaries.
- `readonly_guard(...)`: wrappers for every iptables/ip6tables/nft/xtables tool that log each
  call and refuse anything that could change rules, except in another network namespace
  (the `iptables -C` self-test's throwaway namespace).
- `WrappedExporter`: tests/exporterproc.ExporterProc run through a prefix (overlay, setpriv).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import socketserver
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from support.netns import Netns

TESTS = Path(__file__).resolve().parents[1]
FIX = TESTS / "fixtures"
REAL_SBIN = Path("/usr/sbin")


# ---------------------------------------------------------------- results for the doc


def record(section: str, tried: str, outcome: str, **figures: object) -> None:
    """Append one finding to $RELIABILITY_OUT (JSON lines), naming the running test."""
    out = os.environ.get("RELIABILITY_OUT")
    if not out:
        return
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
    row = {"section": section, "tried": tried, "outcome": outcome, "test": test,
           "figures": figures, "at": time.time()}  # fmt: skip
    with open(out, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")


def run(args: Sequence[str], timeout: float = 30, check: bool = True, **kw):
    if "input" not in kw:
        kw["stdin"] = subprocess.DEVNULL
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")
    return p


# ---------------------------------------------------------------- a fake Docker Engine API


def fixture_json() -> dict[str, object]:
    """The Docker 20.10 fixtures as the API answers: containers, networks, info, version."""
    return {k: json.loads((FIX / f"d2010_{k}.json").read_text())
            for k in ("containers", "networks", "info", "version")}  # fmt: skip


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeDocker


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: object) -> None:  # client_address is "" on a unix socket
        pass

    def do_GET(self) -> None:
        fake = self.server.fake
        fake.requests.append(self.path)
        mode = fake.mode
        if mode == "close":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if mode == "stall":
            fake.stalled.set()
            fake.unstall.wait(fake.stall_seconds)
            if fake.closing.is_set():
                return
        path = self.path.split("?", 1)[0]
        parts = [p for p in path.split("/") if p]
        if parts and parts[0].startswith("v1."):
            parts = parts[1:]
        route = "/".join(parts)
        if route == "events":
            return self._events(fake)
        if route == "_ping":
            return self._send(200, b"OK", "text/plain")
        key = {"containers/json": "containers", "networks": "networks", "info": "info",
               "version": "version"}.get(route)  # fmt: skip
        if key is None:
            return self._send(404, b'{"message":"page not found"}')
        self._send(200, fake.body(key))

    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Api-Version", "1.41")
        self.end_headers()
        self.wfile.write(body)

    def _events(self, fake: FakeDocker) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        stream = _EventStream(self)
        with fake.lock:
            fake.streams.append(stream)
        fake.stream_opened.set()
        try:
            while not fake.closing.is_set() and not stream.dropped.is_set():
                event = stream.queue_get(0.1)
                if event is not None:
                    data = json.dumps(event).encode() + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
        except OSError:
            pass
        finally:
            with fake.lock:
                if stream in fake.streams:
                    fake.streams.remove(stream)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)


class _EventStream:
    def __init__(self, handler: _Handler) -> None:
        self.handler = handler
        self.dropped = threading.Event()
        self._events: list[dict] = []
        self._cond = threading.Condition()

    def put(self, event: dict) -> None:
        with self._cond:
            self._events.append(event)
            self._cond.notify()

    def queue_get(self, timeout: float) -> dict | None:
        with self._cond:
            if not self._events:
                self._cond.wait(timeout)
            return self._events.pop(0) if self._events else None


class FakeDocker:
    """An Engine API (v1.41) on a unix socket in a temporary directory.

    `mode`: "serve" answers from `data` (fixture JSON by default), "stall" holds every request
    until `stall_seconds` pass or `mode` changes back (set via `set_mode`), "close" shuts each
    connection at once. `/events` streams what `emit()` sends; `drop_events()` cuts the streams.
    """

    def __init__(
        self, data: dict[str, object] | None = None, socket_path: Path | None = None
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"dnerel-docker{os.getpid()}-"))
        self.socket = socket_path or self.dir / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.data = data if data is not None else fixture_json()
        self.mode = "serve"
        self.stall_seconds = 120.0
        self.requests: list[str] = []
        self.streams: list[_EventStream] = []
        self.lock = threading.Lock()
        self.stalled, self.unstall = threading.Event(), threading.Event()
        self.stream_opened, self.closing = threading.Event(), threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def body(self, key: str) -> bytes:
        return json.dumps(self.data[key]).encode()

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode != "stall":
            self.unstall.set()
        else:
            self.unstall.clear()

    def emit(self, action: str = "start", kind: str = "container") -> int:
        """Send an event on every open /events stream; returns how many got it."""
        event = {
            "Type": kind,
            "Action": action,
            "Actor": {"ID": "0" * 64},
            "time": int(time.time()),
        }
        with self.lock:
            for s in self.streams:
                s.put(event)
            return len(self.streams)

    def drop_events(self) -> int:
        """Cut every open /events connection (as a daemon restart or a proxy timeout would)."""
        with self.lock:
            streams = list(self.streams)
        for s in streams:
            s.dropped.set()
            with contextlib.suppress(OSError):
                s.handler.connection.shutdown(socket.SHUT_RDWR)
        self.stream_opened.clear()
        return len(streams)

    @property
    def started(self) -> bool:
        return self._server is not None

    def start(self) -> FakeDocker:
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()  # e.g. a dead socket left where a daemon comes back
        self._server = _Server(str(self.socket), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,),
                                        name="fake-docker", daemon=True)  # fmt: skip
        self._thread.start()
        return self

    def __enter__(self) -> FakeDocker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.closing.set()
        self.unstall.set()
        self.drop_events()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            with contextlib.suppress(OSError):
                self.socket.unlink()
        if self._thread is not None:
            self._thread.join(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def docker_bridges(ns: Netns, networks: list | None = None) -> None:
    """The bridges dockerd would have made for the Docker 20.10 fixtures' networks (docker0
    172.17.0.1/16, br-<id> 172.18.0.1/16), up, so a translated connection has its route: the
    exporter judges the host's routes and links, not only its rules."""
    for n in networks if networks is not None else fixture_json()["networks"]:
        if n["Driver"] != "bridge" or not n["IPAM"]["Config"]:
            continue
        name = n["Options"].get("com.docker.network.bridge.name") or "br-" + n["Id"][:12]
        cfg = n["IPAM"]["Config"][0]
        subnet = cfg["Subnet"]
        gateway = cfg.get("Gateway") or subnet.split("/")[0].rsplit(".", 1)[0] + ".1"
        ns.run(["ip", "link", "add", name, "type", "bridge"])
        ns.run(["ip", "addr", "add", f"{gateway}/{subnet.split('/')[1]}", "dev", name])
        ns.run(["ip", "link", "set", name, "up"])


@contextlib.contextmanager
def dead_socket(path: Path) -> Iterator[str]:
    """A unix socket file at `path` nobody listens on: connecting gets ECONNREFUSED."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(str(path))
        s.close()
        yield f"unix://{path}"
    finally:
        s.close()


# ---------------------------------------------------------------- fake binaries


def fake_bin(folder: Path, name: str, script: str) -> Path:
    """Write an executable /bin/sh script `folder/name` atomically (safe to swap while used)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    tmp.write_text("#!/bin/sh\n" + script)
    tmp.chmod(0o755)
    os.replace(tmp, path)
    return path


def save_tools(folder: Path, script: str, families: Sequence[int] = (4, 6)) -> None:
    """The same fake behind every name the exporter looks for (nf_tables save tools)."""
    for fam in families:
        prefix = "ip6tables" if fam == 6 else "iptables"
        for name in (f"{prefix}-nft-save", f"{prefix}-save"):
            fake_bin(folder, name, script)


def printing(text: str, stderr: str = "", code: int = 0) -> str:
    """A script body printing `text` (and `stderr`), exiting `code`."""
    quoted = text.replace("'", "'\\''")
    err = stderr.replace("'", "'\\''")
    return (
        f"printf '%s' '{quoted}'\n"
        + (f"printf '%s\\n' '{err}' >&2\n" if err else "")
        + f"exit {code}\n"
    )


def pids_with_cmdline(*argv: str) -> list[int]:
    """Pids whose command line is exactly argv (to find leaked fake processes)."""
    want = "\0".join(argv).encode() + b"\0"
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry}/cmdline").read_bytes() != want:
                    continue
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if state not in ("Z", "X"):  # dead, waiting to be reaped by its new parent
                    found.append(int(entry))
    return found


def live_after(seconds: float, *argv: str) -> list[int]:
    """pids_with_cmdline(argv) still alive `seconds` from now (dying takes a moment)."""
    deadline = time.monotonic() + seconds
    while (found := pids_with_cmdline(*argv)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


# ---------------------------------------------------------------- a private /usr/sbin

_OVERLAY_LAUNCHER = r"""
import json, os, subprocess, sys
cfg = json.load(open(sys.argv[1]))
def sh(*a):
    subprocess.run(a, check=True)
sh("mount", "--make-rprivate", "/")
sh("mount", "--bind", "/usr/sbin", cfg["real"])
sh("mount", "-t", "tmpfs", "-o", "mode=755", "dnerel-sbin", "/usr/sbin")
for name in os.listdir(cfg["real"]):
    if name in cfg["remove"]:
        continue
    os.symlink(cfg["replace"].get(name) or os.path.join(cfg["real"], name), "/usr/sbin/" + name)
for name, target in cfg["replace"].items():
    if not os.path.lexists("/usr/sbin/" + name):
        os.symlink(target, "/usr/sbin/" + name)
if cfg.get("lock"):
    sh("mount", "--bind", cfg["lock"], "/run/xtables.lock")
os.execvp(sys.argv[2], sys.argv[2:])
"""


class Overlay:
    """A private mount namespace in which /usr/sbin is rebuilt: `replace` maps names to
    executables to show instead, `remove` lists names to hide. `prefix` is the argv prefix
    that runs a command inside it (the command's pid stays the same: everything execs)."""

    def __init__(self, replace: dict[str, str] | None = None, remove: Sequence[str] = (),
                 lock: str | None = None) -> None:  # fmt: skip
        self.dir = Path(tempfile.mkdtemp(prefix=f"dnerel-ovl{os.getpid()}-"))
        (self.dir / "real").mkdir()
        cfg = {"real": str(self.dir / "real"), "replace": replace or {}, "remove": list(remove),
               "lock": lock}  # fmt: skip
        (self.dir / "overlay.json").write_text(json.dumps(cfg))
        (self.dir / "launch.py").write_text(_OVERLAY_LAUNCHER)

    @property
    def prefix(self) -> list[str]:
        return ["unshare", "--mount", "--propagation", "private", "--",
                sys.executable, "-I", str(self.dir / "launch.py"), str(self.dir / "overlay.json")]  # fmt: skip

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Overlay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- the read-only guard

GUARDED_PREFIXES = ("iptables", "ip6tables", "arptables", "ebtables", "xtables", "nft")
WRITE_SHORT = set(
    "AIDRFXNPZEC"
)  # append insert delete replace flush delete-chain new policy zero rename check
WRITE_LONG = ("--append", "--insert", "--delete", "--replace", "--flush", "--delete-chain",
              "--new-chain", "--new", "--policy", "--zero", "--rename-chain", "--check")  # fmt: skip
NFT_READ = ("list", "monitor", "describe")

_GUARD = r"""
import json, os, sys
CFG = json.loads(%(cfg)r)
WRITE_SHORT, WRITE_LONG, NFT_READ = set(CFG["short"]), CFG["long"], CFG["nft_read"]
name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
ns = os.readlink("/proc/self/ns/net")

def why_refused():
    if name.endswith("-restore") or any(a.endswith("-restore") for a in args):
        return "restore loads rules"
    if name == "nft":
        words = [a for a in args if not a.startswith("-")]
        if any(a in ("-v", "--version", "-V") for a in args) and not words:
            return ""
        if any(a in ("-f", "--file", "-i", "--interactive") for a in args):
            return "nft -f/-i can load rules"
        return "" if words and words[0] in NFT_READ else "nft %%s changes rules" %% (words[:1] or "?")
    for a in args:
        if a.startswith("--"):
            long = a.split("=", 1)[0]
            if len(long) >= 3 and any(w.startswith(long) for w in WRITE_LONG):
                return "option %%s changes rules" %% a
        elif a.startswith("-") and len(a) > 1 and not a[1].isdigit():
            hit = WRITE_SHORT.intersection(a[1:])
            if hit:
                return "option -%%s changes rules" %% "".join(sorted(hit))
    if name.endswith("-save") and ("legacy" in name) and any(a.startswith("-t") for a in args):
        return "legacy *-save -t loads the table"
    return ""

refusal = why_refused()
foreign = ns != "net:[%%d]" %% CFG["host_ns"]
decision = "allowed-elsewhere" if (refusal and foreign) else ("refused" if refusal else "allowed")
with open(CFG["log"], "a") as f:
    f.write(json.dumps({"name": name, "args": args, "netns": ns, "decision": decision,
                        "why": refusal, "pid": os.getpid()}) + "\n")
if decision == "refused":
    sys.stderr.write("read-only guard: refused %%s %%s: %%s\n" %% (name, " ".join(args), refusal))
    sys.exit(99)
real, path = CFG["real"], os.path.join(CFG["real"], name)
for _ in range(20):  # follow symlinks inside the real /usr/sbin, never back into the overlay
    if not os.path.islink(path):
        break
    target = os.readlink(path)
    if target.startswith(("/usr/sbin/", "/sbin/")):
        path = os.path.join(real, os.path.basename(target))
    elif target.startswith("/"):
        path = target
    else:
        path = os.path.join(os.path.dirname(path), target)
os.execv(path, [name, *args])
"""


def guarded_names() -> list[str]:
    return sorted(n for n in os.listdir(REAL_SBIN) if n.startswith(GUARDED_PREFIXES))


class ReadOnlyGuard:
    """Wrappers for every rule tool, logging to `log`; `overlay` installs them."""

    def __init__(self, host_ns_inode: int) -> None:
        self.overlay = Overlay()
        self.dir = self.overlay.dir
        self.log = self.dir / "calls.jsonl"
        self.log.touch()
        self.log.chmod(0o666)
        cfg = {"short": sorted(WRITE_SHORT), "long": list(WRITE_LONG), "nft_read": list(NFT_READ),
               "host_ns": host_ns_inode, "log": str(self.log), "real": str(self.dir / "real")}  # fmt: skip
        script = f"#!{sys.executable} -I\n" + _GUARD % {"cfg": json.dumps(cfg)}
        replace = {}
        for name in guarded_names():
            path = self.dir / "wrap" / name
            path.parent.mkdir(exist_ok=True)
            path.write_text(script)
            path.chmod(0o755)
            replace[name] = str(path)
        cfg_path = self.dir / "overlay.json"
        overlay_cfg = json.loads(cfg_path.read_text())
        overlay_cfg["replace"] = replace
        cfg_path.write_text(json.dumps(overlay_cfg))

    @property
    def prefix(self) -> list[str]:
        return self.overlay.prefix

    def calls(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def close(self) -> None:
        self.overlay.close()


def guard_decision(args: Sequence[str], name: str, host_ns: int = 1, netns: int = 1) -> str:
    """Run the guard's decision logic in-process on one call (for its own unit test)."""
    cfg = {"short": sorted(WRITE_SHORT), "long": list(WRITE_LONG), "nft_read": list(NFT_READ),
           "host_ns": host_ns, "log": os.devnull, "real": "/nonexistent"}  # fmt: skip
    code = _GUARD % {"cfg": json.dumps(cfg)}
    code = code.split("refusal = why_refused()")[0]
    scope: dict[str, object] = {}
    old = sys.argv
    sys.argv = [name, *args]
    try:
        exec(compile(code, "<guard>", "exec"), scope)
        return scope["why_refused"]()  # type: ignore[operator]
    finally:
        sys.argv = old


# ---------------------------------------------------------------- the exporter, wrapped


def wrapped_exporter(ns: str | None, prefix: Sequence[str], *flags: str,
                     env: dict[str, str] | None = None):  # fmt: skip
    """An ExporterProc whose python runs behind `prefix` (an Overlay's, setpriv...)."""
    from support.exporterproc import ExporterProc, _ns_prefix

    class WrappedExporter(ExporterProc):
        @property
        def argv(self) -> list[str]:
            listen = ["--web.listen-address", f"127.0.0.1:{self.port}"]
            return [*_ns_prefix(self.ns), *prefix, sys.executable, "-m", "exporter",
                    *listen, *self.flags]  # fmt: skip

    return WrappedExporter(ns, *flags, env=env)


def rss_kib(pid: int) -> int:
    """Resident set size of a process, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def is_executable(path: Path) -> bool:
    return path.is_file() and bool(path.stat().st_mode & stat.S_IXUSR)


# ---------------------------------------------------------------- the load client

_LOAD_CLIENT = r"""
import asyncio, json, sys, time
import aiohttp
url, total, concurrency, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
async def main():
    codes, lat, errors = {}, [], []
    left = list(range(total))
    conn = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=limit)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as s:
        async def worker():
            while left:
                left.pop()
                t = time.monotonic()
                try:
                    async with s.get(url) as r:
                        await r.read()
                        codes[r.status] = codes.get(r.status, 0) + 1
                except Exception as e:
                    errors.append(type(e).__name__)
                lat.append(time.monotonic() - t)
        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), limit * 3)
        wall = time.monotonic() - started
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None
    print(json.dumps({"codes": codes, "errors": errors[:20], "n_errors": len(errors), "wall": wall,
                      "p50": q(0.5), "p95": q(0.95), "p99": q(0.99), "max": lat[-1] if lat else None}))
asyncio.run(main())
"""


def load(ns: Netns | None, url: str, total: int, concurrency: int, per_request: float = 20) -> dict:
    """Run `total` GETs of `url` from `concurrency` concurrent aiohttp clients (in `ns`)."""
    prefix = ns.enter if ns else []
    args = [*prefix, sys.executable, "-c", _LOAD_CLIENT, url, str(total), str(concurrency),
            str(per_request)]  # fmt: skip
    p = run(args, timeout=per_request * 3 + 60)
    return json.loads(p.stdout)


if __name__ == "__main__":  # a tiny CLI for reproducing by hand
    print(json.dumps(guarded_names()))
