"""The exporter as a process under test: started in a namespace, measured through /proc."""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
_FREE_PORT = "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"


class Exporter:
    """`python -m exporter --web.listen-address 127.0.0.1:PORT *flags` in namespace `ns`, in
    its own process group (killed whole on close). `product`: another tree to run instead."""

    def __init__(self, ns: str, *flags: str, product: str | None = None) -> None:
        self.enter = ["nsenter", f"--net=/run/netns/{ns}"]
        self.cwd = product or str(REPO)
        port = subprocess.run([*self.enter, sys.executable, "-c", _FREE_PORT], check=True,
                              capture_output=True, text=True, timeout=30).stdout.strip()  # fmt: skip
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.dir = tempfile.mkdtemp(prefix="dnb-exp-")
        argv = [*self.enter, sys.executable, "-m", "exporter",
                "--web.listen-address", f"127.0.0.1:{port}", *flags]  # fmt: skip
        env = {**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"}
        with open(f"{self.dir}/out", "wb") as out:
            self.proc = subprocess.Popen(argv, cwd=self.cwd, env=env, stdout=out, stderr=out,
                                         stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        self.pid = self.proc.pid  # nsenter execs python: the exporter's own pid

    def log(self) -> str:
        with contextlib.suppress(OSError), open(f"{self.dir}/out", errors="replace") as f:
            return f.read()[-3000:]
        return ""

    def wait_ready(self, timeout: float = 600) -> float:
        started = time.monotonic()
        ready = self.url.replace("/metrics", "/-/ready")
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exporter exited {self.proc.returncode}:\n{self.log()}")
            code = subprocess.run([*self.enter, "curl", "-s", "-o", "/dev/null", "-w",
                                   "%{http_code}", "-m", "5", ready], capture_output=True,
                                  text=True, timeout=30).stdout  # fmt: skip
            if code == "200":
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"exporter not ready in {timeout}s:\n{self.log()}")
            time.sleep(0.2)

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        subprocess.run(["rm", "-rf", self.dir], check=False, timeout=30)

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM: the most resident memory the process ever had."""
    with contextlib.suppress(OSError):
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def _stat(pid: int) -> list[str] | None:
    with contextlib.suppress(OSError):
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return None


def cpu_seconds(pid: int) -> float:
    """CPU time of `pid`, of its reaped children (the `*-save` runs) and of its live children
    (`nft monitor`), from /proc/<pid>/stat utime+stime+cutime+cstime."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _stat(int(entry))
        if st and (int(entry) == pid or int(st[1]) == pid):
            total += sum(int(x) for x in st[11:15]) / TICK
    return total


def get(url: str, enter: list[str]) -> str:
    return subprocess.run([*enter, "curl", "-s", "-m", "30", url], capture_output=True,
                          text=True, timeout=60).stdout  # fmt: skip
