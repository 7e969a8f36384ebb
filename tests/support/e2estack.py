"""A real Prometheus + Alertmanager + webhook receiver inside a lab namespace, for end-to-end tests.

Everything runs in one network namespace of the lab (normally its client namespace) and talks
over that namespace's loopback: `Prometheus` and `Alertmanager` are the Debian binaries started
under `nsenter --net=...` with a temporary directory each (config, data, log); the `Webhook`
receiver is an HTTP server in the test process whose listening socket was created inside the
namespace (a socket stays in the namespace it was made in, whichever thread uses it later).
The test process reaches the servers the same way: `ns_request()` connects from inside the
namespace. Every class is a context manager and always stops its process / server and removes
its directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from exporter.config import parse_duration
from support.exporterproc import ExporterProc, free_port

NETNS_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class StackError(RuntimeError):
    """A server of the stack could not be started or answered badly."""


# ---- network namespaces from inside this process -------------------------------------------------


def in_netns(ns: str, fn: Callable[[], object]) -> object:
    """Run fn() in a short-lived thread that first joins network namespace `ns`.

    setns(CLONE_NEWNET) changes only the calling thread, so the rest of the process stays where
    it was; sockets fn() creates keep belonging to `ns` after the thread is gone.
    """
    out: dict[str, object] = {}

    def target() -> None:
        try:
            with open(NETNS_DIR / ns, "rb") as f:
                if _libc.setns(f.fileno(), _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into {ns}: {os.strerror(err)}")
            out["value"] = fn()
        except BaseException as e:  # handed to the caller's thread
            out["error"] = e

    thread = threading.Thread(target=target, name=f"netns-{ns}")
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out["value"]


def listen_in_netns(ns: str, host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A TCP socket listening on host:port inside `ns` (port 0: the kernel picks one)."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(16)
        return sock

    return in_netns(ns, make)  # type: ignore[return-value]


def ns_request(
    ns: str,
    url: str,
    data: bytes | None = None,
    timeout: float = 10,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """One HTTP request (GET, or POST with `data`) sent from inside `ns`; (status, body)."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    sock = in_netns(ns, lambda: socket.create_connection((host, port), timeout=timeout))
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.sock = sock  # already connected inside the namespace: request() uses it as it is
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        conn.request("POST" if data is not None else "GET", path, data, headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# ---- configuration helpers -----------------------------------------------------------------------


def shorten_for(
    rules: dict, at_least: float = 60, to: str = "5s", keep: tuple[str, ...] = ()
) -> tuple[dict, list[str]]:
    """A copy of a rule-file document in which every `for:` of `at_least` seconds or more
    becomes `to` (except for the rules named in `keep`); also the names of the rules changed.
    Expressions, labels and annotations are left exactly as they were."""
    doc = json.loads(json.dumps(rules))  # deep copy of plain YAML data
    changed = []
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") in keep:
                continue
            if "for" in rule and parse_duration(str(rule["for"]), "for") >= at_least:
                rule["for"] = to
                changed.append(rule.get("alert") or rule.get("record"))
    return doc, changed


def webhook_config(
    example: dict,
    base_url: str,
    group_wait: str = "1s",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
) -> dict:
    """A copy of an Alertmanager config whose webhook URLs keep their path but point at
    `base_url`, with every route's timers (where set, and the root's) replaced."""
    doc = json.loads(json.dumps(example))
    for receiver in doc.get("receivers", []):
        for hook in receiver.get("webhook_configs", []):
            path = urllib.parse.urlsplit(hook["url"]).path or "/"
            hook["url"] = base_url.rstrip("/") + path
    timers = {
        "group_wait": group_wait,
        "group_interval": group_interval,
        "repeat_interval": repeat_interval,
    }

    def retime(route: dict, root: bool) -> None:
        for key, value in timers.items():
            if root or key in route:
                route[key] = value
        for child in route.get("routes", []):
            retime(child, False)

    retime(doc["route"], True)
    return doc


# ---- the webhook receiver ------------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """One webhook POST from Alertmanager: when it arrived (time.monotonic()), its path, and
    the decoded payload ({"status", "receiver", "alerts": [...], ...})."""

    received: float
    path: str
    payload: dict

    def alerts(self, **labels: str) -> list[dict]:
        """The payload's alerts whose labels include `labels`."""
        return [
            a
            for a in self.payload.get("alerts", [])
            if all(a.get("labels", {}).get(k) == v for k, v in labels.items())
        ]


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {"undecodable": body.decode(errors="replace")}
        self.server.webhook._record(self.path, payload)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # keep pytest's output clean
        pass


class Webhook:
    """An Alertmanager webhook receiver listening on 127.0.0.1:<free port> inside `ns`."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self._cond = threading.Condition()
        self.notifications: list[Notification] = []
        sock = listen_in_netns(ns)
        self.port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler, False)
        self._server.socket.close()
        self._server.socket = sock
        self._server.webhook = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _record(self, path: str, payload: dict) -> None:
        with self._cond:
            self.notifications.append(Notification(time.monotonic(), path, payload))
            self._cond.notify_all()

    def wait_for(
        self, match: Callable[[Notification], bool], timeout: float, what: str
    ) -> Notification:
        """The first notification (already received or arriving within `timeout` s) that
        match() accepts; raises AssertionError listing what did arrive otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = next((n for n in self.notifications if match(n)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no webhook notification with {what} within {timeout}s; received: "
                        f"{self.summary()}"
                    )
                self._cond.wait(left)

    def summary(self) -> list[str]:
        """One line per received alert: path, alert status, alertname and labels."""
        return [
            f"{n.path} {a.get('status')} {a.get('labels', {}).get('alertname')} {a.get('labels')}"
            for n in list(self.notifications)
            for a in n.payload.get("alerts", [])
        ]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> Webhook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- Prometheus and Alertmanager processes -------------------------------------------------------


class ServerProc:
    """A server binary run under `nsenter --net=<ns>` in its own session, with a temporary
    directory for its files and log, listening on 127.0.0.1:<free port> of the namespace.

    start() creates the directory and has the subclass write its files there (prepare()); when
    anything in start() fails, the server is stopped and the directory removed before raising.
    """

    name = "server"

    def __init__(self, ns: str, binary: str) -> None:
        self.ns, self.binary = ns, binary
        self.port = free_port(ns)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.dir = Path()  # the temporary directory, once start() made it
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_tail = ""

    def prepare(self) -> None:
        """Write the files args() names into self.dir."""

    def args(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 30) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"dne-{self.name}{os.getpid()}-"))
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> None:
        self.prepare()
        argv = ["nsenter", f"--net={NETNS_DIR / self.ns}", self.binary, *self.args()]
        with open(self.dir / "log", "wb") as log:
            # nsenter execs the binary, so the Popen pid is the server's and leads its session
            self.proc = subprocess.Popen(
                argv,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):
                if self.get("/-/ready")[0] == 200:
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                state = f"exited {self.proc.poll()}" if self.proc.poll() is not None else "timeout"
                raise StackError(f"{self.name} not ready ({state}); log:\n{self.log()}")
            time.sleep(0.1)

    def get(self, path: str, params: dict[str, str] | None = None) -> tuple[int, bytes]:
        query = "?" + urllib.parse.urlencode(params) if params else ""
        return ns_request(self.ns, self.base_url + path + query)

    def get_json(self, path: str, params: dict[str, str] | None = None) -> dict:
        status, body = self.get(path, params)
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if status != 200 or not isinstance(doc, dict):
            raise StackError(f"{self.name} GET {path} {params}: HTTP {status}: {body[:500]!r}")
        return doc

    def log(self, tail: int = 40) -> str:
        """The last lines of the server's output (kept after stop())."""
        if self.dir != Path():
            with contextlib.suppress(OSError):
                lines = (self.dir / "log").read_text(errors="replace").splitlines()
                return "\n".join(lines[-tail:])
        return self._log_tail

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM the server's session, SIGKILL after `timeout`; remove the directory."""
        if self.proc is not None:
            for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
                if self.proc.poll() is not None:
                    break
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(wait)
        self._log_tail = self.log()
        if self.dir != Path():
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = Path()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Alertmanager(ServerProc):
    """prometheus-alertmanager with `config` (a dict), clustering off."""

    name = "alertmanager"

    def __init__(self, ns: str, config: dict, binary: str = "prometheus-alertmanager") -> None:
        super().__init__(ns, binary)
        self.config = config

    def prepare(self) -> None:
        (self.dir / "alertmanager.yml").write_text(yaml.safe_dump(self.config), encoding="utf-8")
        (self.dir / "data").mkdir()

    def args(self) -> list[str]:
        return [
            f"--config.file={self.dir / 'alertmanager.yml'}",
            f"--storage.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
        ]


