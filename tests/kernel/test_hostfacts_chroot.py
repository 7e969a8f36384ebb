"""Host facts through a read-only bind mount and through chroot: both need root (a private
mount namespace, CAP_SYS_CHROOT), so they live here rather than with the pure host tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.hostroots import debian_root, rhel_header, write_rpmdb
from support.util import require_or_skip

from exporter.sources.host import read_iptables_facts

REPO = Path(__file__).resolve().parents[2]


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True, **kwargs)


def is_root() -> bool:
    return os.geteuid() == 0


READER = """
import dataclasses, json, sys
from exporter.sources.host import read_iptables_facts
print(json.dumps(dataclasses.asdict(read_iptables_facts(host_root=sys.argv[1]))))
"""


def read_in_subprocess(root: Path, prefix: list[str], mount_ro: bool) -> dict:
    script = READER
    if mount_ro:
        script = (
            """
import subprocess, sys
subprocess.run(["mount", "--bind", sys.argv[1], sys.argv[1]], check=True)
subprocess.run(["mount", "-o", "remount,bind,ro", sys.argv[1]], check=True)
"""
            + READER
        )
    out = run([*prefix, sys.executable, "-c", script, str(root)], cwd=REPO)
    return json.loads(out.stdout)


def tree_listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("layout", ["debian", "rpm"])
def test_read_only_host_root_mount(tmp_path: Path, layout: str) -> None:
    require_or_skip(
        is_root() and shutil.which("unshare") is not None,
        "needs root and unshare for a private mount namespace",
    )
    root = tmp_path / "host"
    if layout == "debian":
        debian_root(root)
    else:
        write_rpmdb(
            root / "var" / "lib" / "rpm" / "rpmdb.sqlite",
            [rhel_header("iptables-nft", "1.8.11", "3.el9")],
        )
    before = tree_listing(root)
    facts = read_in_subprocess(
        root, ["unshare", "--mount", "--propagation", "private"], mount_ro=True
    )
    expected = ("dpkg", "1.8.11-1") if layout == "debian" else ("rpm", "1.8.11-3.el9")
    assert (facts["package_manager"], facts["package_version"]) == expected
    assert facts["version"] == "1.8.11" and facts["known_bad"] is not None
    assert tree_listing(root) == before  # nothing was created (no sqlite journal, lock or wal)


@pytest.fixture
def busybox_root(tmp_path: Path) -> Path:
    """A host root with a static shell and an `iptables` script reporting a different build."""
    busybox = shutil.which("busybox")
    require_or_skip(busybox is not None and is_root(), "needs root and busybox-static for chroot")
    root = debian_root(tmp_path / "host", "1.8.11-2")
    (root / "bin").mkdir()
    shutil.copy(busybox, root / "bin" / "busybox")
    (root / "bin" / "sh").symlink_to("busybox")
    (root / "usr" / "sbin" / "iptables").unlink()
    script = root / "usr" / "sbin" / "iptables"
    # `--version` names a build this machine does not have; `-C` always "finds" the rule.
    script.write_text(
        '#!/bin/sh\n[ "$1" = --version ] && echo "iptables v1.8.11 (nf_tables)"\nexit 0\n'
    )
    script.chmod(0o755)
    return root


def test_chroot_runs_the_hosts_iptables_not_ours(busybox_root: Path) -> None:
    ipt = read_iptables_facts(host_root=str(busybox_root), self_test=True)
    assert (ipt.version, ipt.backend, ipt.package_version) == ("1.8.11", "nf_tables", "1.8.11-2")
    assert ipt.known_bad is None  # Debian's fixed revision
    assert ipt.check_command_broken is True  # the host's (fake, broken) binary was self-tested
    assert ipt.errors == ()


def test_chroot_without_cap_sys_chroot_says_so(busybox_root: Path) -> None:
    require_or_skip(shutil.which("setpriv") is not None, "needs setpriv (util-linux)")
    facts = read_in_subprocess(
        busybox_root,
        ["setpriv", "--bounding-set", "-sys_chroot", "--inh-caps", "-sys_chroot"],
        mount_ro=False,
    )
    assert (
        facts["version"] == "1.8.11" and facts["package_version"] == "1.8.11-2"
    )  # from the package
    assert any("chroot needs CAP_SYS_CHROOT" in e for e in facts["errors"])
