"""Reads host facts: the host's iptables build, boot time, dockerd start time. Never raises.

With host_root != "/" (the host's / mounted into the container), every path is resolved
inside host_root (symlinks included) and the host's own binaries run via `chroot host_root`
(CAP_SYS_CHROOT); the container's own iptables is never reported as the host's. The package
databases are read by sources.hostpkg, dockerd's start time by sources.daemonstart, both
through sources.hostroot.
"""

from __future__ import annotations

import importlib.resources
import os
import shutil

from exporter import hostfacts as hf
from exporter.hostfacts import HostFacts, HostFactsError, IptablesFacts
from exporter.sources.daemonstart import read_daemon_start
from exporter.sources.hostpkg import read_packages
from exporter.sources.hostroot import HOST_ENV, attempt, host_path, run_host, stderr_tail

_IPTABLES_LINKS = (
    "etc/alternatives/iptables",
    "usr/sbin/iptables",
    "sbin/iptables",
    "usr/bin/iptables",
)


def read_host_facts(
    host_root: str = "/",
    dockerd_pid: int | None = None,
    proc_root: str = "/proc",
    self_test: bool = False,
    timeout: float = 5.0,
    known_bad: tuple[hf.KnownBadEntry, ...] | None = None,
) -> HostFacts:
    """All host facts; problems end up in the `errors` tuples, never as exceptions."""
    iptables = read_iptables_facts(host_root, self_test, timeout, known_bad)
    return HostFacts(iptables, *read_daemon_start(host_root, dockerd_pid, proc_root, timeout))


def load_known_bad() -> tuple[hf.KnownBadEntry, ...]:
    """The packaged exporter/data/known_bad.toml, validated (raises HostFactsError)."""
    try:
        text = importlib.resources.files("exporter").joinpath("data/known_bad.toml").read_text()
    except OSError as exc:
        raise HostFactsError(f"cannot read the packaged known_bad.toml: {exc}") from None
    return hf.parse_known_bad(text, "exporter/data/known_bad.toml")


def read_iptables_facts(
    host_root: str = "/",
    self_test: bool = False,
    timeout: float = 5.0,
    known_bad: tuple[hf.KnownBadEntry, ...] | None = None,
) -> IptablesFacts:
    """The iptables part of read_host_facts; `known_bad=None` loads the packaged data file."""
    errors: list[str] = []
    entries = known_bad if known_bad is not None else attempt(errors, load_known_bad) or ()
    version = attempt(errors, lambda: _iptables_version(host_root, timeout))
    manager, packages = read_packages(host_root, timeout, errors)
    broken = None
    if self_test:
        broken = attempt(
            errors, lambda: iptables_check_command_broken("iptables", timeout, host_root)
        )
    return hf.assemble_iptables_facts(
        version=version,
        packages=packages,
        package_manager=manager,
        alternative=_iptables_link(host_root),
        entries=entries,
        check_command_broken=broken,
        errors=tuple(errors),
    )


def iptables_check_command_broken(
    iptables: str = "iptables", timeout: float = 5.0, host_root: str = "/"
) -> bool:
    """Opt-in self-test in a private network namespace (`unshare --net`, CAP_SYS_ADMIN).

    True when `iptables -C` ignores interface names (the 1.8.11 bug). The namespace has no
    name and dies with its last process, which is killed on timeout; the host's rules are
    never touched. Raises SelfTestError when it cannot run or gives no verdict.
    """
    unshare = shutil.which("unshare", path=HOST_ENV["PATH"])
    if not unshare:
        raise hf.SelfTestError("self-test needs `unshare` (util-linux), which is not installed")
    chroot = ["chroot", host_root] if host_root != "/" else []
    argv = [unshare, "--net", "--", *chroot, "sh", "-c", hf.SELF_TEST_SCRIPT, "sh", iptables]
    try:
        returncode, stdout, stderr = run_host(argv, timeout)
    except HostFactsError as exc:
        raise hf.SelfTestError(f"self-test: {exc}") from None
    return hf.interpret_self_test(returncode, stdout, stderr)


def _iptables_version(host_root: str, timeout: float) -> hf.IptablesVersion:
    argv = (
        ["iptables", "--version"]
        if host_root == "/"
        else ["chroot", host_root, "iptables", "--version"]
    )
    returncode, stdout, stderr = run_host(argv, timeout)
    if returncode != 0:
        hint = " (chroot needs CAP_SYS_CHROOT)" if "Operation not permitted" in stderr else ""
        raise HostFactsError(f"`{' '.join(argv)}` exited {returncode}: {stderr_tail(stderr)}{hint}")
    return hf.parse_iptables_version(stdout)


def _iptables_link(root: str) -> str:
    """Target of the alternatives link (or of an iptables symlink naming a backend), or ""."""
    for number, rel in enumerate(_IPTABLES_LINKS):
        directory, name = os.path.split(rel)
        try:
            target = os.readlink(os.path.join(host_path(root, directory), name))
        except (OSError, HostFactsError):
            continue
        if number == 0 or hf.backend_from_link_target(target):
            return target
    return ""
