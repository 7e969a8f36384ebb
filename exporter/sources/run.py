"""Run a read-only command with a timeout, stdout and stderr kept apart, errors as messages."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass

SBIN = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True, slots=True)
class Result:
    ok: bool
    stdout: str
    stderr: str
    error: str  # a one-line message when not ok


def which(name: str) -> str | None:
    path = os.environ.get("PATH", "")
    return shutil.which(name, path=f"{path}:{SBIN}" if path else SBIN)


def run(argv: list[str], timeout: float, env: dict | None = None) -> Result:
    exe = which(argv[0])
    if exe is None:
        return Result(False, "", "", f"{argv[0]} not found (install iptables / put it on PATH)")
    try:
        p = subprocess.Popen(
            [exe, *argv[1:]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # a timeout kills the whole group: no child is left behind
        )
    except OSError as exc:
        return Result(False, "", "", f"{argv[0]}: {exc.strerror or exc}")
    try:
        stdout, stderr = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(p)
        return Result(False, "", "", f"{argv[0]} did not finish within {timeout:g}s")
    out = stdout.decode("utf-8", "replace")
    err = stderr.decode("utf-8", "replace")
    if p.returncode != 0:
        detail = err.strip().splitlines()[-1] if err.strip() else f"exit status {p.returncode}"
        return Result(False, out, err, f"{argv[0]}: {_explain(detail)}")
    return Result(True, out, err, "")


def _kill_group(p: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        p.communicate(timeout=5)  # reap it and close the pipes


def _explain(detail: str) -> str:
    low = detail.lower()
    if "permission denied" in low or "operation not permitted" in low:
        return f"{detail} (needs CAP_NET_ADMIN, and CAP_NET_RAW for the legacy backend)"
    return detail
