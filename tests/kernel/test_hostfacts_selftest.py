"""The opt-in `iptables -C` self-test, with the real iptables and with fake builds.

Everything runs in a private network namespace made by `unshare --net`; the fakes record
which namespace they ran in so the tests can check it was not ours and is gone afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.util import require_or_skip

from exporter.hostfacts import SelfTestError
from exporter.sources.host import iptables_check_command_broken, read_host_facts

REPO = Path(__file__).resolve().parents[2]


def require_netns() -> None:
    require_or_skip(os.geteuid() == 0, "self-test needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN)")
    require_or_skip(shutil.which("unshare") is not None, "needs unshare (util-linux)")


def fake_iptables(tmp_path: Path, body: str) -> Path:
    """An `iptables` script; it logs its args and network namespace to tmp_path/calls."""
    script = tmp_path / "iptables"
    log = tmp_path / "calls"
    script.write_text(f'#!/bin/sh\necho "$(readlink /proc/self/ns/net) $*" >> {log}\n{body}\n')
    script.chmod(0o755)
    return script


def calls(tmp_path: Path) -> list[tuple[str, str]]:
    lines = (tmp_path / "calls").read_text().splitlines()
    return [tuple(line.split(" ", 1)) for line in lines]


def namespaces_in_use() -> set[str]:
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            found.add(os.readlink(f"/proc/{pid}/ns/net"))
        except OSError:
            continue
    return found


def save_rules() -> str:
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=30, check=True)
    return "\n".join(line for line in out.stdout.splitlines() if not line.startswith("#"))


def test_real_iptables_is_not_broken_and_host_rules_untouched() -> None:
    require_netns()
    require_or_skip(shutil.which("iptables-save") is not None, "needs iptables")
    before = save_rules()
    assert iptables_check_command_broken() is False  # this machine has iptables 1.8.9
    assert save_rules() == before


def test_read_host_facts_runs_self_test_when_asked() -> None:
    require_netns()
    facts = read_host_facts(self_test=True)
    assert facts.iptables.check_command_broken is False
    assert not [e for e in facts.iptables.errors if "self-test" in e]


def test_fake_build_whose_check_always_succeeds_is_broken(tmp_path: Path) -> None:
    require_netns()
    fake = fake_iptables(tmp_path, "exit 0")
    assert iptables_check_command_broken(str(fake)) is True
    seen = calls(tmp_path)
    assert [args for _, args in seen] == [
        "-N t",
        "-A t -i lo ! -o lo -j REJECT",
        "-C t -i abcdefgh ! -o abcdefgh -j REJECT",
    ]
    ours = os.readlink("/proc/self/ns/net")
    assert {ns for ns, _ in seen} != {ours} and len({ns for ns, _ in seen}) == 1
    assert seen[0][0] not in namespaces_in_use()  # the private namespace is gone


def test_fake_build_with_correct_check_is_not_broken(tmp_path: Path) -> None:
    require_netns()
    fake = fake_iptables(tmp_path, '[ "$1" = -C ] && { echo "Bad rule" >&2; exit 1; }\nexit 0')
    assert iptables_check_command_broken(str(fake)) is False


def test_setup_failure_is_inconclusive(tmp_path: Path) -> None:
    require_netns()
    fake = fake_iptables(tmp_path, 'echo "iptables: Chain already exists." >&2\nexit 1')
    with pytest.raises(SelfTestError, match=r"setup failed .*Chain already exists"):
        iptables_check_command_broken(str(fake))


def test_timeout_kills_everything_and_removes_the_namespace(tmp_path: Path) -> None:
    require_netns()
    pidfile = tmp_path / "sleeper.pid"
    fake = fake_iptables(tmp_path, f"sleep 300 &\necho $! > {pidfile}\nwait")
    with pytest.raises(SelfTestError, match=r"timed out after 1s"):
        iptables_check_command_broken(str(fake), timeout=1)
    namespace = calls(tmp_path)[0][0]
    sleeper = int(pidfile.read_text())
    for _ in range(100):  # SIGKILLed processes are reaped by init asynchronously
        if not Path(f"/proc/{sleeper}").exists() and namespace not in namespaces_in_use():
            break
        time.sleep(0.05)
    assert not Path(f"/proc/{sleeper}").exists()
    assert namespace not in namespaces_in_use()


def test_without_cap_sys_admin_says_so() -> None:
    require_netns()
    require_or_skip(shutil.which("setpriv") is not None, "needs setpriv (util-linux)")
    code = (
        "import json\n"
        "from exporter.sources.host import read_host_facts\n"
        "print(json.dumps(read_host_facts(self_test=True).iptables.errors))\n"
    )
    drop = ["setpriv", "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin"]
    out = subprocess.run(
        [*drop, sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    errors = json.loads(out.stdout)
    assert len(errors) == 1
    assert "unshare failed: Operation not permitted" in errors[0]
    assert "the self-test needs CAP_SYS_ADMIN" in errors[0]
