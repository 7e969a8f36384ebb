"""Throwaway network namespaces: the one helper every kernel, lab and fault test uses.

`namespace(name)` creates the namespace (removing a leftover of the same name first), brings
lo up, yields a `Netns` and always deletes the namespace afterwards, even when the body
fails. `create()`/`delete()` are its two halves, for owners that manage the lifetime
themselves (the lab). Names from `fresh_name(prefix)` carry the creating pid
(`<prefix><pid>x<n>`), so `reap_dead(prefix)` can remove the leftovers of crashed runs
without touching those of a live parallel run.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

NETNS_DIR = Path("/run/netns")
_COUNTER = itertools.count(1)


class NetnsError(RuntimeError):
    """A namespace could not be created, or a command in it failed."""


def _run(argv: Sequence[str], *, input: str | None = None, check: bool = True,
         timeout: float = 30) -> subprocess.CompletedProcess[str]:  # fmt: skip
    stdin = None if input is not None else subprocess.DEVNULL
    try:
        p = subprocess.run(list(argv), input=input, stdin=stdin, capture_output=True, text=True,
                           timeout=timeout, check=False)  # fmt: skip
    except subprocess.TimeoutExpired as e:
        raise NetnsError(f"{' '.join(argv)}: no answer within {timeout} s") from e
    if check and p.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.strip()[-500:]}")
    return p


@dataclass(frozen=True)
class Netns:
    """A named network namespace under /run/netns."""

    name: str

    @property
    def path(self) -> str:
        return str(NETNS_DIR / self.name)

    @property
    def inode(self) -> int:
        return os.stat(self.path).st_ino

    @property
    def enter(self) -> list[str]:
        """The argv prefix that runs a command inside: nsenter --net=<path>."""
        return ["nsenter", f"--net={self.path}"]

    def run(self, argv: Sequence[str], *, input: str | None = None, check: bool = True,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """Run argv inside; raise NetnsError on a non-zero exit when `check`."""
        return _run([*self.enter, *argv], input=input, check=check, timeout=timeout)


def fresh_name(prefix: str) -> str:
    """`<prefix><pid>x<n>`: unique in this process, reapable once the process is gone."""
    return f"{prefix}{os.getpid()}x{next(_COUNTER)}"


def delete(name: str) -> None:
    """Delete the namespace if it exists (processes still inside keep it alive, unnamed)."""
    if (NETNS_DIR / name).exists():
        _run(["ip", "netns", "del", name], check=False)
    if (NETNS_DIR / name).exists():
        raise NetnsError(f"namespace {name} could not be deleted")


def create(name: str) -> Netns:
    """Create `name` afresh (a leftover of the same name is deleted first) with lo up."""
    delete(name)
    _run(["ip", "netns", "add", name])
    ns = Netns(name)
    try:
        _run(["ip", "-n", name, "link", "set", "lo", "up"])
    except BaseException:
        delete(name)
        raise
    return ns


@contextlib.contextmanager
def namespace(name: str) -> Iterator[Netns]:
    """A fresh namespace `name`, deleted on exit even when the body fails."""
    ns = create(name)
    try:
        yield ns
    finally:
        delete(name)


def reap_dead(prefix: str) -> list[str]:
    """Delete `<prefix><pid>x<n>` namespaces whose creating pid is gone; return their names."""
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)x\d+")
    reaped = []
    for name in sorted(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else ():
        m = pattern.match(name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            delete(name)
            reaped.append(name)
    return reaped
