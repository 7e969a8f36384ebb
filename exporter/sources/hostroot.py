"""Reading a host root: paths resolved inside it, files read and commands run for it, and
errors collected as messages (HostFactsError, OSError) rather than raised.

With host_root != "/" (the host's / mounted into the container), every path is resolved
inside host_root, symlinks included, as if it were `/`.
"""

from __future__ import annotations

import os

from exporter.hostfacts import HostFactsError
from exporter.sources.run import execute

HOST_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C",
    "TZ": "UTC",
}


def attempt(errors: list[str], func):
    """func(), or None with its error appended; OSError covers races on a live host root."""
    try:
        return func()
    except (HostFactsError, OSError) as exc:
        errors.append(str(exc))
        return None


def run_host(argv: list[str], timeout: float) -> tuple[int, str, str]:
    """(returncode, stdout, stderr) of argv run with HOST_ENV; HostFactsError when it could not
    start or timed out (its whole process group is killed)."""
    done = execute(argv, timeout, env=HOST_ENV)
    if done.start_error:
        raise HostFactsError(f"cannot run `{argv[0]}`: {done.start_error}")
    if done.timed_out:
        raise HostFactsError(f"`{' '.join(argv[:4])}` timed out after {timeout:g}s")
    return done.returncode, done.stdout, done.stderr


def stderr_tail(stderr: str) -> str:
    """The end of a command's stderr on one line, for an error message."""
    return "; ".join(line.strip() for line in stderr.strip().splitlines())[-240:] or "(no stderr)"


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError as exc:
        raise HostFactsError(f"cannot read {path}: {exc.strerror}") from None


def host_path(root: str, rel: str) -> str:
    """`rel` inside `root`, following symlinks as if `root` were `/` (absolute ones included)."""
    root = os.path.abspath(root)
    if root == "/":
        return "/" + rel.lstrip("/")
    current, parts, hops = root, [p for p in rel.split("/") if p], 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current if current == root else os.path.dirname(current)
            continue
        candidate = os.path.join(current, part)
        if part == "." or not os.path.islink(candidate):
            current = candidate if part != "." else current
            continue
        hops += 1
        if hops > 40:
            raise HostFactsError(f"too many symlinks resolving {rel} under {root}")
        target = os.readlink(candidate)
        current = root if target.startswith("/") else current
        parts = [p for p in target.split("/") if p] + parts
    return current
