"""Run the exporter as a real process, the way a user would, inside a lab's network namespace.

`ExporterProc` starts `python -m exporter ...` under `nsenter --net=/run/netns/<ns>` in its own
process group with stdout/stderr in a temporary directory, scrapes it with curl inside the same
namespace, and always kills the whole group (the exporter and its `nft monitor`) on stop().
`run_exporter()` runs it to completion, for flag errors.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
NETNS_DIR = Path("/run/netns")
_FREE_PORT = (
    "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
)


@dataclass(frozen=True)
class Scrape:
    """One HTTP answer: status (None when curl failed), body, and curl's error if any."""

    status: int | None
    body: str
    error: str = ""
    content_type: str = ""


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def samples(body: str) -> list[Sample]:
    """Every sample of a text exposition (parsed by prometheus_client's own parser)."""
    return [
        Sample(s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(body)
        for s in family.samples
    ]


def select(body: str, name: str, **labels: str) -> list[Sample]:
    """The samples called `name` whose labels include `labels`."""
    return [
        s
        for s in samples(body)
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def _env() -> dict[str, str]:
    path = os.environ.get("PATH", "/usr/bin:/bin")
    return {**os.environ, "PATH": f"{path}:/usr/sbin:/sbin", "PYTHONUNBUFFERED": "1"}


def _ns_prefix(ns: str | None) -> list[str]:
    return ["nsenter", f"--net={NETNS_DIR / ns}"] if ns else []


def run_exporter(
    args: Sequence[str], ns: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run `python -m exporter args` to completion (optionally in a namespace)."""
    return subprocess.run(
        [*_ns_prefix(ns), sys.executable, "-m", "exporter", *args],
        cwd=REPO,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port(ns: str | None = None) -> int:
    """A TCP port free on 127.0.0.1 of the namespace (the kernel picks it)."""
    p = subprocess.run(
        [*_ns_prefix(ns), sys.executable, "-c", _FREE_PORT],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return int(p.stdout)


class ExporterProc:
    """`python -m exporter --web.listen-address 127.0.0.1:<free port> *flags` in namespace `ns`.

    Use as a context manager: the process group is killed on exit, even when the test fails,
    and the temporary directory holding its output is removed.
    """

    def __init__(self, ns: str | None, *flags: str, env: dict[str, str] | None = None) -> None:
        self.ns, self.flags, self.extra_env = ns, tuple(flags), env or {}
        self.port = free_port(ns)
        self.base = f"http://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix=f"dne-exp{os.getpid()}-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    @property
    def argv(self) -> list[str]:
        listen = ["--web.listen-address", f"127.0.0.1:{self.port}"]
        return [*_ns_prefix(self.ns), sys.executable, "-m", "exporter", *listen, *self.flags]

    def start(self) -> ExporterProc:
        with (
            open(self.dir / "stdout", "wb") as out,
            open(self.dir / "stderr", "wb") as err,
        ):
            # nsenter execs python, so the Popen pid is the exporter's and leads its group
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO,
                env={**_env(), **self.extra_env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        return self

    def __enter__(self) -> ExporterProc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "stderr").read_text(errors="replace")
        return self._saved_stderr

    _saved_stderr = ""

    def stdout(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "stdout").read_text(errors="replace")
        return ""

    def get(self, path: str = "/metrics", timeout: float = 5, accept: str = "") -> Scrape:
        """GET path from the exporter with curl inside its namespace."""
        args = ["curl", "-sS", "-m", str(timeout), "-w", "\n%{http_code} %{content_type}"]
        if accept:
            args += ["-H", f"Accept: {accept}"]
        try:
            p = subprocess.run(
                [*_ns_prefix(self.ns), *args, self.base + path],
                capture_output=True,
                text=True,
                timeout=timeout + 10,
                env=_env(),
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return Scrape(None, "", f"curl did not return within {timeout + 10}s")
        if p.returncode != 0:
            return Scrape(None, "", f"curl exit {p.returncode}: {p.stderr.strip()}")
        body, _, trailer = p.stdout.rpartition("\n")
        code, _, ctype = trailer.partition(" ")
        return Scrape(int(code) if code.isdigit() else None, body, "", ctype)

    def wait_for(
        self,
        check: Callable[[Scrape], bool],
        timeout: float = 10,
        path: str = "/metrics",
        what: str = "condition",
        poll: float = 0.05,
    ) -> tuple[float, Scrape]:
        """Scrape until check(scrape) is true; return (seconds waited, that scrape).

        Fails the test (with the exporter's log) if the deadline passes or the exporter exits.
        """
        started = time.monotonic()
        last = Scrape(None, "", "never scraped")
        while True:
            if not self.alive:
                raise AssertionError(f"exporter exited ({self.proc.poll()}) while waiting for "
                                     f"{what}; stderr:\n{self.stderr()[-3000:]}")  # fmt: skip
            last = self.get(path)
            if check(last):
                return time.monotonic() - started, last
            if time.monotonic() - started > timeout:
                raise AssertionError(
                    f"{what} not seen within {timeout}s; last answer {last.status} "
                    f"{last.error}\n{last.body[-2000:]}\nexporter stderr:\n{self.stderr()[-3000:]}"
                )
            time.sleep(poll)

    def wait_ready(self, timeout: float = 30) -> float:
        """Seconds until /-/ready answers 200."""
        elapsed, _ = self.wait_for(lambda s: s.status == 200, timeout, "/-/ready", "/-/ready 200")
        return elapsed

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM the process group, SIGKILL it after `timeout`; return the exit code.

        Always removes the temporary directory (keeping stderr readable via stderr()).
        """
        if self.proc is not None:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout)
            # the group may hold children (nft monitor) even after the leader exited
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
            self.returncode = self.proc.returncode
        if self.dir.exists():
            self._saved_stderr = self.stderr()
            shutil.rmtree(self.dir, ignore_errors=True)
        return self.returncode


def states(body: str) -> dict[tuple[str, str, str, str], str]:
    """(container, family, host_ip, host_port) -> the state whose series is 1."""
    return {
        (s.labels["container"], s.labels["family"], s.labels["host_ip"], s.labels["host_port"]):
        s.labels["state"]
        for s in select(body, "docker_nat_port_state")
        if s.value == 1
    }  # fmt: skip