class Prometheus(ServerProc):
    """prometheus with a config built by `config(rule_paths)` from rule files written here.

    `rules` maps a file name to a rule-file document; `config` receives their paths and returns
    the prometheus.yml document.
    """

    name = "prometheus"

    def __init__(
        self,
        ns: str,
        config: Callable[[list[str]], dict],
        rules: dict[str, dict],
        binary: str = "prometheus",
    ) -> None:
        super().__init__(ns, binary)
        self.config, self.rules = config, rules

    def prepare(self) -> None:
        paths = []
        for file_name, doc in self.rules.items():
            path = self.dir / file_name
            path.write_text(yaml.safe_dump(doc, sort_keys=False, width=200), encoding="utf-8")
            paths.append(str(path))
        prometheus_yml = yaml.safe_dump(self.config(paths))
        (self.dir / "prometheus.yml").write_text(prometheus_yml, encoding="utf-8")
        (self.dir / "data").mkdir()

    def args(self) -> list[str]:
        return [
            f"--config.file={self.dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """The result of an instant query (at Unix time `at`, default now); vector results
        as a list of {"metric", "value"}, a scalar as a one-element list."""
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        doc = self.get_json("/api/v1/query", params)
        if doc.get("status") != "success":
            raise StackError(f"query {expr!r}: {doc}")
        data = doc["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def targets(self) -> list[dict]:
        return self.get_json("/api/v1/targets")["data"]["activeTargets"]

    def wait_until(
        self, check: Callable[[], object], timeout: float, what: str, poll: float = 0.25
    ) -> object:
        """Poll check() until it returns something truthy; raise with the log otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if self.proc is None or self.proc.poll() is not None:
                raise StackError(f"prometheus exited while waiting for {what}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not seen within {timeout}s")
            time.sleep(poll)


class LabExporter(ExporterProc):
    """tests/exporterproc.ExporterProc listening on `host` (e.g. the lab host's 192.0.2.1)
    instead of 127.0.0.1, so that another namespace of the lab can scrape it."""

    def __init__(self, ns: str, host: str, *flags: str) -> None:
        super().__init__(ns, *flags)
        self.host = host
        self.base = f"http://{host}:{self.port}"
        self.address = f"{host}:{self.port}"

    @property
    def argv(self) -> list[str]:
        argv = list(super().argv)
        argv[argv.index("--web.listen-address") + 1] = self.address
        return argv
