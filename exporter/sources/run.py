"""Run read-only commands: one runner with a timeout that kills the whole process group."""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import os
import selectors
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PIPE_SIZE = 1 << 20  # fs.pipe-max-size's default
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


def execute(argv: list[str], timeout: float, env: dict | None = None, lines=None) -> Completed:
    """The one way this package runs a command: stdin closed, stdout and stderr kept apart,
    in a new session so that a timeout kills the whole process group (no child is left
    behind). `argv[0]` is looked up on env's PATH when env is given. Never raises.
    `lines(text)`: applied to stdout as it arrives, a run of whole lines at a time, which is
    then held once, as text (a 50,000-rule listing is 5 MB: not also as bytes, nor twice)."""
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
        if lines is not None:
            stdout, stderr = _stream(p, timeout, lines)
        else:
            out, err = p.communicate(timeout=timeout)
            stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        _kill_group(p)
        return Completed(None, timed_out=True)
    return Completed(p.returncode, stdout, stderr)


def _stream(p: subprocess.Popen, timeout: float, lines) -> tuple[str, str]:
    """stdout decoded and filtered as it arrives, stderr whole; raises TimeoutExpired."""
    deadline = time.monotonic() + timeout
    with contextlib.suppress(OSError):  # the command need not wait while this thread waits
        fcntl.fcntl(p.stdout, F_SETPIPE_SZ, PIPE_SIZE)  # for the GIL (others' reads overlap)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    pieces: list[str] = []
    partial, errors = "", []
    with selectors.DefaultSelector() as sel:
        sel.register(p.stdout, selectors.EVENT_READ)
        sel.register(p.stderr, selectors.EVENT_READ)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(p.args, timeout)
            for key, _ in sel.select(left):
                data = os.read(key.fd, 1 << 16)
                if not data:
                    sel.unregister(key.fileobj)
                elif key.fileobj is p.stderr:
                    errors.append(data)
                else:
                    text = partial + decoder.decode(data)
                    cut = text.rfind("\n") + 1
                    if cut:
                        pieces.append(lines(text[:cut]))
                    partial = text[cut:]
    tail = partial + decoder.decode(b"", final=True)
    if tail:
        pieces.append(lines(tail))
    p.stdout.close()
    p.stderr.close()
    p.wait(max(0.0, deadline - time.monotonic()))
    text = "".join(pieces)
    del pieces
    return text, b"".join(errors).decode("utf-8", "replace")


def run(argv: list[str], timeout: float, env: dict | None = None, lines=None) -> Result:
    """Run a rule-reading tool found on PATH (or the sbin folders): errors as one-line messages.
    `lines`: as execute's."""
    exe = which(argv[0])
    if exe is None:
        return Result(False, "", "", f"{argv[0]} not found (install iptables / put it on PATH)")
    done = execute([exe, *argv[1:]], timeout, env, lines)
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
