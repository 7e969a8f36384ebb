"""exporter.sources.run: the one command runner (rule readers and host facts both use it)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from exporter.sources.hostroot import run_host
from exporter.sources.run import execute, run

# A child that leaves a grandchild behind, then hangs: the grandchild's pid goes to a file.
FORKS = """
import subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
open(sys.argv[1], "w").write(str(grandchild.pid))
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild"
    started = time.monotonic()
    done = execute([sys.executable, "-c", FORKS, str(pidfile)], timeout=2)
    assert done.timed_out and done.returncode is None
    assert time.monotonic() - started < 30
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the grandchild outlived the timeout"


def test_output_is_kept_apart_and_decoded_with_replacement() -> None:
    code = "import sys; sys.stdout.buffer.write(b'out\\xff'); sys.stderr.write('err')"
    done = execute([sys.executable, "-c", code], timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (0, "out\ufffd", "err")


def test_a_command_that_cannot_start_says_why(tmp_path: Path) -> None:
    done = execute([str(tmp_path / "absent")], timeout=5)
    assert done.returncode is None and done.start_error == "No such file or directory"


def test_run_messages() -> None:
    assert run(["dne-no-such-tool"], 5).error.startswith("dne-no-such-tool not found")
    failed = run([sys.executable, "-c", "import sys; sys.exit('bad thing')"], 30)
    assert not failed.ok and failed.error == f"{sys.executable}: bad thing"
    slow = run([sys.executable, "-c", "import time; time.sleep(30)"], 0.5)
    assert slow.error == f"{sys.executable} did not finish within 0.5s"


def test_run_host_uses_the_host_environment() -> None:
    code, out, _ = run_host(["sh", "-c", 'echo "$LC_ALL $TZ"'], 30)
    assert (code, out) == (0, "C UTC\n")
