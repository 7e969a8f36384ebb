"""Run read-only commands: one runner with a timeout that kills the whole process group."""

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


@dataclass(frozen=True, slots=True)
class Completed:
    """How a command ended. `returncode` is None when it could not start (`start_error`) or
    ran out of time (`timed_out`); output is decoded as UTF-8 with replacement."""

    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    start_error: str = ""
    timed_out: bool = False


def execute(argv: list[str], timeout: float, env: dict | None = None) -> Completed:
    """The one way this package runs a command: stdin closed, stdout and stderr kept apart,
    in a new session so that a timeout kills the whole process group (no child is left
    behind). `argv[0]` is looked up on env's PATH when env is given. Never raises."""
    try:
        p = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        return Completed(None, start_error=exc.strerror or str(exc))
    try:
        stdout, stderr = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(p)
        return Completed(None, timed_out=True)
    return Completed(
        p.returncode, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")
    )


def run(argv: list[str], timeout: float, env: dict | None = None) -> Result:
    """Run a rule-reading tool found on PATH (or the sbin folders): errors as one-line messages."""
    exe = which(argv[0])
    if exe is None:
        return Result(False, "", "", f"{argv[0]} not found (install iptables / put it on PATH)")
    done = execute([exe, *argv[1:]], timeout, env)
    if done.start_error:
        return Result(False, "", "", f"{argv[0]}: {done.start_error}")
    if done.timed_out:
        return Result(False, "", "", f"{argv[0]} did not finish within {timeout:g}s")
    out, err = done.stdout, done.stderr
    if done.returncode != 0:
        detail = err.strip().splitlines()[-1] if err.strip() else f"exit status {done.returncode}"
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
