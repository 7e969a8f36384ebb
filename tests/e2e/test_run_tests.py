"""./run-tests, the README's test command (issue 15 item 2), with a stand-in Python that records
how pytest would be run: as a user it runs the tiers that need no root and says what it left
out; with CI=true a user is refused; as root it runs everything. (Its installs and venv are
exercised by every CI run, which goes through .ci/run.)"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.util import require_or_skip

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534
STUB = """#!/bin/sh
printf '%s\\n' "$*" >> "$(dirname "$0")/calls"
"""


@pytest.fixture
def place() -> Iterator[Path]:
    """A folder any user can read and write, holding a copy of run-tests and the stand-in."""
    d = Path(tempfile.mkdtemp(prefix="dne-runtests-"))
    try:
        d.chmod(0o777)
        shutil.copy(ROOT / "run-tests", d / "run-tests")
        (d / "python").write_text(STUB)
        (d / "tools").mkdir()
        (d / "tools" / "fetch-engines").write_text(
            '#!/bin/sh\necho fetched > "$(dirname "$0")/../fetched"\n'
        )
        for f in ("run-tests", "python", "tools/fetch-engines"):
            (d / f).chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run(place: Path, *args: str, user: int | None = None, ci: bool = False):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["RUN_TESTS_PYTHON"] = str(place / "python")
    if ci:
        env["CI"] = "true"
    drop = []
    if user is not None and os.geteuid() == 0:
        drop = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
    return subprocess.run([*drop, str(place / "run-tests"), *args], env=env, cwd="/",
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def calls(place: Path) -> list[str]:
    f = place / "calls"
    return f.read_text().splitlines() if f.exists() else []


def test_a_user_runs_the_tiers_without_root_and_hears_what_was_left_out(place):
    p = run(place, "-x", user=NOBODY)
    assert p.returncode == 0, p.stderr
    assert calls(place) == ["-m pytest -rs tests/unit tests/e2e -x"]
    assert "left out: tests/kernel tests/lab: they need root" in p.stderr
    assert "sudo ./run-tests" in p.stderr


def test_ci_refuses_a_user(place):
    p = run(place, user=NOBODY, ci=True)
    assert p.returncode != 0
    assert "CI=true" in p.stderr and "need root" in p.stderr
    assert calls(place) == []  # nothing ran


def test_root_runs_everything(place):
    require_or_skip(os.geteuid() == 0, "run-tests as root: needs root")
    p = run(place, "-q", ci=True)
    assert p.returncode == 0, p.stderr
    assert calls(place) == ["-m pytest -rs -q"]  # pyproject's testpaths: every tier
    assert (place / "fetched").exists()  # the lab engines are fetched before the run
    assert "left out" not in p.stderr and "installing" not in p.stderr  # all there already


def test_ci_turns_a_skip_into_a_failure(tmp_path):
    (tmp_path / "test_skips.py").write_text(
        "import pytest\n\ndef test_skips():\n    pytest.skip('no tool here')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    argv = [sys.executable, "-m", "pytest", "-p", "support.noskip", "-p", "no:cacheprovider",
            "-q", str(tmp_path / "test_skips.py"), "--rootdir", str(tmp_path)]  # fmt: skip
    for ci, code, word in ((None, 0, "1 skipped"), ("true", 1, "1 failed")):
        env.pop("CI", None)
        if ci:
            env["CI"] = ci
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == code and word in p.stdout, p.stdout + p.stderr
